//! Taking a request's admission plan ([`crate::flow::admit`]) from the governor, and the
//! limits and budget state for the headers of requests that take nothing: the results go
//! into the request's ctx, a refusal becomes its error.

use std::sync::Arc;

use super::ctx::RequestCtx;
use super::{Failure, State};
use crate::flow::admit;
use crate::limits::plan::Plan;
use crate::snapshot::{KeyEntry, RuntimeSnapshot};

/// Takes what `plan` needs in one atomic admission; the answer's headers and the admission
/// go into `ctx`, a refusal is logged (`refused`) and becomes the request's error.
pub(super) async fn take(
    state: &Arc<State>,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    plan: Plan,
    refused: &'static str,
) -> Result<(), Failure> {
    let (observed, admission) = state
        .governor
        .admit(&snapshot.governance, plan, ctx.event_id)
        .await;
    ctx.observed = Some(observed);
    match admission {
        Ok(admission) => {
            ctx.admission = Some(admission);
            Ok(())
        }
        Err(refusal) => {
            tracing::info!(
                request_id = %ctx.request_id,
                key_prefix = ctx.key_prefix(),
                limit = refusal.label(),
                "{refused}"
            );
            Err(refusal.to_api_error().into())
        }
    }
}

/// Reads the limits and budget state for the headers of a request that takes nothing.
pub(super) async fn observe(
    state: &Arc<State>,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
) {
    if let Some(plan) = admit::look_plan(snapshot, key) {
        ctx.observed = Some(state.governor.look(&snapshot.governance, plan).await);
    }
}

/// Before an error response (or an idempotent replay) to an authenticated request: the
/// limits and budget state for its headers, unless a check already produced it.
pub(super) async fn observe_for_error(state: &Arc<State>, ctx: &mut RequestCtx) {
    if ctx.observed.is_some() {
        return;
    }
    if let Some(key) = ctx.key.clone() {
        let snapshot = state.snapshots.load();
        observe(state, ctx, &snapshot, &key).await;
    }
}
