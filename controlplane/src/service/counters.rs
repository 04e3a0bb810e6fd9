//! The shared counters in Redis, seen from the control plane (cluster mode):
//!
//! - [`rebuild`] recomputes the per-day spend counters of every tenant and key from
//!   `requests` (Postgres is the record; Redis may have been flushed or restarted empty) and
//!   merges them into Redis with `max(existing, postgres)`, one small Lua script per batch of
//!   one tenant's counters (they share the tenant's hash tag). Runs at start-up, by
//!   `omg-controlplane counters rebuild` and by `POST /admin/budgets/rebuild`.
//! - [`live_dataplanes`] counts the data planes whose heartbeat is recent, for the snapshot.

use std::collections::BTreeMap;
use std::time::Instant;

use bb8_redis::redis;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use omg_shared::budget::{day_start, local_day};
use omg_shared::config::GatewayConfig;
use omg_shared::counters::{BudgetScope, CounterKeys, DATAPLANE_LIVE_MS, SPEND_DAY_TTL_SECS};
use serde::Serialize;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::service::governance::timezone;
use crate::state::RedisPool;

/// Days of history rebuilt, today included: the longest budget window (`rolling_366d`).
pub const REBUILD_DAYS: i64 = 366;

/// Counters per script call (all of one tenant: one hash tag, so one Redis Cluster slot).
const BATCH: usize = 200;

/// Raises each `KEYS[i]` to `ARGV[i + 1]` when it holds less (absent or unreadable = 0), with
/// the TTL `ARGV[1]`; a counter already at or above keeps its value (the data planes may have
/// settled spend that is not ingested yet) and gets the TTL only if it has none. Returns how
/// many were raised.
const MERGE_SCRIPT: &str = r"
local ttl = tonumber(ARGV[1])
local raised = 0
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[i + 1])
  local have = tonumber(redis.call('GET', key) or '0') or 0
  if want > have then
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
    raised = raised + 1
  elseif redis.call('TTL', key) == -1 then
    redis.call('EXPIRE', key, ttl)
  end
end
return raised
";

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
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(MERGE_SCRIPT).arg(batch.len());
            for (name, _) in batch {
                cmd.arg(name.as_str());
            }
            cmd.arg(SPEND_DAY_TTL_SECS);
            for (_, micros) in batch {
                cmd.arg(**micros);
            }
            let raised: i64 = cmd
                .query_async(&mut *conn)
                .await
                .map_err(|e| format!("redis: merging spend counters: {e}"))?;
            let raised = usize::try_from(raised).unwrap_or(0);
            report.counters += batch.len();
            report.raised += raised;
            report.kept += batch.len().saturating_sub(raised);
            report.batches += 1;
        }
    }
    report.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Heartbeats older than this are removed from the set (dead instances never come back under
/// the same id).
const DATAPLANE_FORGET_MS: i64 = 3_600_000;

/// Data planes whose last heartbeat in `<counter_prefix>:dataplanes` is younger than
/// [`DATAPLANE_LIVE_MS`]; at least 1, and 1 when Redis cannot say. Also forgets members
/// silent for an hour.
pub async fn live_dataplanes(config: &GatewayConfig, redis: &RedisPool, now: DateTime<Utc>) -> u32 {
    let key = CounterKeys::new(&config.cluster.counter_prefix).dataplanes();
    let now_ms = now.timestamp_millis();
    let counted: Result<u64, String> = async {
        let mut conn = redis.get().await.map_err(|e| e.to_string())?;
        let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({}", now_ms - DATAPLANE_FORGET_MS))
            .query_async(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("ZCOUNT")
            .arg(&key)
            .arg(format!("({}", now_ms - DATAPLANE_LIVE_MS))
            .arg("+inf")
            .query_async(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match counted {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX).max(1),
        Err(error) => {
            tracing::debug!(%error, "cannot count live data planes; assuming 1");
            1
        }
    }
}

/// Runs a rebuild in the background (start-up): logged with its counts; a failure is logged,
/// never fatal (the data planes keep counting; run `omg-controlplane counters rebuild` or
/// `POST /admin/budgets/rebuild` later).
pub fn spawn_startup_rebuild(
    config: std::sync::Arc<GatewayConfig>,
    pool: Pool,
    redis: RedisPool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
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

/// `POST /admin/budgets/rebuild`: rebuilds now and audits it with its report.
pub async fn rebuild_now(
    state: &crate::state::AppState,
    caller: &crate::auth::Caller,
) -> crate::service::error::Result<RebuildReport> {
    use crate::service::Error as ApiError;
    let Some(redis) = &state.redis else {
        return Err(ApiError::conflict(
            "Redis is not configured (redis.url): there are no shared counters to rebuild",
        ));
    };
    let report = rebuild(&state.config, &state.pool, redis, Utc::now())
        .await
        .map_err(|error| {
            tracing::error!(%error, "spend counter rebuild failed");
            ApiError::unavailable(
                "the rebuild failed (Redis or Postgres unavailable); the control plane log has the details",
            )
        })?;
    tracing::info!(
        counters = report.counters,
        raised = report.raised,
        kept = report.kept,
        took_ms = report.took_ms,
        "spend counters rebuilt on request"
    );
    let mut conn = state.pool.get().await.map_err(db::DbError::from)?;
    crate::service::audit::append(
        &mut conn,
        caller.into(),
        crate::service::audit::Entry {
            action: crate::service::audit::Action::CountersRebuild,
            target_id: state.config.cluster.counter_prefix.clone(),
            tenant_id: None,
            before: None,
            after: serde_json::to_value(&report).ok(),
        },
    )
    .await?;
    Ok(report)
}
