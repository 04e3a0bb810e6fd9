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
mod local;
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
use crate::flow::order::none_left;
use crate::flow::outcome::{AttemptError, Fault, Retryable, Served};
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

/// Tries the plan's deployments in order until one answers the client, or none is left.
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
        if made > 1 {
            metrics.failovers.with_label_values(&[call.alias]).inc();
        }
        ctx.attempting(deployment);
        let attempt = attempt::attempt(state, session, ctx, deployment, plan.timeouts, call).await;
        let report = Report {
            alias: call.alias,
            deployment,
            health: plan.health,
            verdicts,
        };
        match attempt {
            Ok(served) => {
                report.served(permit, served);
                return Ok(());
            }
            Err(AttemptError::Final(failure)) => {
                report.abandoned(permit);
                return Err(failure);
            }
            Err(AttemptError::Retryable(failed)) => {
                report.failed(permit, &failed, ctx);
                last_error = Some(failed.error);
            }
        }
    }
    Err(last_error.unwrap_or_else(none_left).into())
}

/// Where an attempt's outcome is reported: the deployment's breaker and the metrics.
struct Report<'a> {
    alias: &'a str,
    deployment: &'a DeploymentEntry,
    health: &'a HealthPolicy,
    verdicts: bool,
}

impl Report<'_> {
    fn attempts(&self, label: &str) {
        Metrics::global()
            .upstream_attempts
            .with_label_values(&[self.alias, &self.deployment.deployment.id, label])
            .inc();
    }

    /// The client got its answer (or a stream that broke after its first byte).
    fn served(&self, permit: Permit, served: Served) {
        self.attempts(served.label());
        verdict(permit, served.breaker_outcome(), self.health, self.verdicts);
    }

    /// No verdict on the deployment (the client left, or the gateway failed).
    fn abandoned(&self, permit: Permit) {
        drop(permit);
        self.attempts("abandoned");
    }

    /// The deployment failed; the next may be tried.
    fn failed(&self, permit: Permit, failed: &Retryable, ctx: &RequestCtx) {
        match failed.breaker_outcome() {
            Some(outcome) => verdict(permit, outcome, self.health, self.verdicts),
            None => drop(permit),
        }
        let kind = failed.fault.label();
        let target = &self.deployment.deployment;
        Metrics::global()
            .upstream_errors
            .with_label_values(&[target.provider.as_str(), kind])
            .inc();
        self.attempts(kind);
        tracing::warn!(
            request_id = %ctx.request_id,
            deployment = %target.id,
            attempt = ctx.attempts,
            kind,
            error = %failed.error.message,
            "upstream attempt failed"
        );
    }
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
    AttemptError::retry(
        Fault::Timeout,
        ApiError::new(
            ErrorCode::UpstreamTimeout,
            format!("The upstream for `{}` did not answer in time.", target.id),
        ),
    )
}

fn protocol(message: String) -> AttemptError {
    AttemptError::retry(
        Fault::Protocol,
        ApiError::new(ErrorCode::UpstreamError, message),
    )
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
