//! Batches in the admin API (`/admin/tenants/{tenant_id}/batches*`: list, one, cancel) and
//! the user API (`/user/tenants/{tenant_id}/batches*`: members see the batches of keys they
//! own, viewers and above every batch of the tenant). The objects are OpenAI's; their output
//! and error files are downloaded through the files routes by `output_file_id` /
//! `error_file_id`. Thin: the work is in `batches::service`.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::{openapi, Access, RouteSpec};
use crate::api::error::ApiResult;
use crate::auth::{AdminUp, AnyRole, Role, TenantAccess, UserTenant, ViewerUp};
use crate::batches::object::{BatchList, BatchObject};
use crate::batches::service::{self, ListQuery};
use crate::service::audit::Actor;
use crate::state::AppState;

/// The batch routes (registered by `api::routes`).
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    const VIEWER: Access = Tenant(Role::Viewer);
    const ADMIN: Access = Tenant(Role::Admin);
    const MEMBER: Access = Member(Role::User);
    vec![
        route!(GET "/admin/tenants/{tenant_id}/batches", VIEWER, list, "A tenant's batches, newest first (OpenAI batch objects)", 200, res = BatchList, query = AdminBatchQuery),
        route!(GET "/admin/tenants/{tenant_id}/batches/{batch_id}", VIEWER, get, "One batch of a tenant", 200, res = BatchObject),
        route!(POST "/admin/tenants/{tenant_id}/batches/{batch_id}/cancel", ADMIN, cancel, "Cancel a running batch (its unsent lines fail with batch_cancelled)", 200, res = BatchObject),
        route!(GET "/user/tenants/{tenant_id}/batches", MEMBER, user_list, "The tenant's batches the caller may see (all for viewers and above, else those of their keys)", 200, res = BatchList, query = UserBatchQuery),
        route!(GET "/user/tenants/{tenant_id}/batches/{batch_id}", MEMBER, user_get, "One batch the caller may see", 200, res = BatchObject),
    ]
}

/// `status` (`validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
/// `cancelling`, `cancelled`), `after` (a batch id: the page after it), `limit` (1–100,
/// default 20).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminBatchQuery {
    pub status: Option<String>,
    pub after: Option<String>,
    pub limit: Option<i64>,
}

/// `after` (a batch id), `limit` (1–100, default 20).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserBatchQuery {
    pub after: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /admin/tenants/{tenant_id}/batches`.
pub async fn list(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
    query: web::Query<AdminBatchQuery>,
) -> ApiResult<HttpResponse> {
    let query = ListQuery {
        after: query.after.clone(),
        limit: query.limit,
        status: query.status.clone(),
    };
    let page = service::list(&state, access.tenant.id, &query, None)
        .await
        .map_err(crate::service::Error::from)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /admin/tenants/{tenant_id}/batches/{batch_id}`.
pub async fn get(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let batch = service::get(&state, access.tenant.id, &path.1)
        .await
        .map_err(crate::service::Error::from)?;
    Ok(HttpResponse::Ok().json(BatchObject::from(&batch)))
}

/// `POST /admin/tenants/{tenant_id}/batches/{batch_id}/cancel` (audited).
pub async fn cancel(
    state: web::Data<AppState>,
    access: TenantAccess<AdminUp>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let batch = service::cancel(
        &state,
        access.tenant.id,
        &path.1,
        Actor::Caller(&access.caller),
    )
    .await
    .map_err(crate::service::Error::from)?;
    Ok(HttpResponse::Ok().json(BatchObject::from(&batch)))
}

/// `GET /user/tenants/{tenant_id}/batches`.
pub async fn user_list(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    query: web::Query<UserBatchQuery>,
) -> ApiResult<HttpResponse> {
    let owner = (!access.scope.sees_all_keys()).then_some(access.caller.user.id);
    let query = ListQuery {
        after: query.after.clone(),
        limit: query.limit,
        status: None,
    };
    let page = service::list(&state, access.scope.tenant.id, &query, owner)
        .await
        .map_err(crate::service::Error::from)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /user/tenants/{tenant_id}/batches/{batch_id}`: 404 for a batch the caller may not see.
pub async fn user_get(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let batch = service::get(&state, access.scope.tenant.id, &path.1)
        .await
        .map_err(crate::service::Error::from)?;
    if !access.scope.sees_all_keys() && batch.user_id != Some(access.caller.user.id) {
        return Err(crate::service::Error::not_found("batch").into());
    }
    Ok(HttpResponse::Ok().json(BatchObject::from(&batch)))
}
