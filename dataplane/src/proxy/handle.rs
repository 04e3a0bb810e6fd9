//! The request flow: id, route, key, body, model, then the provider's exchange; and, at the
//! end, the usage record, metrics and the access log line.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use omg_shared::error::ErrorCode;
use omg_shared::provider::{Operation, ProviderKind};
use omg_shared::tokens::MAX_REPORTED_TOKENS;
use omg_shared::usage::{UsageEvent, USAGE_SCHEMA_VERSION};
use pingora::proxy::Session;

use super::ctx::{AnthropicEgress, RequestCtx};
use super::{forward, mock, respond, upstream, Failure, State};
use crate::auth::{authenticate, extract_key};
use crate::error::{truncate, ApiError};
use crate::ingress::anthropic;
use crate::limits::{plan, Estimate};
use crate::metrics::Metrics;
use crate::providers::{Call, Ingress};
use crate::request::{priced, route, RequestBody, Route};
use crate::routing::{self, Order};
use crate::snapshot::{AliasEntry, DeploymentEntry, KeyEntry, RuntimeSnapshot};
use crate::tokens::{PromptSource, Vocabulary};

/// Handles one request end to end.
pub(super) async fn handle(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Failure> {
    ctx.event_id = new_uuid_v7();
    ctx.request_id = request_id(
        session
            .get_header("x-request-id")
            .and_then(|v| v.to_str().ok()),
        ctx.event_id,
    );
    let method = session.req_header().method.as_str().to_owned();
    let path = session.req_header().uri.path().to_owned();
    let matched = route(&method, &path)?;
    ctx.route = Some(matched.clone());
    if matched.is_anthropic() {
        ctx.anthropic = Some(AnthropicEgress::default());
    }

    let snapshot = state.snapshots.load();
    let presented = extract_key(|name| session.get_header(name).and_then(|v| v.to_str().ok()));
    let key = authenticate(&snapshot, presented, chrono::Utc::now().timestamp_millis())?;
    ctx.tenant_id = Some(key.key.tenant_id);
    ctx.key_id = Some(key.key.id);
    ctx.key_prefix = Some(key.key.prefix.clone());
    ctx.key = Some(key.clone());

    match &matched {
        Route::Forward(_) => Ok(forward::prepare(state, ctx, &method, &path)?),
        Route::ListModels => {
            observe(state, ctx, &snapshot, &key).await;
            list_models(session, ctx, &snapshot, &key).await
        }
        Route::GetModel(id) => {
            observe(state, ctx, &snapshot, &key).await;
            get_model(session, ctx, &snapshot, &key, id).await
        }
        Route::Chat
        | Route::Completions
        | Route::Embeddings
        | Route::ImagesGenerations
        | Route::Messages
        | Route::CountTokens => {
            let reading = read_body(session, state.settings.body_limit);
            let bytes =
                match tokio::time::timeout(state.settings.request_body_timeout, reading).await {
                    Ok(read) => read?,
                    Err(_) => return Err(super::conn::body_timed_out(session).into()),
                };
            // An Anthropic client's request runs as the chat request it translates to.
            let translated = if matched.is_anthropic() {
                Some(translate_anthropic(
                    &snapshot,
                    &bytes,
                    matched == Route::CountTokens,
                )?)
            } else {
                None
            };
            let (operation, openai): (Route, &[u8]) = match &translated {
                Some(translated) => (Route::Chat, &translated.body),
                None => (matched.clone(), &bytes),
            };
            let body = RequestBody::parse(openai, &operation)?;
            ctx.stream = body.stream;
            let alias = snapshot
                .model(&body.model)
                .ok_or_else(|| ApiError::model_not_found(&body.model))?;
            if !key.may_use(&alias.alias) {
                return Err(ApiError::new(
                    ErrorCode::ModelNotAllowed,
                    format!(
                        "Your key may not use the model `{}`. Ask your tenant admin to allow it.",
                        alias.alias
                    ),
                )
                .with_param("model")
                .into());
            }
            if operation.model_type() != Some(alias.model_type) {
                return Err(ApiError::new(
                    ErrorCode::OperationUnsupported,
                    format!(
                        "The model `{}` cannot serve {}; pick a model of the right type.",
                        alias.alias,
                        matched.endpoint_name()
                    ),
                )
                .with_param("model")
                .into());
            }
            let capable = capability_filter(&operation, body.stream);
            if !alias.deployments.iter().any(|d| capable(d)) {
                return Err(unsupported(alias, &operation, body.stream).into());
            }
            ctx.alias = Some(alias.alias.clone());
            body.check_max_tokens(alias.max_output_tokens)?;
            if matched == Route::CountTokens {
                let request = super::count_tokens::Counted {
                    raw: &bytes,
                    openai,
                    body: &body,
                };
                return super::count_tokens::serve(state, session, ctx, &snapshot, alias, request)
                    .await;
            }
            if super::idem::begin(state, session, ctx, &method, &path, &bytes).await? {
                return Ok(()); // replayed from the idempotency store
            }
            let order = try_order(alias, |d| capable(d))?;
            let beta = session
                .get_header("anthropic-beta")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let request = Admitted {
                alias,
                order: &order,
                route: &operation,
                body: &body,
                anthropic: matched.is_anthropic().then_some(&bytes[..]),
                beta: beta.as_deref(),
            };
            admit(state, ctx, &snapshot, &key, request).await?;
            // The mock answers in-process; other kinds go upstream (with failover).
            if let Some(first) = order
                .first()
                .filter(|d| d.deployment.provider == ProviderKind::Mock)
            {
                return mock::serve(session, ctx, first, &operation, &body).await;
            }
            let timeouts = state.settings.timeouts(&alias.policy.timeouts);
            let plan = upstream::Plan {
                order: &order,
                max_attempts: alias.policy.max_attempts,
                timeouts,
                health: &snapshot.routing.health,
            };
            let request_id = ctx.request_id.clone();
            let call = Call {
                route: &operation,
                body: &body,
                raw: openai,
                alias: &alias.alias,
                request_id: &request_id,
                created: ctx.started_at.timestamp(),
                ingress: if matched.is_anthropic() {
                    Ingress::Anthropic {
                        raw: &bytes,
                        beta: beta.as_deref(),
                    }
                } else {
                    Ingress::OpenAi
                },
                now: std::time::SystemTime::now(),
            };
            let exchange = upstream::exchange(state, session, ctx, &plan, &call);
            if body.stream {
                // Streams are bounded by the idle timeout and `stream_max_duration`.
                return exchange.await;
            }
            tokio::time::timeout(timeouts.sync, exchange)
                .await
                .unwrap_or_else(|_| Err(sync_timeout().into()))
        }
    }
}

/// 504: a non-streamed request outlived its sync timeout.
pub(super) fn sync_timeout() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamTimeout,
        "The request did not complete within the gateway's sync timeout \
         (`server.sync_timeout`, or the alias's `routing.aliases.<alias>.timeouts.sync`).",
    )
}

