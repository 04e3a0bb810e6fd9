//! Personal tenants in the admin API (`GET /admin/personal-tenants`), and the seeds' route
//! names served beside this project's (`/admin/settings/default-models`, `DELETE
//! /admin/tenants/{tenant_id}/models`): same handlers or services, same access.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{has_more, openapi, Access, Page, RouteSpec};
use crate::api::error::ApiResult;
use crate::api::views::DefaultModelsView;
use crate::api::{catalog, tenants};
use crate::auth::SuperAdmin;
use crate::service::personal::{self, PersonalTenantRow};
use crate::service::tenants as t;
use crate::state::AppState;

/// A page of users with their personal tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonalTenantPage {
    pub data: Vec<PersonalTenantRow>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub has_more: bool,
}

/// This module's routes, added to [`super::routes`].
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    vec![
        route!(GET "/admin/personal-tenants", SuperAdmin, list, "Every user with their personal tenant, its budget in force and the current window's spend", 200, res = PersonalTenantPage, query = Page),
        route!(GET "/admin/settings/default-models", Authenticated, catalog::get_defaults, "Alias of GET /admin/default-models (the seeds' name)", 200, res = DefaultModelsView),
        route!(PUT "/admin/settings/default-models", SuperAdmin, catalog::set_defaults, "Alias of PUT /admin/default-models (the seeds' name): replaces the default models and re-syncs personal tenants", 200, req = catalog::DefaultsBody, res = DefaultModelsView),
        route!(DELETE "/admin/tenants/{tenant_id}/models", SuperAdmin, lift_models, "Alias of PUT /admin/tenants/{tenant_id}/models with `{\"models\": null}` (the seeds' name): lifts the allowlist", 200, res = t::TenantView),
    ]
}

/// `GET /admin/personal-tenants` (super admin): users by email, each with their personal
/// tenant, its budget in force and spend.
pub async fn list(
    state: web::Data<AppState>,
    _admin: SuperAdmin,
    q: web::Query<Page>,
) -> ApiResult<HttpResponse> {
    let (limit, offset) = q.bounds();
    let (data, total) = personal::list(&state, limit, offset).await?;
    let has_more = has_more(data.len(), total, offset);
    Ok(HttpResponse::Ok().json(PersonalTenantPage {
        data,
        total,
        limit,
        offset,
        has_more,
    }))
}

/// `DELETE /admin/tenants/{tenant_id}/models` (super admin): every enabled alias again.
pub async fn lift_models(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<uuid::Uuid>,
) -> ApiResult<HttpResponse> {
    let tenant = tenants::load(&state, *path).await?;
    let view = t::set_models(&state, &admin.0, &tenant, None).await?;
    Ok(HttpResponse::Ok().json(view))
}
