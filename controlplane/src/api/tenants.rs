//! `/admin/tenants*` and memberships.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::api::views::{MemberList, TenantModelsView, TenantPage};
use crate::api::{has_more, Page};
use crate::auth::{Caller, OwnerOnly, SuperAdmin, TenantAccess, ViewerUp};
use crate::service::tenants::{self, NewMember, NewTenant, TenantPatch};
use crate::state::AppState;

/// `?limit=&offset=&include_personal=` of the tenant list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Also list personal tenants (hidden by default). Default false.
    #[serde(default)]
    pub include_personal: bool,
}

/// `GET /admin/tenants`: all tenants for super admins, the caller's otherwise; personal
/// tenants only with `?include_personal=true`.
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .bounds();
    let (data, total) = tenants::list(&state, &caller, q.include_personal, limit, offset).await?;
    let has_more = has_more(data.len(), total, offset);
    Ok(HttpResponse::Ok().json(TenantPage {
        data,
        total,
        limit,
        offset,
        has_more,
    }))
}

/// `POST /admin/tenants`.
pub async fn create(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: NewTenant = crate::api::json(&body)?;
    let view = tenants::create(&state, &admin.0, body).await?;
    Ok(HttpResponse::Created().json(view))
}

/// `GET /admin/tenants/{tenant_id}`: with its budget in force and current spend.
pub async fn get(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(tenants::summary(&state, &access.tenant).await?))
}

/// `PATCH /admin/tenants/{tenant_id}`: rename (owner).
pub async fn rename(
    state: web::Data<AppState>,
    access: TenantAccess<OwnerOnly>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: TenantPatch = crate::api::json(&body)?;
    let view = tenants::rename(&state, &access.caller, &access.tenant, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Status body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: String,
}

/// `PATCH /admin/tenants/{tenant_id}/status` (super admin).
pub async fn set_status(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: StatusBody = crate::api::json(&body)?;
    let tenant = load(&state, *path).await?;
    let view = tenants::set_status(&state, &admin.0, &tenant, &body.status).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    pub confirm: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// `DELETE /admin/tenants/{tenant_id}?confirm=<name>[&force=true]` (super admin).
pub async fn delete(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
    q: web::Query<DeleteQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = load(&state, *path).await?;
    tenants::delete(&state, &admin.0, &tenant, q.confirm.as_deref(), q.force).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(crate) async fn load(state: &AppState, id: Uuid) -> ApiResult<crate::db::models::Tenant> {
    let mut conn = state.pool.get().await.map_err(crate::db::DbError::from)?;
    crate::db::tenants::get(&mut conn, id)
        .await
        .map_err(|e| crate::api::error::ApiError::from_db(e, "tenant"))
}

/// `GET /admin/tenants/{tenant_id}/models`.
pub async fn get_models(access: TenantAccess<ViewerUp>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(TenantModelsView {
        tenant_id: access.tenant.id,
        allowed_models: access.tenant.allowed_models.clone(),
    }))
}

/// Allowlist body: `null` lifts the restriction.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelsBody {
    pub models: Option<Vec<String>>,
}

/// `PUT /admin/tenants/{tenant_id}/models` (super admin: a tenant cannot grant itself models).
pub async fn set_models(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: ModelsBody = crate::api::json(&body)?;
    let tenant = load(&state, *path).await?;
    let view = tenants::set_models(&state, &admin.0, &tenant, body.models).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /admin/tenants/{tenant_id}/memberships`.
pub async fn members(
    state: web::Data<AppState>,
    access: TenantAccess<ViewerUp>,
) -> ApiResult<HttpResponse> {
    let data = tenants::members(&state, &access.caller, &access.tenant).await?;
    Ok(HttpResponse::Ok().json(MemberList { data }))
}

/// `POST /admin/tenants/{tenant_id}/memberships` (owner).
pub async fn add_member(
    state: web::Data<AppState>,
    access: TenantAccess<OwnerOnly>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: NewMember = crate::api::json(&body)?;
    let view = tenants::add_member(&state, &access.caller, &access.tenant, body).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Role body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    pub role: String,
}

/// `PATCH /admin/tenants/{tenant_id}/memberships/{user_id}` (owner).
pub async fn change_role(
    state: web::Data<AppState>,
    access: TenantAccess<OwnerOnly>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: RoleBody = crate::api::json(&body)?;
    let view =
        tenants::change_role(&state, &access.caller, &access.tenant, path.1, &body.role).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /admin/tenants/{tenant_id}/memberships/{user_id}` (owner).
pub async fn remove_member(
    state: web::Data<AppState>,
    access: TenantAccess<OwnerOnly>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    tenants::remove_member(&state, &access.caller, &access.tenant, path.1).await?;
    Ok(HttpResponse::NoContent().finish())
}