/// An Anthropic client's request in its OpenAI form. What the OpenAI form cannot carry
/// (documents, server tools, …) is refused, unless only Anthropic deployments will see the
/// request (every deployment of the alias, or any for `count_tokens`, which only they
/// answer): then the body goes upstream as written and those parts are only left out of the
/// form used for routing, limits and estimates.
fn translate_anthropic(
    snapshot: &RuntimeSnapshot,
    raw: &[u8],
    count_only: bool,
) -> Result<anthropic::Translated, ApiError> {
    anthropic::to_openai(raw, count_only).or_else(|refusal| {
        let native = |d: &DeploymentEntry| d.deployment.provider == ProviderKind::Anthropic;
        let only_anthropic = anthropic::model_of(raw)
            .and_then(|model| snapshot.model(&model))
            .is_some_and(|alias| {
                if count_only {
                    alias
                        .deployments
                        .iter()
                        .any(|d| super::count_tokens::counts(d))
                } else {
                    !alias.deployments.is_empty() && alias.deployments.iter().all(|d| native(d))
                }
            });
        if only_anthropic {
            anthropic::to_openai_for_native(raw, count_only)
        } else {
            Err(refusal)
        }
    })
}

/// Which deployments can serve the route (and streaming, when asked) by their provider's
/// capabilities.
fn capability_filter(route: &Route, stream: bool) -> impl Fn(&DeploymentEntry) -> bool {
    let operation = match route {
        Route::Completions => Operation::Completions,
        Route::Embeddings => Operation::Embeddings,
        Route::ImagesGenerations => Operation::ImagesGenerate,
        _ => Operation::Chat,
    };
    move |d: &DeploymentEntry| {
        let provider = d.deployment.provider;
        provider.supports(operation) && (!stream || provider.supports(Operation::Stream))
    }
}

