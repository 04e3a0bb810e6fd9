//! The internal listener (`cluster.internal_listen_addr`): data planes forward `/v1/files*`
//! and `/v1/batches*` here after authenticating the caller's key. Every request must carry
//! a valid signed identity (`x-omg-identity`, HMAC-SHA256 with `cluster.internal_secret`,
//! bound to method and path, within `cluster.identity_window`) and each signature is accepted
//! once; anything else is refused with 401 before a handler runs.
//!
//! The files and batches endpoints themselves come later; today the listener serves the
//! channel's probe, `/v1/files/_identity` and `/v1/batches/_identity` (any method): it streams
//! the body through and answers with the verified identity, the byte count and the SHA-256 of
//! what arrived — what an operator uses to check a data plane → control plane path.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Mutex;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use omg_shared::cluster::{verify_identity, Identity, IDENTITY_HEADER};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// Signatures seen within the window, each accepted once.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Records `signature`; false when it was already used. Forgets entries past `expires`.
    fn first_use(&self, signature: &str, now: i64, expires: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() > 10_000 {
            seen.retain(|_, until| *until >= now);
        }
        match seen.get(signature) {
            Some(until) if *until >= now => false,
            _ => {
                seen.insert(signature.to_owned(), expires);
                true
            }
        }
    }
}

fn error(status: u16, code: ErrorCode, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED),
    )
    .content_type("application/json")
    .body(OpenAiErrorBody::new(code, message, None).to_json())
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
    let cluster = &state.config.cluster;
    let secret = cluster
        .internal_secret
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec())
        .unwrap_or_default();
    let header = req
        .headers()
        .get(IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = chrono::Utc::now().timestamp();
    let window = i64::try_from(cluster.identity_window.as_secs()).unwrap_or(60);
    let verified = verify_identity(
        &secret,
        header.as_deref(),
        req.method().as_str(),
        req.path(),
        now,
        window,
    )
    .and_then(|identity| {
        let signature = header
            .as_deref()
            .and_then(|h| h.rsplit_once('.'))
            .map_or("", |(_, sig)| sig);
        if guard.first_use(signature, now, identity.issued_at + window) {
            Ok(identity)
        } else {
            Err(omg_shared::cluster::IdentityError::Expired)
        }
    });
    match verified {
        Ok(identity) => {
            req.extensions_mut().insert(identity);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(reason) => {
            state.metrics.internal_refused();
            tracing::warn!(
                path = %req.path(),
                method = %req.method(),
                peer = ?req.peer_addr(),
                %reason,
                "internal channel refused a request (no valid data plane identity)"
            );
            Ok(req.into_response(error(
                401,
                ErrorCode::InvalidApiKey,
                &format!(
                    "This listener only accepts requests forwarded by a gateway data plane ({reason})."
                ),
            )))
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
            "{} {} is not available in this release of the gateway (files and batches come in a later release).",
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
    fn a_signature_is_accepted_once_within_its_window() {
        let guard = ReplayGuard::default();
        assert!(guard.first_use("sig", 100, 160));
        assert!(!guard.first_use("sig", 120, 160));
        assert!(guard.first_use("other", 120, 180));
        // Past its window the signature is refused by the time check anyway; the guard
        // forgets it.
        assert!(guard.first_use("sig", 161, 221));
    }
}
