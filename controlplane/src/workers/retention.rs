//! The retention job (`retention.*`): every `retention.interval` it deletes request rows,
//! usage rollups and budget alert events older than their retention, `retention.batch_size`
//! rows per statement (each its own short transaction, so the usage ingester, which only
//! inserts new rows, never waits on it), logs what it removed and counts it
//! (`omg_cp_retention_*`). One control plane at a time runs a pass (a session advisory lock);
//! the others skip theirs. Rollups (`usage_rollups` and `usage_rollups_coarse`) are kept
//! longer than request rows (validated at load), so long-range reports still answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use omg_shared::config::{GatewayConfig, RetentionConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::retention::{self as sql, Pruned};
use crate::db::{DbError, Pool};
use crate::metrics::RetentionMetrics;

/// Wait before the first pass, so start-up work (migrations, bootstrap, the counter rebuild)
/// goes first.
const FIRST_PASS_DELAY: Duration = Duration::from_secs(60);

/// What one pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Another control plane held the pass lock: nothing was done.
    pub skipped: bool,
    pub requests: u64,
    /// Rows of `usage_rollups` and `usage_rollups_coarse`.
    pub rollups: u64,
    pub alert_events: u64,
    /// Statements run.
    pub batches: u64,
}

/// Deletes what has expired at `now`, table by table, in batches; stops between two batches
/// once `stopping()` says so. Errors name the table.
pub async fn run_pass(
    pool: &Pool,
    retention: &RetentionConfig,
    metrics: &RetentionMetrics,
    now: DateTime<Utc>,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<PassReport, String> {
    let mut conn = pool.get().await.map_err(|e| format!("database: {e}"))?;
    if !sql::try_lock(&mut conn).await.map_err(|e| e.to_string())? {
        return Ok(PassReport {
            skipped: true,
            ..PassReport::default()
        });
    }
    let pruned = prune_all(&mut conn, retention, metrics, now, stopping).await;
    let unlocked = sql::unlock(&mut conn).await;
    let report = pruned?;
    unlocked.map_err(|e| format!("releasing the retention lock: {e}"))?;
    Ok(report)
}

async fn prune_all(
    conn: &mut diesel_async::AsyncPgConnection,
    retention: &RetentionConfig,
    metrics: &RetentionMetrics,
    now: DateTime<Utc>,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<PassReport, String> {
    let mut report = PassReport::default();
    let mut pass = Pass {
        batch: i64::from(retention.batch_size.max(1)),
        metrics,
        stopping,
        batches: 0,
    };
    if let Some(cutoff) = cutoff(now, retention.requests) {
        report.requests = pass.prune(conn, Pruned::Requests, cutoff).await?;
    }
    if let Some(cutoff) = cutoff(now, retention.alert_events) {
        report.alert_events = pass.prune(conn, Pruned::AlertEvents, cutoff).await?;
    }
    if let Some(cutoff) = cutoff(now, retention.rollups) {
        let fine = pass.prune(conn, Pruned::Rollups, cutoff).await?;
        let coarse = pass.prune(conn, Pruned::RollupsCoarse, cutoff).await?;
        report.rollups = fine.saturating_add(coarse);
    }
    report.batches = pass.batches;
    Ok(report)
}

/// The state of a pass across tables.
struct Pass<'a> {
    batch: i64,
    metrics: &'a RetentionMetrics,
    stopping: &'a (dyn Fn() -> bool + Sync),
    batches: u64,
}

impl Pass<'_> {
    /// Deletes `table`'s rows older than `cutoff`, a batch at a time, until a batch comes back
    /// short (or the job is stopping). Returns how many rows went.
    async fn prune(
        &mut self,
        conn: &mut diesel_async::AsyncPgConnection,
        table: Pruned,
        cutoff: DateTime<Utc>,
    ) -> Result<u64, String> {
        let mut removed = 0u64;
        loop {
            let n = sql::delete_batch(conn, table, cutoff, self.batch)
                .await
                .map_err(|e: DbError| format!("pruning {}: {e}", table.table()))?;
            let n = u64::try_from(n).unwrap_or(u64::MAX);
            removed = removed.saturating_add(n);
            self.batches += 1;
            self.metrics.deleted(table.table(), n);
            if n < self.batch.unsigned_abs() || (self.stopping)() {
                return Ok(removed);
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Rows older than this are expired; `None` when they are kept forever (`0`).
fn cutoff(now: DateTime<Utc>, keep: Duration) -> Option<DateTime<Utc>> {
    if keep.is_zero() {
        return None;
    }
    let keep = chrono::Duration::from_std(keep).ok()?;
    now.checked_sub_signed(keep)
}

/// Starts the job unless every retention is `0` (keep forever). It stops at the next batch
/// or wait once `stop` turns true.
pub fn spawn(
    pool: Pool,
    config: Arc<GatewayConfig>,
    metrics: RetentionMetrics,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let retention = config.retention.clone();
    if retention.requests.is_zero()
        && retention.rollups.is_zero()
        && retention.alert_events.is_zero()
    {
        tracing::info!("retention: every table is kept forever; the retention job is off");
        return None;
    }
    Some(crate::tasks::spawn_named("retention", async move {
        let mut wait = FIRST_PASS_DELAY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            wait = retention.interval;
            let started = Instant::now();
            let stopping = || *stop.borrow();
            match run_pass(&pool, &retention, &metrics, Utc::now(), &stopping).await {
                Ok(report) => log_pass(&report, started.elapsed(), &metrics),
                Err(error) => {
                    metrics.pass("error");
                    tracing::error!(%error, "retention pass failed; retried at the next interval");
                }
            }
        }
    }))
}

fn log_pass(report: &PassReport, took: Duration, metrics: &RetentionMetrics) {
    if report.skipped {
        metrics.pass("skipped");
        tracing::debug!("retention pass skipped: another control plane is running one");
        return;
    }
    metrics.pass("ok");
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    if report.requests + report.alert_events + report.rollups > 0 {
        tracing::info!(
            requests = report.requests,
            rollups = report.rollups,
            alert_events = report.alert_events,
            batches = report.batches,
            took_ms,
            "retention pass removed expired rows"
        );
    } else {
        tracing::debug!(took_ms, "retention pass: nothing expired");
    }
}
