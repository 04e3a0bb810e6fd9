//! `/admin/model-catalog*` and `/admin/default-models`.

use actix_web::{web, HttpResponse};
use omg_shared::config::CatalogEntry;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::api::views::{AliasList, AliasSwitchView, DefaultModelsView};
use crate::auth::{Caller, SuperAdmin};
use crate::service::catalog::{self, DeploymentPatch};
use crate::state::AppState;

/// `GET /admin/model-catalog`: YAML and database deployments by alias, credentials masked
/// (super admins); a tenant member sees only what their tenants may use, without endpoints,
/// provider settings or credentials.
pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let data = catalog::list_for(&state, &caller).await?;
    Ok(HttpResponse::Ok().json(AliasList { data }))
}

/// `POST /admin/model-catalog`: a catalog entry in the YAML schema.
pub async fn create(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let entry: CatalogEntry = crate::api::json(&body)?;
    Ok(HttpResponse::Created().json(catalog::create(&state, &admin.0, entry).await?))
}

/// `PATCH /admin/model-catalog/{deployment_id}`.
pub async fn update(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let patch: DeploymentPatch = crate::api::json(&body)?;
    Ok(HttpResponse::Ok().json(catalog::update(&state, &admin.0, *path, patch).await?))
}

/// `DELETE /admin/model-catalog/{deployment_id}`.
pub async fn delete(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    catalog::delete(&state, &admin.0, *path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Alias switch body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    pub enabled: bool,
}

/// `PATCH /admin/model-catalog/aliases/{alias}` `{"enabled": bool}`.
pub async fn set_alias(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: AliasBody = crate::api::json(&body)?;
    catalog::set_alias_enabled(&state, &admin.0, &path, body.enabled).await?;
    Ok(HttpResponse::Ok().json(AliasSwitchView {
        alias: path.into_inner(),
        enabled: body.enabled,
    }))
}

/// `GET /admin/default-models`.
pub async fn get_defaults(state: web::Data<AppState>, _caller: Caller) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(DefaultModelsView {
        models: catalog::default_models(&state).await?,
        personal_tenants_synced: None,
    }))
}

/// Default models body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsBody {
    pub models: Vec<String>,
}

/// `PUT /admin/default-models`: replaces them and re-syncs personal tenants.
pub async fn set_defaults(
    state: web::Data<AppState>,
    admin: SuperAdmin,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: DefaultsBody = crate::api::json(&body)?;
    let synced = catalog::set_default_models(&state, &admin.0, body.models.clone()).await?;
    Ok(HttpResponse::Ok().json(DefaultModelsView {
        models: body.models,
        personal_tenants_synced: Some(synced),
    }))
}
