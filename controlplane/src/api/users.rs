//! `/admin/users*` (super admin) and `/admin/me`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::api::views::{MeView, MembershipRef, UserPage};
use crate::api::{has_more, Page};
use crate::auth::{Caller, SuperAdmin};
use crate::db::{self, DbError};
use crate::service::users::{self, NewUser, UserPatch, UserView};
use crate::state::AppState;

/// `GET /admin/me`: the caller and their tenant roles.
pub async fn me(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let memberships = db::tenants::memberships_of(&mut conn, caller.user.id)
        .await?
        .into_iter()
        .map(|(tenant_id, role)| MembershipRef {
            tenant_id,
            role: role.as_str().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(MeView {
        user: UserView::from(&caller.user),
        memberships,
    }))
}

/// `GET /admin/users`.
pub async fn list(
    state: web::Data<AppState>,
    _admin: SuperAdmin,
    q: web::Query<Page>,
) -> ApiResult<HttpResponse> {
    let (limit, offset) = q.bounds();
    let (data, total) = users::list(&state, limit, offset).await?;
    let has_more = has_more(data.len(), total, offset);
    Ok(HttpResponse::Ok().json(UserPage {
        data,
        total,
        limit,
        offset,
        has_more,
    }))
}

/// `POST /admin/users`.
pub async fn create(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: NewUser = crate::api::json(&body)?;
    let view = users::create(&state, &admin.0, body).await?;
    Ok(HttpResponse::Created().json(view))
}

/// `GET /admin/users/{user_id}`.
pub async fn get(
    state: web::Data<AppState>,
    _admin: SuperAdmin,
    path: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(users::get(&state, *path).await?))
}

/// `PATCH /admin/users/{user_id}`: name, status (`disabled` ends sessions), super-admin flag.
pub async fn update(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: UserPatch = crate::api::json(&body)?;
    Ok(HttpResponse::Ok().json(users::update(&state, &admin.0, *path, body).await?))
}

/// Password body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub password: String,
}

/// `POST /admin/users/{user_id}/password`: sets a new password, ends sessions.
pub async fn reset_password(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: PasswordBody = crate::api::json(&body)?;
    users::reset_password(&state, &admin.0, *path, &body.password).await?;
    Ok(HttpResponse::NoContent().finish())
}
