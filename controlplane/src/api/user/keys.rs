//! `/user/tenants/{tenant_id}/api-keys*`: thin handlers over `service::portal::keys`.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::auth::{AnyRole, UserTenant};
use crate::service::keys::NewKey;
use crate::service::portal::keys;
use crate::state::AppState;

/// `GET …/api-keys`.
pub async fn list(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
) -> ApiResult<HttpResponse> {
    let data = keys::list(&state, &access.caller, &access.scope).await?;
    Ok(HttpResponse::Ok().json(crate::api::views::KeyList { data }))
}

/// `POST …/api-keys`: the answer's `key` is the only time the secret is shown.
pub async fn issue(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: NewKey = crate::api::json(&body)?;
    let issued = keys::issue(&state, &access.caller, &access.scope, body).await?;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(issued))
}

/// `GET …/api-keys/{key_id}`.
pub async fn get(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let view = keys::get(&state, &access.caller, &access.scope, path.1).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE …/api-keys/{key_id}`: revokes.
pub async fn revoke(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let view = keys::revoke(&state, &access.caller, &access.scope, path.1).await?;
    Ok(HttpResponse::Ok().json(view))
}
