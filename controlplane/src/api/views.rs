//! Response bodies that are not a single service view (lists, small answers). Typed so the
//! OpenAPI document describes exactly what is sent.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::models::AuditEntry;
use crate::service::catalog::AliasView;
use crate::service::keys::KeyView;
use crate::service::tenants::{MemberView, TenantSummary};
use crate::service::users::UserView;

/// `GET /admin/auth/methods`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MethodsView {
    /// Email and password sign-in (`admin.local.enabled`).
    pub local: bool,
    /// Single sign-on.
    pub oidc: bool,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    pub data: Vec<TenantSummary>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub has_more: bool,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub data: Vec<UserView>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub has_more: bool,
}

/// A tenant's allowlist.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantModelsView {
    pub tenant_id: Uuid,
    /// `null`: every enabled alias.
    pub allowed_models: Option<Vec<String>>,
}

/// A tenant's members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberView>,
}

/// A tenant's keys (never their secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyView>,
}

/// One of the caller's memberships.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipRef {
    pub tenant_id: Uuid,
    pub role: String,
}

/// `GET /admin/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub user: UserView,
    pub memberships: Vec<MembershipRef>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEntry>,
    pub has_more: bool,
    /// Pass as `before` for the next page.
    pub next_before: Option<i64>,
}

/// A dependency's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentHealth {
    /// `ok`, `error` or `not_configured`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`, `degraded` (Redis down) or `error` (Postgres down, answered with 503).
    pub status: String,
    pub postgres: ComponentHealth,
    pub redis: ComponentHealth,
    /// Cluster mode: the snapshot publisher (absent without Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<crate::workers::publisher::PublishStatus>,
    /// Cluster mode: the usage consumer (absent without Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::workers::usage_ingest::IngestHealth>,
    pub version: String,
}

/// A provider kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderInfo {
    pub kind: String,
    /// Whether this build has its adapter.
    pub supported: bool,
    /// `chat`, `stream`, `completions`, `embeddings`, `images_generate`, …
    pub capabilities: Vec<String>,
}

/// `GET /admin/providers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersView {
    pub data: Vec<ProviderInfo>,
}

/// The merged model catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasList {
    pub data: Vec<AliasView>,
}

/// An alias switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasSwitchView {
    pub alias: String,
    pub enabled: bool,
}

/// The global default models.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefaultModelsView {
    pub models: Vec<String>,
    /// Personal tenants whose allowlist was re-synced (on `PUT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal_tenants_synced: Option<usize>,
}

/// The tenant budget overrides.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetOverrideList {
    pub data: Vec<crate::service::governance::BudgetOverrideView>,
}
