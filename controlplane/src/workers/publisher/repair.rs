//! Version repair: what the publisher does when Redis holds a version at or above the one it
//! is about to publish. A snapshot a control plane signed with the same content is left as
//! it is; one with other content (another replica, a restored database) is published above;
//! anything no control plane signed is overwritten, and its version chased only when it is
//! plausible (a forged `u64::MAX` is never chased).

use omg_shared::cluster::{open_snapshot, BusKeys};
use omg_shared::snapshot::Snapshot;

use super::build::content_hash;
use super::Publishing;
use crate::cluster::{snapshot as bus, Connection};
use crate::db::Pool;

/// A version key holding something no control plane signed is overwritten; when its version
/// is less than this far above ours, the sequence first moves past it (data planes do not
/// fetch a version they refused again), otherwise it is ignored (a forged `u64::MAX`).
const FOREIGN_ADVANCE_LIMIT: u64 = 1000;

/// What to do about the version key Redis holds.
pub(super) enum Repair {
    /// Redis already holds a snapshot of this content, signed by a control plane, at this
    /// version: nothing to publish.
    AlreadyHeld(u64),
    /// Publish (the snapshot's version possibly moved up), replacing a version key holding
    /// exactly `replace` whatever its value (empty: none).
    Publish { replace: String },
}

/// Compares the version key (`raw`, read as `parsed`) with `snapshot` (content `hash`) and
/// repairs the version sequence when Redis is at or above it.
pub(super) async fn repair(
    deps: &Publishing,
    conn: &mut Connection,
    keys: &BusKeys,
    snapshot: &mut Snapshot,
    hash: u64,
    raw: Option<&str>,
) -> Result<Repair, String> {
    let publish = Repair::Publish {
        replace: String::new(),
    };
    let Some(raw) = raw else {
        return Ok(publish);
    };
    let parsed = raw.trim().parse::<u64>().ok();
    if parsed.is_some_and(|stored| stored < snapshot.version) {
        return Ok(publish);
    }
    Ok(match held(deps, conn, keys, parsed, hash).await? {
        Held::Same(version) => Repair::AlreadyHeld(version),
        Held::Signed(stored) => {
            snapshot.version = advance_past(&deps.pool, stored).await?;
            publish
        }
        Held::Foreign(reason) => Repair::Publish {
            replace: supersede_foreign(&deps.pool, snapshot, raw, parsed, &reason).await?,
        },
    })
}

/// What Redis holds under a version at or above ours.
enum Held {
    /// A snapshot signed by a control plane with our content, at this version.
    Same(u64),
    /// A snapshot signed by a control plane (another replica, or a database since restored
    /// with a lower sequence) with other content, at this version: publish above it.
    Signed(u64),
    /// Nothing a control plane signed (no snapshot, garbage, forged, or a version key that
    /// does not match the envelope's signed version): overwrite it, never chase its version.
    Foreign(String),
}

/// Reads and verifies the snapshot Redis holds beside the version key's `stored`.
async fn held(
    deps: &Publishing,
    conn: &mut Connection,
    keys: &BusKeys,
    stored: Option<u64>,
    hash: u64,
) -> Result<Held, String> {
    let envelope = bus::read_envelope(conn, keys).await?;
    let Some(stored) = stored else {
        return Ok(Held::Foreign("the version key holds no number".to_owned()));
    };
    let Some(bytes) = envelope else {
        return Ok(Held::Foreign("no snapshot under the version".to_owned()));
    };
    Ok(match open_snapshot(&deps.vault, &deps.verifier, &bytes) {
        Err(error) => Held::Foreign(error.to_string()),
        Ok(held) if held.version != stored => Held::Foreign(format!(
            "the version key says {stored} but the signed snapshot is version {}",
            held.version
        )),
        Ok(held) if content_hash(&held) == hash => Held::Same(held.version),
        Ok(held) => Held::Signed(held.version),
    })
}

/// Prepares overwriting a version key (`raw`, read as `parsed`) beside a snapshot no control
/// plane signed: data planes remember a refused version and do not fetch it again, so the
/// sequence first moves past a plausible one; an implausible one (a forged `u64::MAX`) is
/// never chased. Returns the value the publish script may replace.
async fn supersede_foreign(
    pool: &Pool,
    snapshot: &mut Snapshot,
    raw: &str,
    parsed: Option<u64>,
    reason: &str,
) -> Result<String, String> {
    if let Some(stored) =
        parsed.filter(|v| v.saturating_sub(snapshot.version) < FOREIGN_ADVANCE_LIMIT)
    {
        snapshot.version = advance_past(pool, stored).await?;
    }
    tracing::warn!(
        redis_version = %raw,
        %reason,
        version = snapshot.version,
        "Redis holds a snapshot no control plane signed; overwriting it"
    );
    Ok(raw.to_owned())
}

/// Moves the version sequence past `stored` and returns the next version.
async fn advance_past(pool: &Pool, stored: u64) -> Result<u64, String> {
    let mut db = pool.get().await.map_err(|e| format!("database: {e}"))?;
    let next =
        crate::db::snapshot::next_version_after(&mut db, i64::try_from(stored).unwrap_or(i64::MAX))
            .await
            .map_err(|e| format!("advancing snapshot_version_seq: {e}"))?;
    tracing::warn!(
        redis_version = stored,
        new_version = next,
        "Redis holds a snapshot version at or above this control plane's; publishing above it"
    );
    u64::try_from(next).map_err(|_| format!("snapshot_version_seq returned {next}"))
}