/// 400 `operation_unsupported`: no deployment of the alias has a provider that can serve
/// the request; nothing was sent upstream.
fn unsupported(alias: &AliasEntry, route: &Route, stream: bool) -> ApiError {
    let mut providers: Vec<&str> = alias
        .deployments
        .iter()
        .map(|d| d.deployment.provider.as_str())
        .collect();
    providers.dedup();
    let code = match route {
        Route::ImagesGenerations => ErrorCode::ImageOperationUnsupported,
        _ => ErrorCode::OperationUnsupported,
    };
    ApiError::new(
        code,
        format!(
            "The model `{}` is served by {} which cannot serve {}{}; use a model whose provider can (see GET /v1/models).",
            alias.alias,
            providers.join(", "),
            route.endpoint_name(),
            if stream { " with `stream: true`" } else { "" },
        ),
    )
    .with_param("model")
}

/// Every deployment of the alias is resting after failures: 503 with the time until one
/// may take a probe.
/// The alias's deployments in the order to try them, only those `keep` accepts (possibly
/// none: the exchange then answers 503); an error when every deployment is resting.
pub(super) fn try_order(
    alias: &AliasEntry,
    keep: impl Fn(&DeploymentEntry) -> bool,
) -> Result<Vec<Arc<DeploymentEntry>>, ApiError> {
    match routing::order(
        &alias.deployments,
        alias.policy.strategy,
        routing::health::now_ms(),
        |total| rand::random::<u64>() % total.max(1),
    ) {
        Order::Try(mut order) => {
            order.retain(|d| keep(d));
            Ok(order)
        }
        Order::AllResting { retry_in_ms } => Err(all_resting(&alias.alias, retry_in_ms)),
    }
}

fn all_resting(alias: &str, retry_in_ms: Option<u64>) -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::NoHealthyUpstream,
        format!(
            "Every deployment of `{alias}` is failing and resting; retry later. \
             Operators: see /deployments on the data plane's admin listener."
        ),
    );
    error.retry_after = Some(retry_in_ms.map_or(1, |ms| ms.div_ceil(1000).max(1)));
    error
}

/// A request about to be admitted: what its estimate is made from.
struct Admitted<'r> {
    alias: &'r AliasEntry,
    order: &'r [Arc<DeploymentEntry>],
    route: &'r Route,
    body: &'r RequestBody<'r>,
    /// The client's Messages body, when it spoke Anthropic.
    anthropic: Option<&'r [u8]>,
    /// Its `anthropic-beta` header.
    beta: Option<&'r str>,
}

