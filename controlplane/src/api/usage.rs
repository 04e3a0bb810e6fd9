//! Usage reporting (`/admin/usage/*`, a tenant's and a key's usage) and the budget alert
//! history. Thin: the queries become a [`Scope`] and filters for `service::reporting`.

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{openapi, Access, RouteSpec};
use crate::api::error::{ApiError, ApiResult};
use crate::auth::{AdminUp, Role, SuperAdmin, TenantAccess, ViewerUp};
use crate::service::reporting::{self as rep, AlertQuery, Filters, RangeInput, Scope};
use crate::state::AppState;

/// The usage routes (registered by `api::routes`).
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    const VIEWER: Access = Tenant(Role::Viewer);
    const ADMIN: Access = Tenant(Role::Admin);
    vec![
        route!(GET "/admin/usage/summary", SuperAdmin, summary, "Usage totals and per-day points (requests, tokens, spend, error rate, latency and TTFT percentiles) in a timezone", 200, res = rep::UsageSummary, query = SummaryQuery),
        route!(GET "/admin/usage/breakdown", SuperAdmin, breakdown, "Usage per tenant, key, user, model, provider, deployment or status, with daily series (CSV with `Accept: text/csv`)", 200, res = rep::Breakdown, query = BreakdownQuery),
        route!(GET "/admin/usage/compare", SuperAdmin, compare, "Daily series of up to 10 tenants and model aliases overlaid", 200, res = rep::Comparison, query = CompareQuery),
        route!(GET "/admin/tenants/{tenant_id}/usage", VIEWER, tenant_summary, "A tenant's usage totals and per-day points", 200, res = rep::UsageSummary, query = TenantUsageQuery),
        route!(GET "/admin/tenants/{tenant_id}/api-keys/{key_id}/usage", VIEWER, key_summary, "An API key's usage totals and per-day points", 200, res = rep::UsageSummary, query = RangeQuery),
        route!(GET "/admin/budget-alerts", SuperAdmin, all_alerts, "Budget alert delivery attempts, newest first", 200, res = rep::AlertPage, query = AlertsQuery),
        route!(GET "/admin/tenants/{tenant_id}/budget-alerts", ADMIN, tenant_alerts, "A tenant's budget alert delivery attempts, newest first", 200, res = rep::AlertPage, query = TenantAlertsQuery),
    ]
}

/// `period` (`Nd`, 1–180, default 30d: the last N local days, today included) or `start` and
/// `end` (RFC 3339, both or neither, at most 180 days; they win over `period`), `timezone`
/// (IANA, default `reporting.timezone`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    pub period: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
}

/// The range (see `RangeQuery`) and optional filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    pub period: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub model_alias: Option<String>,
}

/// A tenant's usage: the range (see `RangeQuery`) and optional filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantUsageQuery {
    pub period: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
    pub key_id: Option<Uuid>,
    pub model_alias: Option<String>,
}

/// `group_by` (tenant, key, user, model, provider, deployment, status), `limit` (1–500,
/// default 50, by spend), the range (see `RangeQuery`) and optional filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BreakdownQuery {
    pub group_by: String,
    pub limit: Option<i64>,
    pub period: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub model_alias: Option<String>,
}

/// `tenant_ids` and `model_aliases` (comma-separated; at most 10 together) and the range
/// (see `RangeQuery`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CompareQuery {
    pub tenant_ids: Option<String>,
    pub model_aliases: Option<String>,
    pub period: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
}

/// Filters: `tenant_id`, `level` (warning, exceeded), `channel` (email, webhook), `status`
/// (sent, failed, refused), `since` (RFC 3339), `before` (an id: the page after it), `limit`
/// (1–200, default 50).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    pub tenant_id: Option<Uuid>,
    pub level: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// As `AlertsQuery`, without `tenant_id` (the path's).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantAlertsQuery {
    pub level: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// Parses the query string after the handler's guard ran (actix extracts arguments
/// concurrently: a `web::Query` argument would answer 400 before a caller without access got
/// its 401/403/404).
pub(crate) fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> ApiResult<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

