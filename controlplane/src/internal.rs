//! The internal listener (`cluster.internal_listen_addr`): data planes forward `/v1/files*`
//! and `/v1/batches*` here after authenticating the caller's key. Every request must carry
//! a valid signed identity (`x-omg-identity`, format v2: HMAC-SHA256 with
//! `cluster.internal_secret`, bound to method, path and raw query string, within
//! `cluster.identity_window`) whose single-use nonce has not been used: the nonce is claimed
//! in Redis with `SET NX`, so a request accepted by one control-plane replica is refused by
//! every other (`replayed`). Anything else is refused with 401 before a handler runs, naming
//! the cause (an `outdated_format` identity comes from a data plane older than this control
//! plane); when Redis cannot be asked the request is refused with 503 (fail closed). The body
//! is not signed (it is streamed): its integrity rests on the transport (`docs/cluster.md`).
//!
//! It serves OpenAI's files API (`/v1/files*`, [`crate::files::http`]) and the channel's
//! probe, `/v1/files/_identity` and `/v1/batches/_identity` (any method): it streams the body
//! through and answers with the verified identity, the byte count and the SHA-256 of what
//! arrived — what an operator uses to check a data plane → control plane path.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use omg_shared::cluster::{
    verify_identity, Audience, Identity, IdentityError, RequestLine, IDENTITY_HEADER,
};
use omg_shared::counters::CounterKeys;
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// Nonces this process has seen accepted, remembered until their identity expires: a replay
/// to the same replica is refused without a Redis round trip. Redis is the authority
/// ([`crate::cluster::nonces::claim_once`]); this only saves work.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Whether `nonce` was recorded and has not expired at `now`.
    fn seen(&self, nonce: &str, now: i64) -> bool {
        self.seen
            .lock()
            .is_ok_and(|seen| seen.get(nonce).is_some_and(|until| *until >= now))
    }

    /// Records `nonce` until `expires`; forgets expired entries once the map grows.
    fn record(&self, nonce: &str, now: i64, expires: i64) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 10_000 {
                seen.retain(|_, until| *until >= now);
            }
            seen.insert(nonce.to_owned(), expires);
        }
    }
}

/// Why a request was refused before any handler ran.
enum Refusal {
    /// No valid, unused identity: 401.
    Identity(IdentityError),
    /// The replay guard could not ask Redis: 503 (fail closed).
    GuardUnavailable(String),
}

fn error(status: u16, code: ErrorCode, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED),
    )
    .content_type("application/json")
    .body(OpenAiErrorBody::new(code, message, None).to_json())
}

impl Refusal {
    fn response(&self) -> HttpResponse {
        match self {
            Refusal::Identity(reason) => error(
                401,
                ErrorCode::InvalidApiKey,
                &format!(
                    "This listener only accepts requests forwarded by a gateway data plane, each \
                     once ({}: {reason}).",
                    reason.cause()
                ),
            ),
            Refusal::GuardUnavailable(_) => {
                let mut body = OpenAiErrorBody::new(
                    ErrorCode::LimitsUnavailable,
                    "The internal channel's replay guard needs Redis (`redis.url`), which is \
                     unreachable: the request was refused rather than accepted unguarded. Retry \
                     once Redis is back.",
                    None,
                );
                body.error.code = Some("replay_guard_unavailable".to_owned());
                HttpResponse::ServiceUnavailable()
                    .content_type("application/json")
                    .body(body.to_json())
            }
        }
    }
}

/// The verified identity of `req`, its nonce claimed: first this process's memory, then
/// Redis (`SET NX`, shared by every replica), which decides.
async fn admit(
    state: &AppState,
    guard: &ReplayGuard,
    req: &ServiceRequest,
) -> Result<Identity, Refusal> {
    let cluster = &state.config.cluster;
    let secret = cluster
        .internal_secret
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec())
        .unwrap_or_default();
    let header = req
        .headers()
        .get(IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    let window = i64::try_from(cluster.identity_window.as_secs()).unwrap_or(60);
    let request = RequestLine {
        method: req.method().as_str(),
        path: req.path(),
        query: req.query_string(),
        audience: Audience::Controlplane,
    };
    let identity =
        verify_identity(&secret, header, request, now, window).map_err(Refusal::Identity)?;
    if guard.seen(&identity.nonce, now) {
        return Err(Refusal::Identity(IdentityError::Replayed));
    }
    let Some(redis) = &state.redis else {
        return Err(Refusal::GuardUnavailable("redis.url is not set".to_owned()));
    };
    // Valid until `issued_at + window`; a second past it the time check refuses it anyway.
    let expires = identity.issued_at.saturating_add(window);
    let ttl = u64::try_from(expires.saturating_sub(now).saturating_add(1)).unwrap_or(1);
    let key = CounterKeys::new(&cluster.counter_prefix).identity_nonce(&identity.nonce);
    match crate::cluster::nonces::claim_once(redis, &key, Duration::from_secs(ttl)).await {
        Ok(true) => {
            guard.record(&identity.nonce, now, expires);
            Ok(identity)
        }
        Ok(false) => {
            guard.record(&identity.nonce, now, expires);
            Err(Refusal::Identity(IdentityError::Replayed))
        }
        Err(message) => Err(Refusal::GuardUnavailable(message)),
    }
}