/// The worst case a request may take: its prompt (counted with the tokenizer of the first
/// deployment's model, bounded from above, at most the model's `context_window`) plus the
/// largest completion it may get (`max_tokens`, else the model's `max_output_tokens`, else
/// `rate_limits.default_max_tokens`) for every choice and prompt it asks for, priced at the
/// dearest deployment it may fail over to.
async fn estimate(snapshot: &RuntimeSnapshot, request: &Admitted<'_>) -> Estimate {
    let Admitted {
        alias,
        order,
        route,
        body,
        ..
    } = request;
    let source = PromptSource::of(body);
    let prompts = source.prompts();
    let counted = source
        .count_off_worker(Vocabulary::of_first(order))
        .await
        .max(1);
    let prompt = alias
        .context_window
        .filter(|window| *window > 0)
        .map_or(counted, |window| {
            counted.min(window.saturating_mul(prompts))
        });
    let completion = match route {
        Route::Embeddings | Route::ImagesGenerations => 0,
        _ => body
            .max_tokens
            .or(alias.max_output_tokens)
            .unwrap_or(snapshot.governance.rate_limits.default_max_tokens.max(1))
            .saturating_mul(body.choices())
            .saturating_mul(prompts),
    };
    let cost = order
        .iter()
        .map(|d| {
            d.deployment
                .pricing
                .worst_case(prompt, completion, body.images)
        })
        .max()
        .unwrap_or(0);
    Estimate {
        tokens: prompt.saturating_add(completion),
        cost,
    }
}

/// Checks limits and budgets and takes what the request needs; refusals become the
/// request's error.
async fn admit(
    state: &Arc<State>,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
    request: Admitted<'_>,
) -> Result<(), Failure> {
    let mut plan = plan::build(
        &snapshot.governance,
        key,
        ctx.alias.as_deref(),
        Some(Estimate::default()),
        chrono::Utc::now(),
    );
    if plan.is_empty() {
        return Ok(());
    }
    if !plan.budgets.is_empty() {
        // What a reservation cannot bound is refused under a budget.
        priced::refuse_under_budget(request.body, request.anthropic, request.beta)?;
    }
    // The prompt is counted only when a token limit or a budget needs it.
    if plan.needs_estimate() {
        plan.charge(estimate(snapshot, &request).await);
    }
    take(state, ctx, snapshot, plan, "request refused by a limit").await
}

/// Takes what `plan` needs in one atomic admission; the answer's headers and the admission
/// go into `ctx`, a refusal is logged (`refused`) and becomes the request's error.
pub(super) async fn take(
    state: &Arc<State>,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    plan: plan::Plan,
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
                key_prefix = ctx.key_prefix.as_deref().unwrap_or("-"),
                limit = refusal.label(),
                "{refused}"
            );
            Err(refusal.to_api_error().into())
        }
    }
}

/// Reads the limits and budget state for the headers of a request that takes nothing.
async fn observe(
    state: &Arc<State>,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
) {
    let plan = plan::build(&snapshot.governance, key, None, None, chrono::Utc::now());
    if !plan.is_empty() {
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

/// The client's request id when it is sane (1-128 of `[A-Za-z0-9._:-]`), else the request's
/// own UUIDv7 (its usage event id).
fn request_id(client: Option<&str>, own: uuid::Uuid) -> String {
    match client {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => {
            let mut buffer = uuid::Uuid::encode_buffer();
            own.hyphenated().encode_lower(&mut buffer).to_owned()
        }
    }
}

/// A UUIDv7 from the clock and the thread-local RNG (`Uuid::now_v7` reads the OS RNG, one
/// `getrandom` syscall or two per request).
fn new_uuid_v7() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random::<[u8; 10]>()).into_uuid()
}

async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Failure> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!(
                "The request body is larger than the gateway's limit of {} MiB.",
                limit / (1024 * 1024)
            ),
        )
    };
    let declared = session
        .get_header("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        // Do not drain a huge body just to keep the connection.
        session.set_keepalive(None);
        return Err(too_large().into());
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buffer.len() + chunk.len() > limit {
                    session.set_keepalive(None);
                    return Err(too_large().into());
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buffer.freeze()),
            Err(_) => return Err(Failure::ClientGone),
        }
    }
}

