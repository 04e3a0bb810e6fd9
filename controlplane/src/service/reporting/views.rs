//! The reporting answers, typed for the OpenAPI document.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::stats::{DayPoint, UsageTotals};
use crate::db::models::AlertEvent;

/// `GET /admin/usage/summary` (and a tenant's or key's usage).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageSummary {
    /// The IANA timezone the days are in (the `timezone` asked for, else
    /// `reporting.timezone`).
    pub timezone: String,
    /// The range covered: `[start, end)`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub model_alias: Option<String>,
    pub totals: UsageTotals,
    /// One point per local day of the range, zeros included.
    pub days: Vec<DayPoint>,
}

/// One entity of a breakdown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BreakdownRow {
    /// The group's value: a tenant, key or user id, an alias, provider, deployment or status;
    /// `null` for usage without it (e.g. requests refused before a key was known).
    pub key: Option<String>,
    /// A tenant's or key's name, a user's email, else the value.
    pub label: String,
    pub totals: UsageTotals,
    pub days: Vec<DayPoint>,
}

/// `GET /admin/usage/breakdown`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Breakdown {
    pub timezone: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `tenant`, `key`, `user`, `model`, `provider`, `deployment` or `status`.
    pub group_by: String,
    /// Entities with usage in the range (`rows` holds the first `limit` by spend).
    pub entities: usize,
    pub rows: Vec<BreakdownRow>,
}

/// One overlaid series of a comparison.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Series {
    /// `tenant` or `model`.
    pub kind: String,
    /// The tenant id or the alias.
    pub id: String,
    /// The tenant's name, or the alias.
    pub label: String,
    pub totals: UsageTotals,
    /// One point per local day.
    pub points: Vec<DayPoint>,
}

/// `GET /admin/usage/compare`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Comparison {
    pub timezone: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Tenants first, then aliases, each in the order asked.
    pub series: Vec<Series>,
}

/// One budget alert delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertEventView {
    pub id: i64,
    /// Attempts of one delivery share it.
    pub delivery_id: Uuid,
    pub tenant_id: Uuid,
    /// Set for a key's budget.
    pub key_id: Option<Uuid>,
    /// `warning` or `exceeded`.
    pub level: String,
    /// The budget window, e.g. `calendar_month:2026-11-01`.
    pub window_label: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// The address, or the webhook's scheme and host.
    pub target: String,
    pub attempt: i32,
    /// `sent`, `failed` or `refused`.
    pub status: String,
    pub error: Option<String>,
    pub spend_usd: f64,
    pub limit_usd: f64,
    pub created_at: DateTime<Utc>,
}

impl From<AlertEvent> for AlertEventView {
    fn from(e: AlertEvent) -> Self {
        use crate::service::governance::micros_to_usd;
        Self {
            id: e.id,
            delivery_id: e.delivery_id,
            tenant_id: e.tenant_id,
            key_id: e.key_id,
            level: e.level,
            window_label: e.window_label,
            channel: e.channel,
            target: e.target,
            attempt: e.attempt,
            status: e.outcome,
            error: e.error,
            spend_usd: micros_to_usd(e.spend_micro_usd),
            limit_usd: micros_to_usd(e.limit_micro_usd),
            created_at: e.created_at,
        }
    }
}

/// A page of alert attempts, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertPage {
    pub data: Vec<AlertEventView>,
    pub has_more: bool,
    /// Pass as `before` for the next page.
    pub next_before: Option<i64>,
}
