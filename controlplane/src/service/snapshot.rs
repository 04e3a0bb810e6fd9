//! Snapshot publishing (cluster mode): build the data planes' view from Postgres plus the
//! static YAML catalog, seal it, and hand it to Redis with its version.
//!
//! [`build`] is pure: rows in, [`Snapshot`] out. [`Publisher`] runs in the background:
//! a change (any successful admin mutation pokes it, see `server.rs`) is published after
//! `cluster.publish_debounce`, so a burst makes one snapshot; a timer rebuilds every
//! `cluster.publish_interval` and republishes when the content changed (another replica's
//! change, an edited YAML catalog) or when Redis no longer holds the last version (flushed,
//! restarted). Publication is one Lua script that writes only when the version is newer than
//! the stored one, so replicas racing each other never move Redis backwards — except over a
//! snapshot no control plane signed (`cluster.snapshot_signing_key`), which is replaced
//! whatever its version claims, so a forged `u64::MAX` cannot lock publishing out.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use omg_shared::cluster::{open_snapshot, seal_snapshot, BusKeys};
use omg_shared::config::{CatalogEntry, GatewayConfig, KeyStatus, TenantStatus};
use omg_shared::keys::KeyDigest;
use omg_shared::secret::Secret;
use omg_shared::snapshot::{self as snap, BudgetPolicy, BudgetWindow, Limits, Snapshot};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use bb8_redis::redis;

use crate::db::snapshot::SnapshotRows;
use crate::state::{AppState, RedisPool};

/// Writes the envelope, the version and publishes, only when newer than what Redis holds —
/// or when Redis holds exactly `ARGV[3]`, a version key the control plane found under a
/// snapshot it cannot verify (forged or garbage; see [`Held::Foreign`]), so a forged huge
/// version cannot lock publishing out. An unreadable version key never blocks either.
/// Returns 1 when written, 0 when Redis already had this version or a newer one.
const PUBLISH_SCRIPT: &str = r"
local raw = redis.call('GET', KEYS[2])
local current = tonumber(raw or '0') or -1
local version = tonumber(ARGV[2])
if current >= version and raw ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
";

/// A version key holding something no control plane signed is overwritten; when its version
/// is less than this far above ours, the sequence first moves past it (data planes do not
/// fetch a version they refused again), otherwise it is ignored (a forged `u64::MAX`).
const FOREIGN_ADVANCE_LIMIT: u64 = 1000;

/// Opens a deployment's sealed credential (row id, sealed bytes) into its secret.
pub type OpenCredential<'a> = &'a dyn Fn(Uuid, &[u8]) -> Result<String, String>;