async fn list_models(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
) -> Result<(), Failure> {
    let created = snapshot.generated_at_ms.max(0) / 1000;
    let data: Vec<serde_json::Value> = snapshot
        .models_for(key)
        .map(|alias| alias.model_object(created))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
        .unwrap_or_default();
    respond::json(session, ctx, 200, body).await
}

async fn get_model(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
    id: &str,
) -> Result<(), Failure> {
    let alias = snapshot
        .model(id)
        .ok_or_else(|| ApiError::model_not_found(id))?;
    if !key.may_use(&alias.alias) {
        return Err(ApiError::new(
            ErrorCode::ModelNotAllowed,
            format!("Your key may not use the model `{}`.", truncate(id, 128)),
        )
        .with_param("model")
        .into());
    }
    let created = snapshot.generated_at_ms.max(0) / 1000;
    let body = serde_json::to_vec(&alias.model_object(created)).unwrap_or_default();
    respond::json(session, ctx, 200, body).await
}

/// After the response: usage record (for authenticated model calls), metrics, access log.
pub(super) fn finish(state: &State, session: &Session, ctx: &mut RequestCtx) {
    let metrics = Metrics::global();
    let latency = ctx.started.elapsed();
    let status = if ctx.status == 0 { 499 } else { ctx.status };
    let endpoint = ctx.route.as_ref().map_or("unknown", Route::endpoint_name);
    let alias = ctx.alias.as_deref().unwrap_or("-");
    let provider = ctx.provider.map_or("-", |p| p.as_str());
    sanitize_usage(&mut ctx.usage, &ctx.request_id);
    let cost = ctx.pricing.charge(&ctx.usage.consumption());
    metrics
        .requests
        .with_label_values(&[endpoint, alias, provider, &status.to_string()])
        .inc();
    metrics
        .request_duration
        .with_label_values(&[endpoint, alias, provider])
        .observe(latency.as_secs_f64());
    if let Some(ttft) = ctx.ttft {
        metrics
            .ttft
            .with_label_values(&[alias, provider])
            .observe(ttft.as_secs_f64());
    }
    if ctx.usage.prompt_tokens > 0 {
        metrics
            .tokens
            .with_label_values(&[alias, provider, "prompt"])
            .inc_by(ctx.usage.prompt_tokens);
    }
    if ctx.usage.completion_tokens > 0 {
        metrics
            .tokens
            .with_label_values(&[alias, provider, "completion"])
            .inc_by(ctx.usage.completion_tokens);
    }
    if cost > 0 {
        metrics
            .cost
            .with_label_values(&[alias, provider])
            .inc_by(u64::try_from(cost).unwrap_or(0));
    }

    let metered = matches!(
        ctx.route,
        Some(
            Route::Chat
                | Route::Completions
                | Route::Embeddings
                | Route::ImagesGenerations
                | Route::Messages
        )
    ) && ctx.tenant_id.is_some();
    if metered {
        let event = UsageEvent {
            schema_version: USAGE_SCHEMA_VERSION,
            event_id: Some(ctx.event_id),
            request_id: ctx.request_id.clone(),
            started_at: ctx
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tenant_id: ctx.tenant_id,
            key_id: ctx.key_id,
            user_id: None,
            alias: ctx.alias.clone(),
            provider: ctx.provider.map(|p| p.as_str().to_owned()),
            deployment: ctx.deployment.clone(),
            endpoint: endpoint.to_owned(),
            status,
            error_code: ctx.error_code.map(str::to_owned),
            prompt_tokens: ctx.usage.prompt_tokens,
            completion_tokens: ctx.usage.completion_tokens,
            total_tokens: ctx
                .usage
                .prompt_tokens
                .saturating_add(ctx.usage.completion_tokens),
            cached_tokens: ctx.usage.cached_tokens,
            cache_write_tokens: ctx.usage.cache_write_tokens,
            images: ctx.usage.images,
            cost_micro_usd: cost,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            ttft_ms: ctx
                .ttft
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            stream: ctx.stream,
            usage_estimated: ctx.usage_estimated,
            idempotent_replay: ctx.idempotent_replay,
        };
        state.usage.record(&event);
    }

    let request = session.req_header();
    tracing::info!(
        target: "omg::access",
        request_id = %ctx.request_id,
        method = %request.method,
        path = %request.uri.path(),
        status,
        latency_ms = latency.as_millis() as u64,
        key_prefix = ctx.key_prefix.as_deref().unwrap_or("-"),
        tenant_id = %ctx.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        alias,
        provider,
        deployment = ctx.deployment.as_deref().unwrap_or("-"),
        attempts = ctx.attempts,
        stream = ctx.stream,
        prompt_tokens = ctx.usage.prompt_tokens,
        completion_tokens = ctx.usage.completion_tokens,
        images = ctx.usage.images,
        cost_micro_usd = cost,
        error_code = ctx.error_code.unwrap_or("-"),
        "request"
    );
    if let Some(admission) = ctx.admission.take() {
        // Settling may wait on Redis: after the response, still counted as in flight so a
        // graceful drain waits for it.
        let governor = state.governor.clone();
        let tokens = ctx
            .usage
            .prompt_tokens
            .saturating_add(ctx.usage.completion_tokens);
        let inflight = ctx.take_inflight();
        tokio::spawn(async move {
            governor.settle(admission, tokens, cost).await;
            drop(inflight);
        });
    }
}

