//! Batch lines: the control plane's batch worker sends each line of a batch to a data plane's
//! `/v1` listener as the batch's key. The control plane holds no key secrets (only their
//! hashes), so instead of a key the request carries a signed identity (`x-omg-identity`,
//! audience `dataplane`, see `omg_shared::cluster`) naming the key; once accepted, the
//! request runs exactly like one that presented that key (limits, budgets, allow-list,
//! idempotency, routing, usage), its usage record stamped with the batch id.
//!
//! What is checked, in order (every refusal counted in
//! `omg_batch_identity_refused_total{cause}`, the header never logged):
//! 1. cluster mode with `cluster.internal_secret` (else 401 `not_cluster`); no client
//!    credential beside the identity (400 `with_credentials`); a model route (401 `route`);
//! 2. the identity: HMAC signature, format, signed within `cluster.identity_window`, for this
//!    method, path and raw query, addressed to the data plane (401, the identity's cause);
//! 3. its nonce, claimed once in Redis (`SET NX PX`, the control plane's key family
//!    `<counter_prefix>:nonce:<nonce>`, shared by every data plane): a second use is 401
//!    `replayed`, and Redis not answering is 503 `replay_guard_unavailable` (fail closed);
//! 4. the key by id in the snapshot: known, usable ([`super::usable`]: the 401/403 a presented
//!    key would get) and of the identity's tenant (401 `tenant_mismatch`);
//! 5. once the body is read: its SHA-256 equals the signed one, which is required (401
//!    `wrong_body`), and it is not a stream (400 `stream`: batch lines are never streamed).

use std::sync::Arc;
use std::time::Duration;

use omg_shared::cluster::{body_matches, verify_identity, Identity, IdentityError, RequestLine};
use omg_shared::config::GatewayConfig;
use omg_shared::counters::CounterKeys;
use omg_shared::error::ErrorCode;
use omg_shared::secret::Secret;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::redis_script::ScriptConn;
use crate::snapshot::{KeyEntry, RuntimeSnapshot};

/// Shortest deadline of the nonce claim in Redis.
const CLAIM_MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Claims a nonce: `SET KEYS[1] 1 NX PX ARGV[1]`; 1 when this call set it, 0 when it existed.
const CLAIM_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
";

/// Why a batch line was refused. The messages are safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The data plane is standalone, or has no `cluster.internal_secret`.
    #[error(
        "This data plane does not accept the control plane's identity header (`x-omg-identity`): \
         batch lines need cluster mode with `cluster.internal_secret` set. Send an API key instead."
    )]
    NotCluster,
    /// An API key header came with the identity.
    #[error(
        "The request carries both an API key and the control plane's identity header \
         (`x-omg-identity`); send one of them."
    )]
    WithCredentials,
    /// The identity came on a route batch lines do not use.
    #[error(
        "The control plane's identity header (`x-omg-identity`) is accepted only on model \
         requests (chat completions, completions, embeddings, images, messages)."
    )]
    Route,
    /// The identity itself (signature, window, request, audience, body, nonce).
    #[error(
        "This data plane accepts an identity header only from its control plane's batch worker, \
         each once ({}: {}).", .0.cause(), .0
    )]
    Identity(IdentityError),
    /// Redis could not be asked whether the nonce was used.
    #[error(
        "The replay guard of batch lines needs Redis (`redis.url`), which did not answer: the \
         request was refused rather than accepted unguarded. Retry once Redis is back."
    )]
    GuardUnavailable(String),
    /// The named key is unknown.
    #[error(
        "The identity names an API key this gateway does not know (deleted, or not yet \
         published to this data plane)."
    )]
    UnknownKey,
    /// The named key may not be used (disabled, revoked, expired; its tenant suspended).
    #[error("{}", .0.message)]
    Key(ApiError),
    /// The key belongs to another tenant than the identity names.
    #[error("The identity's tenant is not the tenant of the API key it names.")]
    TenantMismatch,
    /// `"stream": true` in a batch line.
    #[error("Batch lines are never streamed: send the line without `\"stream\": true`.")]
    Stream,
}

impl Refusal {
    /// A short stable name of the cause (the metric label, the log field).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::NotCluster => "not_cluster",
            Self::WithCredentials => "with_credentials",
            Self::Route => "route",
            Self::Identity(error) => error.cause(),
            Self::GuardUnavailable(_) => "guard_unavailable",
            Self::UnknownKey | Self::Key(_) => "key",
            Self::TenantMismatch => "tenant_mismatch",
            Self::Stream => "stream",
        }
    }

    /// The error the caller gets.
    pub fn api_error(&self) -> ApiError {
        let code = match self {
            Self::WithCredentials | Self::Stream => ErrorCode::InvalidParameter,
            Self::GuardUnavailable(_) => ErrorCode::ReplayGuardUnavailable,
            Self::Key(error) => error.code,
            _ => ErrorCode::InvalidApiKey,
        };
        let error = ApiError::new(code, self.to_string());
        match self {
            Self::Stream => error.with_param("stream"),
            _ => error,
        }
    }

    /// Counts and logs the refusal (never the header), then the error for the caller.
    pub fn refused(self, request_id: &str) -> ApiError {
        let cause = self.cause();
        Metrics::global()
            .batch_identity_refused
            .with_label_values(&[cause])
            .inc();
        match &self {
            Self::GuardUnavailable(error) => tracing::error!(
                request_id, cause, %error,
                "batch line refused: the replay guard cannot reach Redis"
            ),
            _ => tracing::warn!(request_id, cause, reason = %self, "batch line refused"),
        }
        self.api_error()
    }
}

