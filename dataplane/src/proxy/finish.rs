//! Pingora's `logging` phase: the request's closing state ([`Metered`]) is read from its
//! ctx once, then written out as metrics, the usage record (`crate::usage::record_of`), the
//! access log line, and the settling of its admission.

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::State;
use crate::flow::meter::Metered;
use crate::metrics::Metrics;

/// After the response: usage record (for authenticated model calls), metrics, access log.
pub(super) fn finish(state: &State, session: &Session, ctx: &mut RequestCtx) {
    let metered = metered(ctx);
    count(&metered);
    if metered.billable() {
        state.usage.record(&crate::usage::record_of(&metered));
    }
    access_log(session, ctx, &metered);
    settle(state, ctx, &metered);
}

/// The request's closing state, from its ctx.
fn metered(ctx: &RequestCtx) -> Metered {
    Metered {
        event_id: ctx.event_id,
        request_id: ctx.request_id.clone(),
        started_at: ctx.started_at,
        tenant_id: ctx.tenant_id(),
        key_id: ctx.key_id(),
        user_id: ctx.user_id(),
        alias: ctx.alias.clone(),
        target: ctx.target.clone(),
        route: ctx.route.clone(),
        status: ctx.status,
        error_code: ctx.error_code,
        usage: ctx.meter.usage(),
        usage_estimated: ctx.meter.estimated(),
        cost: 0,
        latency: ctx.started.elapsed(),
        ttft: ctx.ttft,
        stream: ctx.stream,
        idempotent_replay: ctx.idempotent_replay,
        batch_id: ctx.batch_id().map(str::to_owned),
    }
    .closed(ctx.meter)
}

/// The request's metrics.
fn count(metered: &Metered) {
    let metrics = Metrics::global();
    let (endpoint, alias, provider) = (
        metered.endpoint(),
        metered.alias_label(),
        metered.provider_label(),
    );
    metrics
        .requests
        .with_label_values(&[endpoint, alias, provider, &metered.status.to_string()])
        .inc();
    metrics
        .request_duration
        .with_label_values(&[endpoint, alias, provider])
        .observe(metered.latency.as_secs_f64());
    if let Some(ttft) = metered.ttft {
        metrics
            .ttft
            .with_label_values(&[alias, provider])
            .observe(ttft.as_secs_f64());
    }
    let usage = &metered.usage;
    if usage.prompt_tokens > 0 {
        metrics
            .tokens
            .with_label_values(&[alias, provider, "prompt"])
            .inc_by(usage.prompt_tokens);
    }
    if usage.completion_tokens > 0 {
        metrics
            .tokens
            .with_label_values(&[alias, provider, "completion"])
            .inc_by(usage.completion_tokens);
    }
    if metered.cost > 0 {
        metrics
            .cost
            .with_label_values(&[alias, provider])
            .inc_by(u64::try_from(metered.cost).unwrap_or(0));
    }
}

/// The access log line.
fn access_log(session: &Session, ctx: &RequestCtx, metered: &Metered) {
    let request = session.req_header();
    tracing::info!(
        target: "omg::access",
        request_id = %metered.request_id,
        method = %request.method,
        path = %request.uri.path(),
        status = metered.status,
        latency_ms = metered.latency.as_millis() as u64,
        key_prefix = ctx.key_prefix(),
        tenant_id = %metered.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        alias = metered.alias_label(),
        provider = metered.provider_label(),
        deployment = metered.target.as_ref().map_or("-", |t| t.deployment.as_str()),
        attempts = ctx.attempts,
        stream = metered.stream,
        prompt_tokens = metered.usage.prompt_tokens,
        completion_tokens = metered.usage.completion_tokens,
        images = metered.usage.images,
        cost_micro_usd = metered.cost,
        error_code = metered.error_code.unwrap_or("-"),
        batch_id = metered.batch_id.as_deref().unwrap_or("-"),
        "request"
    );
}

/// Settles the admission with what the request took. Settling may wait on Redis: after the
/// response, still counted as in flight so a graceful drain waits for it.
fn settle(state: &State, ctx: &mut RequestCtx, metered: &Metered) {
    if let Some(admission) = ctx.admission.take() {
        let governor = state.governor.clone();
        let (tokens, cost) = (metered.tokens(), metered.cost);
        let inflight = ctx.take_inflight();
        crate::tasks::spawn_named("settle admission", async move {
            governor.settle(admission, tokens, cost).await;
            drop(inflight);
        });
    }
}
