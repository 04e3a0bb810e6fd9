//! `/user/auth/*`, `/user/profile*`, `/user/tenants`: thin handlers over `api::auth` (the
//! admin portal's session handlers, with the user portal's realm and cookie path) and
//! `service::portal`.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::auth::{self as admin_auth, USER};
use crate::api::error::ApiResult;
use crate::auth::{AnyRole, Caller, UserTenant};
use crate::service::portal::{self, profile, MyTenantView};
use crate::state::AppState;

use super::MyTenantList;

/// `GET /user/auth/methods`.
pub async fn methods(state: web::Data<AppState>) -> HttpResponse {
    admin_auth::methods(state).await
}

/// `POST /user/auth/login`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    admin_auth::login_in(USER, &state, &req, &body).await
}

/// `POST /user/auth/refresh`.
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    admin_auth::refresh_in(USER, &state, &req).await
}

/// `POST /user/auth/logout`.
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    admin_auth::logout_in(USER, &state, &req).await
}

/// `GET /user/profile`.
pub async fn profile(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(profile::get(&state, &caller).await?))
}

/// `PATCH /user/profile`.
pub async fn update_profile(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: profile::ProfilePatch = crate::api::json(&body)?;
    Ok(HttpResponse::Ok().json(profile::update(&state, &caller, body).await?))
}

/// `POST /user/profile/password`: 204; the caller's session stays, the others end.
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: profile::PasswordRotation = crate::api::json(&body)?;
    profile::change_password(&state, &caller, body, &admin_auth::client(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /user/tenants`.
pub async fn tenants(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let data = portal::my_tenants(&state, &caller.user).await?;
    Ok(HttpResponse::Ok().json(MyTenantList { data }))
}

/// `GET /user/tenants/{tenant_id}`.
pub async fn tenant(access: UserTenant<AnyRole>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(MyTenantView::from(&access.scope)))
}