/// What a request looks like before its identity is checked.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The identity header's value (`None` when it is not text).
    pub header: Option<&'a str>,
    /// Method, path, raw query, and the data plane as audience.
    pub request: RequestLine<'a>,
    /// A client credential header (`authorization`, `api-key`, `x-api-key`) came too.
    pub with_credentials: bool,
    /// The route is a model request.
    pub model_route: bool,
}

/// The data plane's side of batch lines: the secret, the window and the replay guard.
pub struct BatchLines {
    secret: Secret,
    window: Duration,
    keys: CounterKeys,
    redis: ScriptConn,
}

impl BatchLines {
    /// Batch lines are accepted in cluster mode (`redis.url`) with `cluster.internal_secret`;
    /// `None` otherwise (an identity is then refused as `not_cluster`).
    pub fn from_config(config: &GatewayConfig) -> Result<Option<Self>, String> {
        let (Some(url), Some(secret)) = (&config.redis.url, &config.cluster.internal_secret) else {
            return Ok(None);
        };
        let timeout = config.rate_limits.redis_timeout.max(CLAIM_MIN_TIMEOUT);
        Ok(Some(Self {
            secret: secret.clone(),
            window: config.cluster.identity_window,
            keys: CounterKeys::new(&config.cluster.counter_prefix),
            redis: ScriptConn::new(url.expose(), timeout, "rate_limits.redis_timeout")?,
        }))
    }

    /// Steps 1–4 (see the module doc): the key the line runs as and its identity (whose body
    /// digest [`check_body`] compares once the body is read).
    pub async fn admit(
        lines: Option<&Self>,
        arrival: Arrival<'_>,
        snapshot: &RuntimeSnapshot,
        now_ms: i64,
    ) -> Result<(Arc<KeyEntry>, Identity), Refusal> {
        let Some(lines) = lines else {
            return Err(Refusal::NotCluster);
        };
        if arrival.with_credentials {
            return Err(Refusal::WithCredentials);
        }
        if !arrival.model_route {
            return Err(Refusal::Route);
        }
        let window = i64::try_from(lines.window.as_secs()).unwrap_or(i64::MAX);
        let now = now_ms.div_euclid(1000);
        let identity = verify_identity(
            lines.secret.expose().as_bytes(),
            arrival.header,
            arrival.request,
            now,
            window,
        )
        .map_err(Refusal::Identity)?;
        lines.claim(&identity, now, window).await?;
        let key = key_of(snapshot, &identity, now_ms)?;
        Ok((key, identity))
    }

    /// Claims the identity's nonce in Redis until its window ends (a second past it the
    /// time check refuses it anyway).
    async fn claim(&self, identity: &Identity, now: i64, window: i64) -> Result<(), Refusal> {
        let expires = identity.issued_at.saturating_add(window);
        let ttl_ms = expires
            .saturating_sub(now)
            .saturating_add(1)
            .clamp(1, i64::MAX / 1000)
            * 1000;
        let key = self.keys.identity_nonce(&identity.nonce);
        let script = redis::Script::new(CLAIM_SCRIPT);
        let mut invocation = script.key(&key);
        invocation.arg(ttl_ms);
        match self.redis.run::<i64>(invocation).await {
            Ok(1) => Ok(()),
            Ok(_) => Err(Refusal::Identity(IdentityError::Replayed)),
            Err(error) => Err(Refusal::GuardUnavailable(error)),
        }
    }
}

/// The key an identity names: known, usable now, of the identity's tenant.
fn key_of(
    snapshot: &RuntimeSnapshot,
    identity: &Identity,
    now_ms: i64,
) -> Result<Arc<KeyEntry>, Refusal> {
    let entry = snapshot
        .key_by_id(identity.key_id)
        .ok_or(Refusal::UnknownKey)?;
    if entry.key.tenant_id != identity.tenant_id {
        return Err(Refusal::TenantMismatch);
    }
    super::usable(entry, now_ms).map_err(Refusal::Key)?;
    Ok(entry.clone())
}

/// Step 5: the body is the one signed (a digest is required).
pub fn check_body(identity: &Identity, body: &[u8]) -> Result<(), Refusal> {
    body_matches(identity, body, true).map_err(Refusal::Identity)
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
