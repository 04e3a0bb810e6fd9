//! `/v1/batches*` on the internal listener: data planes forward them with the caller's
//! verified identity (the `verify` middleware of `internal.rs` put it in the request's
//! extensions). Thin: the identity becomes a [`BatchOwner`], the work is in `service.rs`;
//! errors are OpenAI-shaped.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use omg_shared::cluster::Identity;

use super::object::BatchObject;
use super::service::{self, BatchOwner, ListQuery, NewBatch};
use super::BatchError;
use crate::service::audit::Actor;
use crate::state::AppState;

/// Registers the routes (called from `internal::build`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/batches", web::post().to(create))
        .route("/v1/batches", web::get().to(list))
        .route("/v1/batches/{batch_id}", web::get().to(get))
        .route("/v1/batches/{batch_id}/cancel", web::post().to(cancel));
}

fn failure(error: &BatchError) -> HttpResponse {
    let (status, body) = error.answer();
    if status >= 500 {
        tracing::error!(%error, "batch request failed");
    }
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type("application/json")
    .body(body.to_json())
}

fn identity(req: &HttpRequest) -> Result<Identity, BatchError> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| BatchError::Unavailable("identity missing".to_owned()))
}

fn owner(identity: &Identity) -> BatchOwner {
    BatchOwner {
        tenant_id: identity.tenant_id,
        key_id: identity.key_id,
        user_id: identity.user_id,
    }
}

fn answer(result: Result<HttpResponse, BatchError>) -> HttpResponse {
    result.unwrap_or_else(|error| failure(&error))
}

/// `POST /v1/batches`.
async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    answer(
        async {
            let identity = identity(&req)?;
            let request: NewBatch =
                serde_json::from_slice(&body).map_err(|e| BatchError::Invalid {
                    param: None,
                    message: format!("The body must be a JSON object of a batch request: {e}."),
                })?;
            let batch = service::create(&state, &owner(&identity), request).await?;
            Ok(HttpResponse::Ok().json(BatchObject::from(&batch)))
        }
        .await,
    )
}

/// `GET /v1/batches?after=&limit=`.
async fn list(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    answer(
        async {
            let identity = identity(&req)?;
            let query = web::Query::<ListQuery>::from_query(req.query_string())
                .map_err(|e| BatchError::Invalid {
                    param: None,
                    message: format!("Invalid query string: {e}."),
                })?
                .into_inner();
            let page = service::list(&state, identity.tenant_id, &query, None).await?;
            Ok(HttpResponse::Ok().json(page))
        }
        .await,
    )
}

/// `GET /v1/batches/{batch_id}`.
async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    answer(
        async {
            let identity = identity(&req)?;
            let batch = service::get(&state, identity.tenant_id, &path).await?;
            Ok(HttpResponse::Ok().json(BatchObject::from(&batch)))
        }
        .await,
    )
}

/// `POST /v1/batches/{batch_id}/cancel`: audited as the key (`api_key:<id>`).
async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    answer(
        async {
            let identity = identity(&req)?;
            let email = format!("api_key:{}", identity.key_id);
            let actor = Actor::System {
                email: &email,
                user_id: identity.user_id,
                request_id: &identity.request_id,
                ip: None,
            };
            let batch = service::cancel(&state, identity.tenant_id, &path, actor).await?;
            Ok(HttpResponse::Ok().json(BatchObject::from(&batch)))
        }
        .await,
    )
}
