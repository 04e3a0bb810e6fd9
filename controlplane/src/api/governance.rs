//! Rate-limit and budget governance: `/admin/settings/rate-limits`, `/admin/budgets/*`,
//! `/admin/tenants/{tenant_id}/budget` and `/admin/tenants/{tenant_id}/rate-limits`.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::api::tenants::load;
use crate::api::views::BudgetOverrideList;
use crate::auth::{Caller, SuperAdmin, TenantAccess, ViewerUp};
use crate::service::counters;
use crate::service::governance::{
    self, BudgetDefaultInput, RateLimitDefaultsInput, TenantBudgetInput, TenantRateLimitsInput,
};
use crate::state::AppState;

/// `GET /admin/settings/rate-limits`.
pub async fn get_rate_limits(
    _caller: Caller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(governance::get_rate_limit_defaults(&state).await?))
}

/// `PUT /admin/settings/rate-limits` (super admin).
pub async fn set_rate_limits(
    admin: SuperAdmin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: RateLimitDefaultsInput = crate::api::json(&body)?;
    let view = governance::set_rate_limit_defaults(&state, &admin.0, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /admin/budgets/default`.
pub async fn get_budget_default(
    _caller: Caller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(governance::get_budget_default(&state).await?))
}

/// `PUT /admin/budgets/default` (super admin).
pub async fn set_budget_default(
    admin: SuperAdmin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: BudgetDefaultInput = crate::api::json(&body)?;
    let view = governance::set_budget_default(&state, &admin.0, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /admin/budgets/overrides` (super admin).
pub async fn list_overrides(
    _admin: SuperAdmin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let data = governance::list_overrides(&state).await?;
    Ok(HttpResponse::Ok().json(BudgetOverrideList { data }))
}

/// `POST /admin/budgets/rebuild` (super admin): spend counters from Postgres into Redis.
pub async fn rebuild(admin: SuperAdmin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(counters::rebuild_now(&state, &admin.0).await?))
}

/// `GET /admin/tenants/{tenant_id}/budget`: the budget in force, spend and level.
pub async fn get_tenant_budget(
    access: TenantAccess<ViewerUp>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(governance::get_tenant_budget(&state, &access.tenant).await?))
}

/// `PUT /admin/tenants/{tenant_id}/budget` (super admin: a tenant cannot raise its own).
pub async fn set_tenant_budget(
    admin: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: TenantBudgetInput = crate::api::json(&body)?;
    let tenant = load(&state, *path).await?;
    let view = governance::set_tenant_budget(&state, &admin.0, &tenant, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /admin/tenants/{tenant_id}/budget` (super admin): back to the default.
pub async fn delete_tenant_budget(
    admin: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let tenant = load(&state, *path).await?;
    governance::delete_tenant_budget(&state, &admin.0, &tenant).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /admin/tenants/{tenant_id}/rate-limits`.
pub async fn get_tenant_rate_limits(
    access: TenantAccess<ViewerUp>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(governance::get_tenant_rate_limits(&state, &access.tenant).await?))
}

/// `PUT /admin/tenants/{tenant_id}/rate-limits` (super admin).
pub async fn set_tenant_rate_limits(
    admin: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: TenantRateLimitsInput = crate::api::json(&body)?;
    let tenant = load(&state, *path).await?;
    let view = governance::set_tenant_rate_limits(&state, &admin.0, &tenant, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /admin/tenants/{tenant_id}/rate-limits` (super admin): back to the defaults.
pub async fn delete_tenant_rate_limits(
    admin: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let tenant = load(&state, *path).await?;
    governance::delete_tenant_rate_limits(&state, &admin.0, &tenant).await?;
    Ok(HttpResponse::NoContent().finish())
}
