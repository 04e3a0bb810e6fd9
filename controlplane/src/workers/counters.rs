//! The spend counters rebuilt from Postgres (cluster mode): [`rebuild`] recomputes the per-day
//! spend counters of every tenant and key from `requests` (Postgres is the record; Redis may
//! have been flushed or restarted empty) and merges them into Redis with
//! `max(existing, postgres)`, one small Lua script per batch of one tenant's counters (they
//! share the tenant's hash tag; `cluster/counters.rs`). Runs at start-up
//! ([`spawn_startup_rebuild`]), by `omg-controlplane counters rebuild` and by
//! `POST /admin/budgets/rebuild` (`service/counters.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use omg_shared::budget::{day_start, local_day};
use omg_shared::config::GatewayConfig;
use omg_shared::counters::{BudgetScope, CounterKeys};
use serde::Serialize;
use uuid::Uuid;

use crate::cluster::{self, RedisPool};
use crate::db::{self, Pool};
use crate::service::governance::timezone;

/// Days of history rebuilt, today included: the longest budget window (`rolling_366d`).
pub const REBUILD_DAYS: i64 = 366;

/// Counters per script call (all of one tenant: one hash tag, so one Redis Cluster slot).
const BATCH: usize = 200;

/// What a rebuild did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RebuildReport {
    /// Tenants with spend in the period.
    pub tenants: usize,
    /// Keys with spend in the period.
    pub keys: usize,
    /// Day counters computed from Postgres (tenant and key).
    pub counters: usize,
    /// Counters raised to the Postgres value (absent or lower in Redis).
    pub raised: usize,
    /// Counters Redis already held at or above the Postgres value (kept).
    pub kept: usize,
    /// First local day rebuilt (`reporting.timezone`); the last is today.
    #[schema(value_type = String, format = Date)]
    pub since: NaiveDate,
    /// Script calls made.
    pub batches: usize,
    pub took_ms: u64,
}

/// Recomputes the day spend counters of the last [`REBUILD_DAYS`] local days from Postgres and
/// merges them into Redis (`max`). Errors say which side failed.
pub async fn rebuild(
    config: &GatewayConfig,
    pool: &Pool,
    redis: &RedisPool,
    now: DateTime<Utc>,
) -> Result<RebuildReport, String> {
    let started = Instant::now();
    let tz = timezone(config);
    let first = local_day(tz, now) - Duration::days(REBUILD_DAYS - 1);
    let rows = {
        let mut conn = pool.get().await.map_err(|e| format!("database: {e}"))?;
        db::governance::daily_spend(&mut conn, &config.reporting.timezone, day_start(tz, first))
            .await
            .map_err(|e| format!("reading spend from requests: {e}"))?
    };
    let names = CounterKeys::new(&config.cluster.counter_prefix);
    // tenant → counter name → micro-USD (tenant days summed over keys and keyless requests).
    let mut by_tenant: BTreeMap<Uuid, BTreeMap<String, i64>> = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    for row in rows.iter().filter(|r| r.day >= first) {
        let counters = by_tenant.entry(row.tenant_id).or_default();
        let tenant_day = names.spend_day(&BudgetScope::Tenant(row.tenant_id), row.day);
        let total = counters.entry(tenant_day).or_insert(0);
        *total = total.saturating_add(row.micro_usd);
        if let Some(key) = row.key_id {
            keys.insert(key);
            let scope = BudgetScope::Key {
                tenant: row.tenant_id,
                key,
            };
            counters.insert(names.spend_day(&scope, row.day), row.micro_usd);
        }
    }
    let mut report = RebuildReport {
        tenants: by_tenant.len(),
        keys: keys.len(),
        since: first,
        ..RebuildReport::default()
    };
    let mut conn = redis.get().await.map_err(|e| format!("redis: {e}"))?;
    for counters in by_tenant.values() {
        let entries: Vec<(&String, &i64)> = counters.iter().collect();
        for batch in entries.chunks(BATCH) {
            let raised = cluster::counters::merge_spend(&mut conn, batch).await?;
            report.counters += batch.len();
            report.raised += raised;
            report.kept += batch.len().saturating_sub(raised);
            report.batches += 1;
        }
    }
    report.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Runs a rebuild in the background (start-up): logged with its counts; a failure is logged,
/// never fatal (the data planes keep counting; run `omg-controlplane counters rebuild` or
/// `POST /admin/budgets/rebuild` later).
pub fn spawn_startup_rebuild(
    config: std::sync::Arc<GatewayConfig>,
    pool: Pool,
    redis: RedisPool,
) -> tokio::task::JoinHandle<()> {
    crate::tasks::spawn_named("counter rebuild", async move {
        match rebuild(&config, &pool, &redis, Utc::now()).await {
            Ok(r) => tracing::info!(
                tenants = r.tenants,
                keys = r.keys,
                counters = r.counters,
                raised = r.raised,
                kept = r.kept,
                since = %r.since,
                took_ms = r.took_ms,
                "spend counters rebuilt from Postgres"
            ),
            Err(error) => tracing::error!(
                %error,
                "spend counter rebuild failed; budgets are enforced from what Redis holds; retry with `omg-controlplane counters rebuild` or POST /admin/budgets/rebuild"
            ),
        }
    })
}
