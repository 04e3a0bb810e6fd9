//! `/healthz`, `/metrics`, `/admin/providers`.

use actix_web::{web, HttpResponse};
use omg_shared::provider::ProviderKind;

use crate::auth::Caller;
use crate::db;
use crate::state::AppState;

/// `GET /healthz`: Postgres and Redis status with latency. 503 when Postgres is down.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let postgres = match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        db::ping(&state.pool),
    )
    .await
    {
        Ok(Ok(latency)) => {
            serde_json::json!({ "status": "ok", "latency_ms": latency.as_secs_f64() * 1000.0 })
        }
        Ok(Err(e)) => serde_json::json!({ "status": "error", "error": e.to_string() }),
        Err(_) => serde_json::json!({ "status": "error", "error": "timed out after 2 s" }),
    };
    let redis = match &state.redis {
        None => serde_json::json!({ "status": "not_configured" }),
        Some(pool) => {
            match tokio::time::timeout(std::time::Duration::from_secs(2), ping_redis(pool)).await {
                Ok(Ok(latency)) => {
                    serde_json::json!({ "status": "ok", "latency_ms": latency.as_secs_f64() * 1000.0 })
                }
                Ok(Err(e)) => serde_json::json!({ "status": "error", "error": e }),
                Err(_) => serde_json::json!({ "status": "error", "error": "timed out after 2 s" }),
            }
        }
    };
    let pg_ok = postgres["status"] == "ok";
    let redis_ok = redis["status"] != "error";
    let status = if pg_ok && redis_ok {
        "ok"
    } else if pg_ok {
        "degraded"
    } else {
        "error"
    };
    let body = serde_json::json!({
        "status": status,
        "postgres": postgres,
        "redis": redis,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if pg_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn ping_redis(pool: &crate::state::RedisPool) -> Result<std::time::Duration, String> {
    let started = std::time::Instant::now();
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let _: String = bb8_redis::redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(started.elapsed())
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
    let data: Vec<_> = ProviderKind::ALL
        .iter()
        .map(|kind| {
            serde_json::json!({
                "kind": kind.as_str(),
                "supported": kind.is_supported(),
                "capabilities": kind.capabilities(),
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "data": data }))
}
