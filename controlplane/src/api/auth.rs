//! `/admin/auth/*`: methods, login, refresh, logout. The session handlers take a [`Portal`]
//! (its realm and cookie path), so `/user/auth/*` (`api::user`) runs the same code with its
//! own refresh cookie.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite as CookieSameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use omg_shared::config::SameSite;
use serde::Deserialize;

use crate::api::error::{ApiError, ApiResult};
use crate::auth::request_meta;
use crate::service::session::{self, ClientInfo};
use crate::state::AppState;

/// A sign-in portal: the realm its sessions belong to (a refresh token only rotates in its
/// own realm) and the path its refresh cookie is sent to (only the session endpoints). The
/// admin and user portals keep separate cookies, so signing in to one never replaces the
/// other's session.
#[derive(Debug, Clone, Copy)]
pub struct Portal {
    pub realm: &'static str,
    pub cookie_path: &'static str,
}

/// `/admin/auth/*`.
pub const ADMIN: Portal = Portal {
    realm: "admin",
    cookie_path: "/admin/auth",
};

/// `/user/auth/*`.
pub const USER: Portal = Portal {
    realm: "user",
    cookie_path: "/user/auth",
};

pub(crate) fn client(req: &HttpRequest) -> ClientInfo {
    let (request_id, ip) = request_meta(req);
    ClientInfo {
        ip: ip.unwrap_or_else(|| "unknown".to_owned()),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        request_id,
    }
}

fn session_cookie(
    state: &AppState,
    portal: Portal,
    value: String,
    max_age_secs: i64,
) -> Cookie<'static> {
    let s = &state.config.admin.session;
    Cookie::build(s.cookie_name.clone(), value)
        .path(portal.cookie_path)
        .http_only(true)
        .secure(s.cookie_secure)
        .same_site(match s.cookie_same_site {
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::Lax => CookieSameSite::Lax,
        })
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

/// `GET /admin/auth/methods`: which sign-in methods are on.
pub async fn methods(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(crate::api::views::MethodsView {
        local: state.config.admin.local.enabled,
        oidc: false,
    })
}

/// Login body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

/// `POST /admin/auth/login`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    login_in(ADMIN, &state, &req, &body).await
}

/// Login through `portal`: any active account with a local password (throttled).
pub(crate) async fn login_in(
    portal: Portal,
    state: &AppState,
    req: &HttpRequest,
    body: &web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: LoginBody = crate::api::json(body)?;
    let issued = session::login(
        state,
        portal.realm,
        &body.email,
        &body.password,
        &client(req),
    )
    .await?;
    Ok(session_response(state, portal, issued))
}

/// 200 with the session view, and the new refresh cookie when there is one.
fn session_response(state: &AppState, portal: Portal, issued: session::Issued) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(token) = issued.refresh_token {
        let max_age = i64::try_from(state.refresh_ttl.as_secs()).unwrap_or(i64::MAX);
        response.cookie(session_cookie(state, portal, token, max_age));
    }
    response.json(issued.view)
}

fn presented(state: &AppState, req: &HttpRequest) -> Option<String> {
    req.cookie(&state.config.admin.session.cookie_name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// `POST /admin/auth/refresh`: rotates the session cookie and returns a new access token.
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    refresh_in(ADMIN, &state, &req).await
}

/// Refresh through `portal` (a cookie of another portal's realm is refused).
pub(crate) async fn refresh_in(
    portal: Portal,
    state: &AppState,
    req: &HttpRequest,
) -> ApiResult<HttpResponse> {
    let token = presented(state, req)
        .ok_or_else(|| ApiError::unauthenticated("no session cookie; log in"))?;
    match session::refresh(state, portal.realm, &token, &client(req)).await {
        Ok(issued) => Ok(session_response(state, portal, issued)),
        Err(error) => {
            // Clear the cookie so the browser stops presenting a dead session.
            let mut response = actix_web::ResponseError::error_response(&ApiError::from(error));
            let _ = response.add_cookie(&session_cookie(state, portal, String::new(), 0));
            Ok(response)
        }
    }
}

/// `POST /admin/auth/logout`: ends the session family and clears the cookie.
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    logout_in(ADMIN, &state, &req).await
}

/// Logout through `portal`: ends the cookie's session family and clears the cookie.
pub(crate) async fn logout_in(
    portal: Portal,
    state: &AppState,
    req: &HttpRequest,
) -> ApiResult<HttpResponse> {
    session::logout(state, presented(state, req).as_deref()).await?;
    Ok(HttpResponse::NoContent()
        .cookie(session_cookie(state, portal, String::new(), 0))
        .finish())
}

/// `POST /admin/auth/password`: the user sets a new password, proving the current one (the
/// only use of a temporary password). Every session of the account ends; log in again.
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: crate::service::users::PasswordChange = crate::api::json(&body)?;
    crate::service::users::change_password(&state, body, &client(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
