//! `POST /v1/messages/count_tokens`, after the key and model checks of `handle`.
//!
//! An alias with a deployment whose adapter [counts tokens](crate::providers::ProviderAdapter::counts_tokens)
//! (Anthropic) gets the provider's exact count: the client's body goes upstream through the
//! normal exchange (routing order restricted to those deployments, breakers and health
//! honoured, failover, timeouts) and the answer comes back as the provider sent it; its
//! errors reach the client in Anthropic's shape, as those of Messages do. Any other alias is
//! answered with the gateway's own estimate.
//!
//! Either way the request is admitted against the key's and tenant's requests-per-minute
//! and parallel limits (so a key cannot flood the provider's count endpoint with the
//! operator's credential), but never charged: no token limit or budget is checked or
//! settled, no `Idempotency-Key` is claimed or stored, and no usage record is written for
//! the route (see `flow::meter::Metered::billable`; metrics and the access log still count
//! the request). Upstream outcomes of a count leave the deployments' breakers alone (see
//! `upstream::exchange`).

use std::sync::Arc;

use pingora::proxy::Session;

use super::admission::take;
use super::ctx::RequestCtx;
use super::{respond, upstream, Failure, State};
use crate::flow::admit::count_plan;
use crate::flow::ingress::counts;
use crate::flow::order::{sync_timeout, try_order};
use crate::providers::{Call, Ingress};
use crate::request::{RequestBody, Route};
use crate::snapshot::{AliasEntry, RuntimeSnapshot};
use crate::tokens::{PromptSource, Vocabulary};

/// The client's request, as `handle` read and checked it.
pub(super) struct Counted<'a> {
    /// The Messages body as the client sent it.
    pub raw: &'a [u8],
    /// Its OpenAI chat form.
    pub openai: &'a [u8],
    /// The OpenAI form, parsed.
    pub body: &'a RequestBody<'a>,
}

/// Answers a `count_tokens` request for `alias`.
pub(super) async fn serve(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    alias: &AliasEntry,
    request: Counted<'_>,
) -> Result<(), Failure> {
    admit(state, ctx, snapshot).await?;
    if !alias.deployments.iter().any(|d| counts(d)) {
        let vocabulary = Vocabulary::of_first(&alias.deployments);
        return estimate(session, ctx, request.body, vocabulary).await;
    }
    // Empty when only other deployments are up: the exchange answers 503.
    let order = try_order(alias, counts)?;
    let timeouts = state.settings.timeouts(&alias.policy.timeouts);
    let plan = upstream::Plan {
        order: &order,
        max_attempts: alias.policy.max_attempts,
        timeouts,
        health: &snapshot.routing.health,
    };
    let request_id = ctx.request_id.clone();
    let beta = session
        .get_header("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let call = Call {
        route: &Route::CountTokens,
        body: request.body,
        raw: request.openai,
        alias: &alias.alias,
        request_id: &request_id,
        created: ctx.started_at.timestamp(),
        ingress: Ingress::Anthropic {
            raw: request.raw,
            beta: beta.as_deref(),
        },
        now: std::time::SystemTime::now(),
    };
    let exchange = upstream::exchange(state, session, ctx, &plan, &call);
    tokio::time::timeout(timeouts.sync, exchange)
        .await
        .unwrap_or_else(|_| Err(sync_timeout().into()))
}

/// Takes one request of the per-minute request limits and a parallel slot (released when
/// the request ends); token limits and budgets are left out of the plan.
async fn admit(
    state: &Arc<State>,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
) -> Result<(), Failure> {
    let Some(key) = ctx.key.clone() else {
        return Ok(());
    };
    match count_plan(snapshot, &key, ctx.alias.as_deref()) {
        Some(plan) => take(state, ctx, snapshot, plan, "token count refused by a limit").await,
        None => Ok(()),
    }
}

/// The prompt's tokens as the gateway estimates them (nothing goes upstream).
async fn estimate(
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: &RequestBody<'_>,
    vocabulary: Vocabulary,
) -> Result<(), Failure> {
    let tokens = PromptSource::of(body)
        .count_off_worker(vocabulary)
        .await
        .max(1);
    if let Some(egress) = ctx.anthropic.as_mut() {
        egress.native = true;
    }
    let answer = serde_json::json!({ "input_tokens": tokens });
    respond::json(session, ctx, 200, answer.to_string().into_bytes()).await
}
