//! Snapshot publishing (cluster mode): build the data planes' view from Postgres plus the
//! static YAML catalog, seal it, and hand it to Redis with its version.
//!
//! [`build()`](build::build) is pure: rows in, [`Snapshot`] out. The task [`spawn`]s runs in
//! the background: a change (any successful admin mutation pokes its [`Publisher`] handle, see
//! `server.rs`) is published after `cluster.publish_debounce`, so a burst makes one snapshot;
//! a timer rebuilds every `cluster.publish_interval` and republishes when the content changed
//! (another replica's change, an edited YAML catalog) or when Redis no longer holds the last
//! version (flushed, restarted). Publication is one Lua script (`cluster/snapshot.rs`) that
//! writes only when the version is newer than the stored one, so replicas racing each other
//! never move Redis backwards — except over a snapshot no control plane signed
//! (`cluster.snapshot_signing_key`), which is replaced whatever its version claims, so a
//! forged `u64::MAX` cannot lock publishing out (`repair.rs`).

pub mod build;
pub mod handle;
mod repair;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use omg_shared::cluster::{seal_snapshot, BusKeys, SnapshotSigner, SnapshotVerifier};
use omg_shared::config::GatewayConfig;
use omg_shared::snapshot::Snapshot;
use uuid::Uuid;

pub use self::build::{build, OpenCredential};
pub use self::handle::{PublishStatus, Publisher};

use self::build::content_hash;
use self::repair::Repair;
use crate::cluster::{self, snapshot as bus, RedisPool};
use crate::crypto::Vault;
use crate::db::Pool;
use crate::metrics::SnapshotMetrics;

/// What the publisher works with.
pub struct Publishing {
    pub pool: Pool,
    pub redis: RedisPool,
    pub config: Arc<GatewayConfig>,
    /// Opens stored credentials and seals the snapshot.
    pub vault: Arc<Vault>,
    /// Signs snapshots (`cluster.snapshot_signing_key`).
    pub signer: Option<Arc<SnapshotSigner>>,
    /// Recognises a snapshot found in Redis as signed by a control plane.
    pub verifier: SnapshotVerifier,
    /// The pepper's check value (`KeyHasher::check_value`), carried in every snapshot.
    pub key_check: String,
    pub metrics: SnapshotMetrics,
    /// Poked after changes; records the status `/healthz` shows.
    pub handle: Arc<Publisher>,
}

/// Why a publication was skipped.
enum Outcome {
    Published,
    Unchanged,
}

/// Builds the snapshot of the database as it is now; omissions are logged.
async fn build_current(deps: &Publishing) -> Result<Snapshot, String> {
    let rows = {
        let mut conn = deps
            .pool
            .get()
            .await
            .map_err(|e| format!("database: {e}"))?;
        crate::db::snapshot::load(&mut conn)
            .await
            .map_err(|e| format!("reading the snapshot's rows: {e}"))?
    };
    let vault = &deps.vault;
    let open = |id: Uuid, sealed: &[u8]| {
        vault
            .open(sealed, format!("model_deployments:{id}").as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|plain| String::from_utf8(plain).map_err(|e| e.to_string()))
    };
    let now = Utc::now();
    let prefix = &deps.config.cluster.counter_prefix;
    let live = cluster::counters::live_dataplanes(prefix, &deps.redis, now).await;
    let (snapshot, warnings) = build(&deps.config, rows, &open, deps.key_check.clone(), live, now)?;
    for warning in &warnings {
        tracing::error!(warning = %warning, "snapshot built with an omission");
    }
    Ok(snapshot)
}

/// Builds and publishes once. `force`: publish even when the content is unchanged.
async fn publish_once(deps: &Publishing, force: bool) -> Result<Outcome, String> {
    let started = Instant::now();
    let mut snapshot = build_current(deps).await?;
    let hash = content_hash(&snapshot);
    let keys: BusKeys = deps.config.cluster.bus_keys();
    let mut conn = deps.redis.get().await.map_err(|e| format!("redis: {e}"))?;
    let raw = bus::read_version(&mut conn, &keys).await?;
    let stored = raw.as_deref().map(|raw| raw.trim().parse::<u64>().ok());
    if !force && deps.handle.holds(hash, stored) {
        // Redis holds what we published last, and nothing changed.
        return Ok(Outcome::Unchanged);
    }
    let repair = repair::repair(deps, &mut conn, &keys, &mut snapshot, hash, raw.as_deref());
    let replace = match repair.await? {
        Repair::AlreadyHeld(version) => {
            deps.handle.record_held(hash, version);
            return Ok(Outcome::Unchanged);
        }
        Repair::Publish { replace } => replace,
    };
    let signer = deps
        .signer
        .as_ref()
        .ok_or("cluster.snapshot_signing_key is not set: snapshots cannot be signed".to_owned())?;
    let sealed = seal_snapshot(&deps.vault, signer, &snapshot).map_err(|e| e.to_string())?;
    let written = bus::publish(&mut conn, &keys, &sealed, snapshot.version, &replace).await?;
    if !written {
        tracing::warn!(
            version = snapshot.version,
            "Redis already holds a newer snapshot (another control plane published); not overwritten"
        );
    }
    record_published(deps, &snapshot, hash, sealed.len(), started);
    Ok(Outcome::Published)
}

/// Records a publication in the publisher's status, the metrics and the log.
fn record_published(
    deps: &Publishing,
    snapshot: &Snapshot,
    hash: u64,
    bytes: usize,
    started: Instant,
) {
    let version = snapshot.version;
    deps.handle.record_published(snapshot, hash);
    deps.metrics.published(version, bytes, started.elapsed());
    tracing::info!(
        version,
        tenants = snapshot.tenants.len(),
        keys = snapshot.keys.len(),
        models = snapshot.models.len(),
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "snapshot published"
    );
}

/// Runs the publisher until the process ends: publishes at start, after each change
/// (debounced) and on the timer; failures are retried every second and shown in `/healthz`.
pub fn spawn(deps: Publishing) -> tokio::task::JoinHandle<()> {
    crate::tasks::spawn_named("snapshot publisher", async move {
        let cluster = &deps.config.cluster;
        let mut failing = false;
        let mut force = true;
        loop {
            match publish_once(&deps, force).await {
                Ok(Outcome::Published | Outcome::Unchanged) => {
                    if failing {
                        tracing::info!("snapshot publishing recovered");
                    }
                    failing = false;
                    force = false;
                }
                Err(message) => {
                    deps.metrics.failed();
                    if !failing {
                        tracing::error!(error = %message, "snapshot publishing failed; data planes keep their last snapshot; retrying every second");
                    } else {
                        tracing::debug!(error = %message, "snapshot publishing still failing");
                    }
                    deps.handle.record_error(message);
                    failing = true;
                }
            }
            let wait = if failing {
                Duration::from_secs(1)
            } else {
                cluster.publish_interval
            };
            tokio::select! {
                () = deps.handle.poked() => {
                    tokio::time::sleep(cluster.publish_debounce).await;
                    force = true;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}
