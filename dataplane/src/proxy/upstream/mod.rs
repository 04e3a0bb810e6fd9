//! The in-process exchange with upstream providers, whatever their format: the deployment's
//! [`ProviderAdapter`](crate::providers::ProviderAdapter) builds each request and translates
//! what comes back; this module moves the bytes.
//!
//! The body is read and checked before any upstream is contacted, so every attempt can
//! replay it, whatever its size. Connect errors, timeouts, 5xx, 429, 401/403 and broken
//! answers before the response starts move on to the next deployment; once the client has
//! received bytes, a failure ends the stream with an in-band OpenAI error event (never a
//! clean-looking end).

mod attempt;
mod head;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use omg_shared::error::ErrorCode;
use omg_shared::routing::HealthPolicy;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::ctx::RequestCtx;
use super::{Failure, State, Timeouts};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::providers::Call;
use crate::request::Route;
use crate::routing::{Outcome, Permit};
use crate::snapshot::DeploymentEntry;

/// Largest non-streamed upstream body accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The `user-agent` sent upstream.
pub(super) const USER_AGENT: &str = concat!("open-model-gateway/", env!("CARGO_PKG_VERSION"));

/// Why one attempt did not produce a response for the client.
enum AttemptError {
    /// Worth trying the next deployment.
    Retryable { error: ApiError, kind: &'static str },
    /// Final (a client error from the upstream, or the client left).
    Final(Failure),
}

/// What the attempts of one request run under.
pub(super) struct Plan<'a> {
    /// Deployments in the order to try them.
    pub order: &'a [Arc<DeploymentEntry>],
    /// Attempts allowed (≥ 1).
    pub max_attempts: u32,
    /// The alias's timeouts.
    pub timeouts: Timeouts,
    /// Breaker policy.
    pub health: &'a HealthPolicy,
}

/// Error codes of a stream that ended broken after its first byte: the deployment failed.
const BROKEN_STREAM: [&str; 4] = [
    "stream_idle_timeout",
    "stream_interrupted",
    "upstream_protocol",
    "upstream_stream_error",
];

pub(super) async fn exchange(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &Plan<'_>,
    call: &Call<'_>,
) -> Result<(), Failure> {
    let metrics = Metrics::global();
    let mut last_error: Option<ApiError> = None;
    let mut made = 0;
    let verdicts = gives_verdicts(call);
    for deployment in plan.order {
        if made >= plan.max_attempts {
            break;
        }
        // Another request may have tripped it, or taken its probe, since the order was made.
        let Some(permit) = take_permit(deployment, verdicts) else {
            continue;
        };
        made += 1;
        let alias = call.alias;
        if made > 1 {
            metrics.failovers.with_label_values(&[alias]).inc();
        }
        ctx.attempts += 1;
        ctx.provider = Some(deployment.deployment.provider);
        ctx.deployment = Some(deployment.deployment.id.clone());
        ctx.pricing = deployment.deployment.pricing;
        let id = deployment.deployment.id.as_str();
        match attempt::attempt(state, session, ctx, deployment, plan.timeouts, call).await {
            Ok(()) => {
                let outcome = match ctx.error_code.filter(|code| BROKEN_STREAM.contains(code)) {
                    Some(code) => Outcome::Failure(code),
                    None => Outcome::Success,
                };
                let label = match outcome {
                    Outcome::Failure(code) => code,
                    _ => "ok",
                };
                metrics
                    .upstream_attempts
                    .with_label_values(&[alias, id, label])
                    .inc();
                verdict(permit, outcome, plan.health, verdicts);
                return Ok(());
            }
            Err(AttemptError::Final(failure)) => {
                // No verdict on the deployment (the client left, or the gateway failed).
                metrics
                    .upstream_attempts
                    .with_label_values(&[alias, id, "abandoned"])
                    .inc();
                return Err(failure);
            }
            Err(AttemptError::Retryable { error, kind }) => {
                let outcome = if kind == "status_429" {
                    Outcome::RateLimited(error.retry_after.map(|s| s.saturating_mul(1000)))
                } else {
                    Outcome::Failure(kind)
                };
                if kind == "credentials" {
                    // Nothing was sent (a credential minted in the background is not there
                    // yet): no verdict on the upstream, so a slow start trips no breaker.
                    drop(permit);
                } else {
                    verdict(permit, outcome, plan.health, verdicts);
                }
                metrics
                    .upstream_errors
                    .with_label_values(&[deployment.deployment.provider.as_str(), kind])
                    .inc();
                metrics
                    .upstream_attempts
                    .with_label_values(&[alias, id, kind])
                    .inc();
                tracing::warn!(
                    request_id = %ctx.request_id,
                    deployment = %deployment.deployment.id,
                    attempt = ctx.attempts,
                    kind,
                    error = %error.message,
                    "upstream attempt failed"
                );
                last_error = Some(error);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| {
            // Every candidate went to rest between routing and now.
            let mut error = ApiError::new(
                ErrorCode::NoHealthyUpstream,
                "Every deployment of the model is failing and resting; retry later.",
            );
            error.retry_after = Some(1);
            error
        })
        .into())
}

/// Whether the call's outcomes count for the deployments' breakers. Token counts do not:
/// a provider's count endpoint has its own limits and failures, and a key flooding it
/// must not rest a deployment for the Messages and chat traffic of every tenant.
fn gives_verdicts(call: &Call<'_>) -> bool {
    !matches!(call.route, Route::CountTokens)
}

/// The right to try `deployment`. Without verdicts, only a deployment taking normal
/// traffic is used: never as the half-open probe (dropping that permit gives it back).
fn take_permit(deployment: &DeploymentEntry, verdicts: bool) -> Option<Permit> {
    let permit = deployment.health.acquire()?;
    (verdicts || !permit.is_probe()).then_some(permit)
}

/// Reports an attempt's outcome to the breaker, unless the call gives no verdicts (then the
/// permit is only released).
fn verdict(permit: Permit, outcome: Outcome, policy: &HealthPolicy, verdicts: bool) {
    if verdicts {
        permit.finish(outcome, policy);
    }
}

/// Returns a connection whose exchange ended cleanly to the pool, unless
/// `server.upstream_idle_connections` is 0 (Pingora's pool would still keep it).
async fn release(state: &State, upstream: HttpSession, peer: &HttpPeer) {
    if state.settings.upstream_idle_connections > 0 {
        state
            .connector
            .release_http_session(upstream, peer, Some(POOL_IDLE))
            .await;
    }
}

fn is_timeout(error: &pingora::Error) -> bool {
    matches!(
        error.etype(),
        pingora::ErrorType::ReadTimedout
            | pingora::ErrorType::WriteTimedout
            | pingora::ErrorType::ConnectTimedout
    )
}

fn timeout(target: &omg_shared::snapshot::Deployment) -> AttemptError {
    AttemptError::Retryable {
        error: ApiError::new(
            ErrorCode::UpstreamTimeout,
            format!("The upstream for `{}` did not answer in time.", target.id),
        ),
        kind: "timeout",
    }
}

fn protocol(message: String) -> AttemptError {
    AttemptError::Retryable {
        error: ApiError::new(ErrorCode::UpstreamError, message),
        kind: "protocol",
    }
}

fn internal() -> AttemptError {
    AttemptError::Final(
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
        .into(),
    )
}
