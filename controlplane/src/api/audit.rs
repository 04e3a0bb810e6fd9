//! Audit log listing (read-only: no route edits or deletes entries).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::error::ApiResult;
use crate::auth::{AdminUp, SuperAdmin, TenantAccess};
use crate::db::audit::AuditFilter;
use crate::db::{self, DbError};
use crate::state::AppState;

/// Filters: `tenant_id`, `actor_user_id`, `action`, `target_type`, `target_id`, `since`,
/// `until` (RFC 3339), `before` (an entry id: the page after it), `limit` (1–200, default 50).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub tenant_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

async fn list(state: &AppState, q: AuditQuery, tenant: Option<Uuid>) -> ApiResult<HttpResponse> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let filter = AuditFilter {
        tenant_id: tenant.or(q.tenant_id),
        actor_user_id: q.actor_user_id,
        action: q.action,
        target_type: q.target_type,
        target_id: q.target_id,
        since: q.since,
        until: q.until,
        before_id: q.before,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let rows = db::audit::list(&mut conn, &filter, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let data: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_before = if has_more {
        data.last().map(|r| r.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(crate::api::views::AuditPage {
        data,
        has_more,
        next_before,
    }))
}

/// `GET /admin/audit` (super admin).
pub async fn list_all(
    state: web::Data<AppState>,
    _admin: SuperAdmin,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    list(&state, q.into_inner(), None).await
}

/// `GET /admin/tenants/{tenant_id}/audit` (tenant admin): that tenant's entries only.
pub async fn list_tenant(
    state: web::Data<AppState>,
    access: TenantAccess<AdminUp>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    list(&state, q.into_inner(), Some(access.tenant.id)).await
}