pub(crate) fn range(
    period: Option<String>,
    start: Option<String>,
    end: Option<String>,
    timezone: Option<String>,
) -> RangeInput {
    RangeInput {
        period,
        start,
        end,
        timezone,
    }
}

/// `GET /admin/usage/summary` (super admin).
pub async fn summary(
    _admin: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: SummaryQuery = query(&req)?;
    let filters = Filters {
        tenant_id: q.tenant_id,
        key_id: q.key_id,
        model_alias: q.model_alias,
    };
    let input = range(q.period, q.start, q.end, q.timezone);
    let view = rep::summary(&state, &Scope::All, &input, &filters, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Whether the client asked for CSV.
fn wants_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/csv"))
}

/// `GET /admin/usage/breakdown` (super admin); CSV with `Accept: text/csv`.
pub async fn breakdown(
    _admin: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: BreakdownQuery = query(&req)?;
    let filters = Filters {
        tenant_id: q.tenant_id,
        key_id: q.key_id,
        model_alias: q.model_alias,
    };
    let input = range(q.period, q.start, q.end, q.timezone);
    let view = rep::breakdown(
        &state,
        &Scope::All,
        &input,
        &filters,
        &q.group_by,
        q.limit,
        Utc::now(),
    )
    .await?;
    Ok(breakdown_answer(&req, &view))
}

/// A breakdown as JSON, or as CSV when the client asked for it.
pub(crate) fn breakdown_answer(req: &HttpRequest, view: &rep::Breakdown) -> HttpResponse {
    if !wants_csv(req) {
        return HttpResponse::Ok().json(view);
    }
    let name = format!("usage-by-{}.csv", view.group_by);
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(rep::csv::breakdown_csv(view))
}

/// `GET /admin/usage/compare` (super admin).
pub async fn compare(
    _admin: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: CompareQuery = query(&req)?;
    let input = range(q.period, q.start, q.end, q.timezone);
    let view = rep::compare(
        &state,
        &Scope::All,
        &input,
        q.tenant_ids.as_deref(),
        q.model_aliases.as_deref(),
        Utc::now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /admin/tenants/{tenant_id}/usage` (tenant viewer).
pub async fn tenant_summary(
    access: TenantAccess<ViewerUp>,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: TenantUsageQuery = query(&req)?;
    let tenant = access.tenant.id;
    let filters = Filters {
        tenant_id: Some(tenant),
        key_id: q.key_id,
        model_alias: q.model_alias,
    };
    let input = range(q.period, q.start, q.end, q.timezone);
    let scope = Scope::Tenants(vec![tenant]);
    let view = rep::summary(&state, &scope, &input, &filters, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /admin/tenants/{tenant_id}/api-keys/{key_id}/usage` (tenant viewer; 404 for a key of
/// another tenant).
pub async fn key_summary(
    access: TenantAccess<ViewerUp>,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: RangeQuery = query(&req)?;
    let (_, key_id) = path.into_inner();
    let input = range(q.period, q.start, q.end, q.timezone);
    let view = rep::key_summary(&state, access.tenant.id, key_id, &input, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /admin/budget-alerts` (super admin).
pub async fn all_alerts(
    _admin: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: AlertsQuery = query(&req)?;
    let query = AlertQuery {
        tenant_id: q.tenant_id,
        level: q.level,
        channel: q.channel,
        status: q.status,
        since: q.since,
        before: q.before,
        limit: q.limit,
    };
    Ok(HttpResponse::Ok().json(rep::alerts(&state, &Scope::All, query).await?))
}

/// `GET /admin/tenants/{tenant_id}/budget-alerts` (tenant admin).
pub async fn tenant_alerts(
    access: TenantAccess<AdminUp>,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: TenantAlertsQuery = query(&req)?;
    let query = AlertQuery {
        tenant_id: None,
        level: q.level,
        channel: q.channel,
        status: q.status,
        since: q.since,
        before: q.before,
        limit: q.limit,
    };
    let scope = Scope::Tenants(vec![access.tenant.id]);
    Ok(HttpResponse::Ok().json(rep::alerts(&state, &scope, query).await?))
}
