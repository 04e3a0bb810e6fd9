//! `/admin/tenants/{tenant_id}/api-keys*`.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::auth::{AdminUp, TenantAccess, ViewerUp};
use crate::service::keys::{self, KeyPatch, NewKey};
use crate::state::AppState;

/// `GET …/api-keys`.
pub async fn list(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
) -> ApiResult<HttpResponse> {
    let data = keys::list(&state, &access.tenant).await?;
    Ok(HttpResponse::Ok().json(crate::api::views::KeyList { data }))
}

/// `POST …/api-keys`: the answer's `key` is the only time the secret is shown.
pub async fn issue(
    state: web::Data<AppState>,
    access: TenantAccess<AdminUp>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: NewKey = crate::api::json(&body)?;
    let issued = keys::issue(&state, &access.caller, &access.tenant, body).await?;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(issued))
}

/// `GET …/api-keys/{key_id}`.
pub async fn get(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let view = keys::get(&state, &access.tenant, path.1).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `PATCH …/api-keys/{key_id}`.
pub async fn update(
    state: web::Data<AppState>,
    access: TenantAccess<AdminUp>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: KeyPatch = crate::api::json(&body)?;
    let view = keys::update(&state, &access.caller, &access.tenant, path.1, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE …/api-keys/{key_id}`: revokes.
pub async fn revoke(
    state: web::Data<AppState>,
    access: TenantAccess<AdminUp>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let view = keys::revoke(&state, &access.caller, &access.tenant, path.1).await?;
    Ok(HttpResponse::Ok().json(view))
}
