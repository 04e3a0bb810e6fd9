//! `POST /admin/budgets/rebuild`: the spend counter rebuild (`workers/counters.rs`) run on
//! request, audited with its report.

use chrono::Utc;

use crate::auth::Caller;
use crate::db;
use crate::service::audit::{self, Action, Entry};
use crate::service::error::Result;
use crate::service::Error;
use crate::state::AppState;
use crate::workers::counters::rebuild;
pub use crate::workers::counters::RebuildReport;

/// `POST /admin/budgets/rebuild`: rebuilds now and audits it with its report.
pub async fn rebuild_now(state: &AppState, caller: &Caller) -> Result<RebuildReport> {
    let Some(redis) = &state.redis else {
        return Err(Error::conflict(
            "Redis is not configured (redis.url): there are no shared counters to rebuild",
        ));
    };
    let report = rebuild(&state.config, &state.pool, redis, Utc::now())
        .await
        .map_err(|error| {
            tracing::error!(%error, "spend counter rebuild failed");
            Error::unavailable(
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
    audit::append(
        &mut conn,
        caller.into(),
        Entry {
            action: Action::CountersRebuild,
            target_id: state.config.cluster.counter_prefix.clone(),
            tenant_id: None,
            before: None,
            after: serde_json::to_value(&report).ok(),
        },
    )
    .await?;
    Ok(report)
}