fn non_negative(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

/// Builds the snapshot from the database rows and the config (YAML catalog, global limits and
/// budget unless persisted defaults override them, pepper check), with the number of live
/// data planes read beside the rows. Deployments whose stored credential cannot be opened are
/// left out and named in the returned warnings; everything else is served.
pub fn build(
    config: &GatewayConfig,
    rows: SnapshotRows,
    open_credential: OpenCredential<'_>,
    key_check: String,
    live_dataplanes: u32,
    now: DateTime<Utc>,
) -> Result<(Snapshot, Vec<String>), String> {
    let mut warnings = Vec::new();
    let switches: HashMap<&str, bool> = rows
        .alias_settings
        .iter()
        .map(|(alias, enabled)| (alias.as_str(), *enabled))
        .collect();
    let enabled = |alias: &str| switches.get(alias).copied().unwrap_or(true);

    // The merged catalog: an alias with database rows is served from them only.
    let db_aliases: std::collections::BTreeSet<&str> =
        rows.deployments.iter().map(|d| d.alias.as_str()).collect();
    let mut entries: Vec<(CatalogEntry, Option<Uuid>)> = Vec::new();
    for row in &rows.deployments {
        if !enabled(&row.alias) {
            continue;
        }
        let mut entry: CatalogEntry = match serde_json::from_value(row.spec.clone()) {
            Ok(entry) => entry,
            Err(e) => {
                warnings.push(format!("deployment {} has an unreadable spec: {e}", row.id));
                continue;
            }
        };
        entry.enabled = row.enabled;
        if let Some(sealed) = &row.credential {
            match open_credential(row.id, sealed) {
                Ok(secret) => entry.api_key = Some(Secret::new(secret)),
                Err(e) => {
                    warnings.push(format!(
                        "deployment {} left out: its credential cannot be opened ({e})",
                        row.id
                    ));
                    continue;
                }
            }
        }
        entries.push((entry, Some(row.id)));
    }
    for entry in &config.model_catalog {
        if !db_aliases.contains(entry.alias.as_str()) && enabled(&entry.alias) {
            entries.push((entry.clone(), None));
        }
    }

    // Resolve entries with the standalone builder's rules (provider defaults, prices), then
    // name database deployments by their row id.
    let mut base = config.clone();
    base.bootstrap = Default::default();
    base.model_catalog = entries.iter().map(|(entry, _)| entry.clone()).collect();
    let hasher = omg_shared::keys::KeyHasher::new(b"unused: no bootstrap keys here");
    let mut snapshot = Snapshot::from_config(&base, &hasher, 0, now.timestamp_millis())
        .map_err(|errors| format!("the merged catalog is invalid: {errors}"))?;
    let mut ids_by_alias: BTreeMap<&str, Vec<Option<Uuid>>> = BTreeMap::new();
    for (entry, id) in &entries {
        ids_by_alias.entry(&entry.alias).or_default().push(*id);
    }
    for model in &mut snapshot.models {
        if let Some(ids) = ids_by_alias.get(model.alias.as_str()) {
            for (deployment, id) in model.deployments.iter_mut().zip(ids) {
                if let Some(id) = id {
                    deployment.id = id.to_string();
                }
            }
        }
    }

    // The defaults in force: persisted ones win over the config.
    let defaults = crate::service::governance::effective(
        config,
        rows.rate_limit_defaults.as_ref(),
        rows.budget_default.as_ref(),
    );
    snapshot.rate_limits.requests_per_minute = defaults.limits.requests_per_minute;
    snapshot.rate_limits.tokens_per_minute = defaults.limits.tokens_per_minute;
    snapshot.rate_limits.parallel_requests_key = defaults.limits.parallel_requests_key;
    snapshot.rate_limits.parallel_requests_tenant = defaults.limits.parallel_requests_tenant;
    snapshot.budget_default = (defaults.budget.micro_usd > 0).then_some(BudgetPolicy {
        limit_micro_usd: defaults.budget.micro_usd,
        warning_threshold: defaults.budget.warning_threshold,
        window: defaults.budget.window,
    });
    snapshot.live_dataplanes = live_dataplanes.max(1);
    let default_window = defaults.budget.window;
    let limits: HashMap<Uuid, &crate::db::models::TenantRateLimits> =
        rows.rate_limits.iter().map(|l| (l.tenant_id, l)).collect();
    let budgets: HashMap<Uuid, &crate::db::models::TenantBudget> =
        rows.budgets.iter().map(|b| (b.tenant_id, b)).collect();
    snapshot.tenants = rows
        .tenants
        .iter()
        .map(|tenant| snap::Tenant {
            id: tenant.id,
            name: tenant.name.clone(),
            status: if tenant.status == "suspended" {
                TenantStatus::Suspended
            } else {
                TenantStatus::Active
            },
            allowed_models: tenant.allowed_models.clone(),
            limits: limits
                .get(&tenant.id)
                .map_or_else(Limits::default, |l| Limits {
                    requests_per_minute: non_negative(l.requests_per_minute),
                    tokens_per_minute: non_negative(l.tokens_per_minute),
                    parallel_requests: non_negative(l.parallel_requests),
                }),
            budget: budgets.get(&tenant.id).map(|b| BudgetPolicy {
                limit_micro_usd: b.budget_micro_usd,
                warning_threshold: b.warning_threshold,
                window: BudgetWindow::parse(&b.refresh_schedule).unwrap_or(default_window),
            }),
        })
        .collect();
    let mut keys = Vec::with_capacity(rows.keys.len());
    for key in &rows.keys {
        let Ok(digest) = <[u8; 32]>::try_from(key.secret_hash.as_slice()) else {
            warnings.push(format!(
                "key {} has a malformed hash and is left out",
                key.id
            ));
            continue;
        };
        keys.push(snap::ApiKey {
            id: key.id,
            tenant_id: key.tenant_id,
            prefix: key.prefix.clone(),
            digest: KeyDigest(digest),
            name: key.name.clone(),
            status: match key.status.as_str() {
                "active" => KeyStatus::Active,
                "disabled" => KeyStatus::Disabled,
                _ => KeyStatus::Revoked,
            },
            expires_at_ms: key.expires_at.map(|at| at.timestamp_millis()),
            allowed_models: key.allowed_models.clone(),
            limits: Limits {
                requests_per_minute: non_negative(key.requests_per_minute),
                tokens_per_minute: non_negative(key.tokens_per_minute),
                parallel_requests: non_negative(key.parallel_requests),
            },
            budget: key.budget_micro_usd.map(|limit| BudgetPolicy {
                limit_micro_usd: limit,
                warning_threshold: key
                    .warning_threshold
                    .unwrap_or(defaults.budget.warning_threshold),
                window: default_window,
            }),
        });
    }
    snapshot.keys = keys;
    snapshot.version = u64::try_from(rows.version)
        .map_err(|_| format!("snapshot_version_seq returned {}", rows.version))?;
    snapshot.key_check = Some(key_check);
    Ok((snapshot, warnings))
}

/// A fingerprint of everything but the version and build time: equal content, equal hash.
fn content_hash(snapshot: &Snapshot) -> u64 {
    let mut copy = snapshot.clone();
    copy.version = 0;
    copy.generated_at_ms = 0;
    let bytes = serde_json::to_vec(&copy).unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// What `/healthz` shows of the publisher.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PublishStatus {
    /// Last version written to Redis.
    pub version: Option<u64>,
    /// When it was written.
    pub published_at: Option<DateTime<Utc>>,
    /// Tenants, keys and aliases in it.
    pub tenants: usize,
    pub keys: usize,
    pub models: usize,
    /// Live data planes counted into it (heartbeats younger than 30 s; at least 1).
    pub live_dataplanes: u32,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The background publisher's handle: poke it after a change.
#[derive(Default)]
pub struct Publisher {
    changed: Notify,
    status: Mutex<PublishStatus>,
    last_hash: Mutex<Option<u64>>,
}

impl Publisher {
    /// Asks for a publication after the debounce delay.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// The current status.
    pub fn status(&self) -> PublishStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn record_error(&self, message: String) {
        if let Ok(mut status) = self.status.lock() {
            status.last_error = Some(message);
            status.last_error_at = Some(Utc::now());
        }
    }
}

/// Why a publication was skipped.
enum Outcome {
    Published,
    Unchanged,
}

/// Builds the snapshot of the database as it is now; omissions are logged.
async fn build_current(state: &AppState, redis: &RedisPool) -> Result<Snapshot, String> {
    let rows = {
        let mut conn = state
            .pool
            .get()
            .await
            .map_err(|e| format!("database: {e}"))?;
        crate::db::snapshot::load(&mut conn)
            .await
            .map_err(|e| format!("reading the snapshot's rows: {e}"))?
    };
    let vault = &state.vault;
    let open = |id: Uuid, sealed: &[u8]| {
        vault
            .open(sealed, format!("model_deployments:{id}").as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|plain| String::from_utf8(plain).map_err(|e| e.to_string()))
    };
    let now = Utc::now();
    let live = crate::service::counters::live_dataplanes(&state.config, redis, now).await;
    let (snapshot, warnings) = build(
        &state.config,
        rows,
        &open,
        state.hasher.check_value(),
        live,
        now,
    )?;
    for warning in &warnings {
        tracing::error!(warning = %warning, "snapshot built with an omission");
    }
    Ok(snapshot)
}

/// Builds and publishes once. `force`: publish even when the content is unchanged.
async fn publish_once(state: &AppState, redis: &RedisPool, force: bool) -> Result<Outcome, String> {
    let started = std::time::Instant::now();
    let mut snapshot = build_current(state, redis).await?;
    let hash = content_hash(&snapshot);
    let keys: BusKeys = state.config.cluster.bus_keys();
    let mut conn = redis.get().await.map_err(|e| format!("redis: {e}"))?;
    let last_version = state.publisher.status().version;
    let unchanged = state
        .publisher
        .last_hash
        .lock()
        .map(|h| *h == Some(hash))
        .unwrap_or(false);
    let stored_raw: Option<String> = redis::cmd("GET")
        .arg(&keys.snapshot_version)
        .query_async(&mut *conn)
        .await
        .map_err(|e| format!("redis GET {}: {e}", keys.snapshot_version))?;
    let stored = stored_raw
        .as_deref()
        .map(|raw| raw.trim().parse::<u64>().ok());
    if unchanged && !force && matches!(stored, Some(Some(v)) if Some(v) == last_version) {
        // Redis holds what we published last, and nothing changed.
        return Ok(Outcome::Unchanged);
    }
    let replace = match stored_raw.as_deref().zip(stored) {
        Some((raw, parsed)) if parsed.is_none_or(|stored| stored >= snapshot.version) => {
            match held(state, &mut conn, &keys, parsed, hash).await? {
                Held::Same(version) => {
                    if let Ok(mut last) = state.publisher.last_hash.lock() {
                        *last = Some(hash);
                    }
                    if let Ok(mut status) = state.publisher.status.lock() {
                        status.version = Some(version);
                        status.last_error = None;
                    }
                    return Ok(Outcome::Unchanged);
                }
                Held::Signed(stored) => {
                    snapshot.version = advance_past(state, stored).await?;
                    String::new()
                }
                Held::Foreign(reason) => {
                    supersede_foreign(state, &mut snapshot, raw, parsed, &reason).await?
                }
            }
        }
        _ => String::new(),
    };
    let signer = state
        .snapshot_signer
        .as_ref()
        .ok_or("cluster.snapshot_signing_key is not set: snapshots cannot be signed".to_owned())?;
    let sealed = seal_snapshot(&state.vault, signer, &snapshot).map_err(|e| e.to_string())?;
    let written: i64 = redis::cmd("EVAL")
        .arg(PUBLISH_SCRIPT)
        .arg(3)
        .arg(&keys.snapshot)
        .arg(&keys.snapshot_version)
        .arg(&keys.snapshot_channel)
        .arg(sealed.as_slice())
        .arg(snapshot.version)
        .arg(replace)
        .query_async(&mut *conn)
        .await
        .map_err(|e| format!("redis publish: {e}"))?;
    if written == 0 {
        tracing::warn!(
            version = snapshot.version,
            "Redis already holds a newer snapshot (another control plane published); not overwritten"
        );
    }
    record_published(state, &snapshot, hash, sealed.len(), started);
    Ok(Outcome::Published)
}

/// Records a publication in the publisher's status, the metrics and the log.
fn record_published(
    state: &AppState,
    snapshot: &Snapshot,
    hash: u64,
    bytes: usize,
    started: std::time::Instant,
) {
    let version = snapshot.version;
    if let Ok(mut last) = state.publisher.last_hash.lock() {
        *last = Some(hash);
    }
    if let Ok(mut status) = state.publisher.status.lock() {
        status.version = Some(version);
        status.published_at = Some(Utc::now());
        status.tenants = snapshot.tenants.len();
        status.keys = snapshot.keys.len();
        status.models = snapshot.models.len();
        status.live_dataplanes = snapshot.live_dataplanes;
        status.last_error = None;
    }
    state
        .metrics
        .snapshot_published(version, bytes, started.elapsed());
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
    state: &AppState,
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &BusKeys,
    stored: Option<u64>,
    hash: u64,
) -> Result<Held, String> {
    let envelope: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&keys.snapshot)
        .query_async(conn)
        .await
        .map_err(|e| format!("redis GET {}: {e}", keys.snapshot))?;
    let Some(stored) = stored else {
        return Ok(Held::Foreign("the version key holds no number".to_owned()));
    };
    let Some(bytes) = envelope else {
        return Ok(Held::Foreign("no snapshot under the version".to_owned()));
    };
    Ok(
        match open_snapshot(&state.vault, &state.snapshot_verifier, &bytes) {
            Err(error) => Held::Foreign(error.to_string()),
            Ok(held) if held.version != stored => Held::Foreign(format!(
                "the version key says {stored} but the signed snapshot is version {}",
                held.version
            )),
            Ok(held) if content_hash(&held) == hash => Held::Same(held.version),
            Ok(held) => Held::Signed(held.version),
        },
    )
}

/// Prepares overwriting a version key (`raw`, read as `parsed`) beside a snapshot no control
/// plane signed: data planes remember a refused version and do not fetch it again, so the
/// sequence first moves past a plausible one; an implausible one (a forged `u64::MAX`) is
/// never chased. Returns the value the publish script may replace.
async fn supersede_foreign(
    state: &AppState,
    snapshot: &mut Snapshot,
    raw: &str,
    parsed: Option<u64>,
    reason: &str,
) -> Result<String, String> {
    if let Some(stored) =
        parsed.filter(|v| v.saturating_sub(snapshot.version) < FOREIGN_ADVANCE_LIMIT)
    {
        snapshot.version = advance_past(state, stored).await?;
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
async fn advance_past(state: &AppState, stored: u64) -> Result<u64, String> {
    let mut db = state
        .pool
        .get()
        .await
        .map_err(|e| format!("database: {e}"))?;
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

/// Runs the publisher until the process ends: publishes at start, after each change
/// (debounced) and on the timer; failures are retried every second and shown in `/healthz`.
pub fn spawn(
    state: actix_web::web::Data<AppState>,
    redis: RedisPool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cluster = &state.config.cluster;
        let mut failing = false;
        let mut force = true;
        loop {
            match publish_once(&state, &redis, force).await {
                Ok(Outcome::Published | Outcome::Unchanged) => {
                    if failing {
                        tracing::info!("snapshot publishing recovered");
                    }
                    failing = false;
                    force = false;
                }
                Err(message) => {
                    state.metrics.snapshot_publish_failed();
                    if !failing {
                        tracing::error!(error = %message, "snapshot publishing failed; data planes keep their last snapshot; retrying every second");
                    } else {
                        tracing::debug!(error = %message, "snapshot publishing still failing");
                    }
                    state.publisher.record_error(message);
                    failing = true;
                }
            }
            let wait = if failing {
                Duration::from_secs(1)
            } else {
                cluster.publish_interval
            };
            tokio::select! {
                () = state.publisher.changed.notified() => {
                    tokio::time::sleep(cluster.publish_debounce).await;
                    force = true;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}
