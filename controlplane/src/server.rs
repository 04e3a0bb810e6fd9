//! Assembles the actix application: request ids, access log and metrics middleware, routes.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpServer};
use uuid::Uuid;

use crate::api;
use crate::auth::RequestId;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's request id is kept when it is short and printable; otherwise a UUIDv7.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string())
}

async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let mut res = next.call(req).await?;
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(state) = state {
        state.metrics.observe(&route, &method, status, elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        request_id = %id, method = %method, path = %path, route = %route, status,
        latency_ms = elapsed * 1000.0, "request"
    );
    Ok(res)
}

/// Builds the HTTP server on an already bound listener (not yet running).
pub fn build(
    state: web::Data<AppState>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(observe))
            .configure(api::configure)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(api::error::ApiError::not_found("route"))
            }))
    })
    .workers(workers.max(1))
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}