async fn verify(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (Some(state), Some(guard)) = (
        req.app_data::<web::Data<AppState>>().cloned(),
        req.app_data::<web::Data<ReplayGuard>>().cloned(),
    ) else {
        return Ok(req.into_response(error(500, ErrorCode::InternalError, "misconfigured")));
    };
    match admit(&state, &guard, &req).await {
        Ok(identity) => {
            req.extensions_mut().insert(identity);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(refusal) => {
            state.metrics.internal_refused();
            match &refusal {
                Refusal::Identity(reason) => tracing::warn!(
                    path = %req.path(),
                    method = %req.method(),
                    peer = ?req.peer_addr(),
                    cause = reason.cause(),
                    %reason,
                    "internal channel refused a request (no valid, unused data plane identity)"
                ),
                Refusal::GuardUnavailable(message) => tracing::error!(
                    path = %req.path(),
                    method = %req.method(),
                    error = %message,
                    "internal channel refused a request: the replay guard cannot reach Redis"
                ),
            }
            Ok(req.into_response(refusal.response()))
        }
    }
}

/// The channel probe: the verified identity and what arrived of the body.
async fn identity_probe(req: HttpRequest, mut body: web::Payload) -> HttpResponse {
    let Some(identity) = req.extensions().get::<Identity>().cloned() else {
        return error(500, ErrorCode::InternalError, "identity missing");
    };
    let mut hasher = Sha256::new();
    let mut bytes: u64 = 0;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                bytes += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Err(e) => {
                return error(
                    400,
                    ErrorCode::InvalidParameter,
                    &format!("the request body could not be read: {e}"),
                )
            }
        }
    }
    let credentials_arrived = ["authorization", "api-key", "x-api-key"]
        .iter()
        .any(|name| req.headers().contains_key(*name));
    tracing::info!(request_id = %identity.request_id, tenant = %identity.tenant_id, bytes, "internal channel probe");
    HttpResponse::Ok().json(serde_json::json!({
        "object": "gateway.identity",
        "tenant_id": identity.tenant_id,
        "key_id": identity.key_id,
        "request_id": identity.request_id,
        "method": identity.method,
        "path": identity.path,
        "query": identity.query,
        "body_bytes": bytes,
        "body_sha256": hex::encode(hasher.finalize()),
        "client_credentials_received": credentials_arrived,
    }))
}

async fn not_available(req: HttpRequest) -> HttpResponse {
    error(
        404,
        ErrorCode::UnknownUrl,
        &format!(
            "{} {} is not available in this release of the gateway.",
            req.method(),
            req.path()
        ),
    )
}

/// Builds the internal server on a bound listener (not yet running).
pub fn build(
    state: web::Data<AppState>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let guard = web::Data::new(ReplayGuard::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(guard.clone())
            .wrap(from_fn(verify))
            .route("/v1/files/_identity", web::to(identity_probe))
            .route("/v1/batches/_identity", web::to(identity_probe))
            .configure(crate::files::http::routes)
            .configure(crate::batches::http::routes)
            .default_service(web::to(not_available))
    })
    .workers(workers.max(1))
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::ReplayGuard;

    #[test]
    fn the_local_guard_remembers_a_nonce_until_its_identity_expires() {
        let guard = ReplayGuard::default();
        assert!(!guard.seen("n1", 100));
        guard.record("n1", 100, 160);
        assert!(guard.seen("n1", 120));
        assert!(guard.seen("n1", 160));
        assert!(!guard.seen("n2", 120));
        // Past its window the identity is refused by the time check anyway.
        assert!(!guard.seen("n1", 161));
    }
}