/// Clamps each count of a provider's usage report to [`MAX_REPORTED_TOKENS`] (logged), so
/// nothing summed from it can wrap and a hostile or broken upstream cannot poison counters.
fn sanitize_usage(usage: &mut crate::providers::Usage, request_id: &str) {
    let mut clamped = false;
    for count in [
        &mut usage.prompt_tokens,
        &mut usage.completion_tokens,
        &mut usage.cached_tokens,
        &mut usage.cache_write_tokens,
        &mut usage.images,
    ] {
        if *count > MAX_REPORTED_TOKENS {
            *count = MAX_REPORTED_TOKENS;
            clamped = true;
        }
    }
    if clamped {
        tracing::warn!(
            request_id,
            limit = MAX_REPORTED_TOKENS,
            "the provider reported implausible usage; clamped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{new_uuid_v7, request_id, sanitize_usage, MAX_REPORTED_TOKENS};

    #[test]
    fn implausible_usage_is_clamped_and_sums_do_not_wrap() {
        let mut usage = crate::providers::Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            cached_tokens: 5,
            ..Default::default()
        };
        sanitize_usage(&mut usage, "r");
        assert_eq!(usage.prompt_tokens, MAX_REPORTED_TOKENS);
        assert_eq!(usage.completion_tokens, MAX_REPORTED_TOKENS);
        assert_eq!(usage.cached_tokens, 5);
        assert_eq!(
            usage.prompt_tokens.saturating_add(usage.completion_tokens),
            2 * MAX_REPORTED_TOKENS
        );
    }

    #[test]
    fn request_ids_are_honoured_only_when_sane() {
        let own = new_uuid_v7();
        assert_eq!(request_id(Some("abc-123_x.y:z"), own), "abc-123_x.y:z");
        for bad in [None, Some(""), Some("has space"), Some("new\nline")] {
            assert_eq!(request_id(bad, own), own.to_string(), "{bad:?}");
        }
        assert_eq!(request_id(Some(&"a".repeat(129)), own), own.to_string());
    }

    #[test]
    fn event_ids_are_uuid_v7_and_distinct() {
        let id = new_uuid_v7();
        assert_eq!(id.get_version_num(), 7, "{id}");
        assert_ne!(new_uuid_v7(), id);
    }
}
