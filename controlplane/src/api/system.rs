//! `/healthz`, `/metrics`, `/admin/providers`, `/admin/openapi.json`.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use omg_shared::provider::ProviderKind;

use crate::api::views::{ComponentHealth, HealthView, ProviderInfo, ProvidersView};
use crate::auth::Caller;
use crate::cluster;
use crate::db;
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What `/healthz` (public) says instead of an error's text, which is logged where it occurs.
const LOGGED: &str = "failing; the control plane log has the cause";

fn probed(
    component: &str,
    result: Result<Result<Duration, String>, tokio::time::error::Elapsed>,
) -> ComponentHealth {
    match result {
        Ok(Ok(latency)) => ComponentHealth {
            status: "ok".to_owned(),
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
            error: None,
        },
        Ok(Err(error)) => {
            // The endpoint is public: the cause goes to the log, not to the answer.
            tracing::warn!(component, %error, "health probe failed");
            ComponentHealth {
                status: "error".to_owned(),
                latency_ms: None,
                error: Some(LOGGED.to_owned()),
            }
        }
        Err(_) => ComponentHealth {
            status: "error".to_owned(),
            latency_ms: None,
            error: Some(format!("timed out after {} s", PROBE_TIMEOUT.as_secs())),
        },
    }
}

/// `GET /healthz`: Postgres and Redis status with latency. 503 when Postgres is down. Public,
/// so it carries no error text (addresses, database names, driver messages): only states.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let postgres = probed(
        "postgres",
        tokio::time::timeout(PROBE_TIMEOUT, async {
            db::ping(&state.pool).await.map_err(|e| e.to_string())
        })
        .await,
    );
    let redis = match &state.redis {
        None => ComponentHealth {
            status: "not_configured".to_owned(),
            latency_ms: None,
            error: None,
        },
        Some(pool) => probed(
            "redis",
            tokio::time::timeout(PROBE_TIMEOUT, cluster::ping(pool)).await,
        ),
    };
    let pg_ok = postgres.status == "ok";
    let redis_ok = redis.status != "error";
    let status = match (pg_ok, redis_ok) {
        (true, true) => "ok",
        (true, false) => "degraded",
        _ => "error",
    };
    let body = HealthView {
        status: status.to_owned(),
        postgres,
        redis,
        snapshots: state.redis.as_ref().map(|_| {
            let mut status = state.publisher.status();
            status.last_error = status.last_error.map(|_| LOGGED.to_owned());
            status
        }),
        usage: state.redis.as_ref().map(|_| {
            let mut health = state.usage_ingest.health();
            health.last_error = health.last_error.map(|_| LOGGED.to_owned());
            health
        }),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    if pg_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.state();
    state
        .metrics
        .set_pool(pool.connections, pool.idle_connections);
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(e) => {
            actix_web::ResponseError::error_response(&crate::api::error::ApiError::internal(e))
        }
    }
}

/// `GET /admin/providers`: provider kinds, whether this build serves them, capabilities.
pub async fn providers(_caller: Caller) -> HttpResponse {
    let data = ProviderKind::ALL
        .iter()
        .map(|kind| ProviderInfo {
            kind: kind.as_str().to_owned(),
            supported: kind.is_supported(),
            capabilities: kind
                .capabilities()
                .iter()
                .filter_map(|op| serde_json::to_value(op).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        })
        .collect();
    HttpResponse::Ok().json(ProvidersView { data })
}

/// `GET /admin/openapi.json`: the admin API's OpenAPI 3.1 document, built from the route
/// table.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::api::openapi::document())
}
