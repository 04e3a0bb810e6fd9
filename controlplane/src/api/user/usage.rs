//! `/user/usage/*` and a tenant's or a key's usage on `/user`: thin handlers over
//! `service::portal::usage` and `service::reporting`, with the admin reporting routes' query
//! strings (`api::usage`), parsed after the guard.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::api::usage::{
    breakdown_answer, query, range, BreakdownQuery, CompareQuery, RangeQuery, SummaryQuery,
    TenantUsageQuery,
};
use crate::auth::{AnyRole, Caller, UserTenant, ViewerUp};
use crate::service::portal::usage as mine;
use crate::service::reporting::{self as rep, Filters, Scope};
use crate::state::AppState;

/// `GET /user/usage/summary`: over the caller's tenants (or one of them, `tenant_id`).
pub async fn summary(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: SummaryQuery = query(&req)?;
    let scope = mine::scope(&state, &caller).await?;
    let filters = Filters {
        tenant_id: q.tenant_id,
        key_id: q.key_id,
        model_alias: q.model_alias,
    };
    let input = range(q.period, q.start, q.end, q.timezone);
    let view = rep::summary(&state, &scope, &input, &filters, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /user/usage/breakdown`: over the caller's tenants; CSV with `Accept: text/csv`.
pub async fn breakdown(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: BreakdownQuery = query(&req)?;
    let scope = mine::scope(&state, &caller).await?;
    let filters = Filters {
        tenant_id: q.tenant_id,
        key_id: q.key_id,
        model_alias: q.model_alias,
    };
    let input = range(q.period, q.start, q.end, q.timezone);
    let (group, limit) = (&q.group_by, q.limit);
    let view = rep::breakdown(&state, &scope, &input, &filters, group, limit, Utc::now()).await?;
    Ok(breakdown_answer(&req, &view))
}

/// `GET /user/usage/compare`: the caller's tenants (404 for any other) and model aliases
/// within them.
pub async fn compare(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: CompareQuery = query(&req)?;
    let scope = mine::scope(&state, &caller).await?;
    let input = range(q.period, q.start, q.end, q.timezone);
    let (tenants, aliases) = (q.tenant_ids.as_deref(), q.model_aliases.as_deref());
    let view = rep::compare(&state, &scope, &input, tenants, aliases, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /user/tenants/{tenant_id}/usage` (viewer and above, or the personal tenant).
pub async fn tenant_summary(
    state: web::Data<AppState>,
    access: UserTenant<ViewerUp>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: TenantUsageQuery = query(&req)?;
    let tenant = access.scope.tenant.id;
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

/// `GET /user/tenants/{tenant_id}/api-keys/{key_id}/usage` (a key the caller may see).
pub async fn key_summary(
    state: web::Data<AppState>,
    access: UserTenant<AnyRole>,
    path: web::Path<(Uuid, Uuid)>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q: RangeQuery = query(&req)?;
    let (_, key_id) = path.into_inner();
    let input = range(q.period, q.start, q.end, q.timezone);
    let view = mine::key_summary(&state, &access.caller, &access.scope, key_id, &input).await?;
    Ok(HttpResponse::Ok().json(view))
}
