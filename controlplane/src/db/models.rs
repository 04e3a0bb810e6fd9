//! Row types. Field order matches `schema.rs` (diesel `Queryable` maps by position).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::schema::*;

pub use omg_shared::config::{KeyStatus, TenantStatus};

/// A status or role as its TEXT column stores it. The columns keep their strings (each has a
/// `CHECK` listing them); code compares these enums, converting here.
pub trait Stored: Sized + Copy {
    /// The stored name.
    fn as_str(self) -> &'static str;
    /// The value of a stored name (`None` for a name the column's `CHECK` refuses).
    fn parse(text: &str) -> Option<Self>;
}

/// Implements [`Stored`] from a list of `Variant => "name"` pairs.
macro_rules! stored {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl Stored for $ty {
            fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
            fn parse(text: &str) -> Option<Self> {
                match text { $($name => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

stored!(KeyStatus { Active => "active", Disabled => "disabled", Revoked => "revoked" });
stored!(TenantStatus { Active => "active", Suspended => "suspended" });
stored!(UserStatus { Active => "active", Disabled => "disabled" });

/// Tenant roles, lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Uses the tenant's models (user portal); no admin API access.
    User,
    /// Reads the tenant's settings, keys and members.
    Viewer,
    /// Manages keys and settings.
    Admin,
    /// Everything in the tenant, including members.
    Owner,
}

impl Role {
    /// Parses `owner|admin|viewer|user`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::User => "user",
        }
    }
}

impl Stored for Role {
    fn as_str(self) -> &'static str {
        Role::as_str(self)
    }
    fn parse(text: &str) -> Option<Self> {
        Role::parse(text)
    }
}

/// Account status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// May sign in.
    Active,
    /// Refused at sign-in; sessions ended.
    Disabled,
}

impl Tenant {
    /// The tenant's status (a name the column's `CHECK` refuses reads as suspended).
    pub fn status(&self) -> TenantStatus {
        TenantStatus::parse(&self.status).unwrap_or(TenantStatus::Suspended)
    }
}

impl User {
    /// The account's status (a name the column's `CHECK` refuses reads as disabled).
    pub fn status(&self) -> UserStatus {
        UserStatus::parse(&self.status).unwrap_or(UserStatus::Disabled)
    }
}

impl Membership {
    /// The member's role (a name the column's `CHECK` refuses reads as the lowest).
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::User)
    }
}

impl ApiKey {
    /// The key's status (a name the column's `CHECK` refuses reads as revoked).
    pub fn status(&self) -> KeyStatus {
        KeyStatus::parse(&self.status).unwrap_or(KeyStatus::Revoked)
    }
}

/// A tenant row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub allowed_models: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A user row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_super_admin: bool,
    pub status: String,
    pub personal_tenant_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A membership row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API key row (the hash never leaves the data layer in responses: see `api::keys`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub allowed_models: Option<Vec<String>>,
    pub budget_micro_usd: Option<i64>,
    pub warning_threshold: Option<f64>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub parallel_requests: Option<i64>,
    pub created_by: Option<Uuid>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The user the key acts for (stamped on its usage); `None`: no owner.
    pub user_id: Option<Uuid>,
}

/// Tenant rate-limit override row.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = tenant_rate_limits, treat_none_as_null = true)]
pub struct TenantRateLimits {
    pub tenant_id: Uuid,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub parallel_requests: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// Tenant budget override row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = tenant_budgets, treat_none_as_null = true)]
pub struct TenantBudget {
    pub tenant_id: Uuid,
    pub budget_micro_usd: i64,
    pub warning_threshold: f64,
    pub refresh_schedule: String,
    pub alert_emails: Vec<String>,
    pub alert_webhooks: Vec<String>,
    pub alert_cooldown_secs: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// The persisted global default rate limits (one row, `id` always true).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = rate_limit_defaults)]
pub struct RateLimitDefaultsRow {
    pub id: bool,
    pub requests_per_minute: i64,
    pub tokens_per_minute: i64,
    pub parallel_requests_key: i64,
    pub parallel_requests_tenant: i64,
    pub updated_at: DateTime<Utc>,
}

/// The persisted default budget (one row, `id` always true).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = budget_defaults)]
pub struct BudgetDefaultRow {
    pub id: bool,
    pub budget_micro_usd: i64,
    pub warning_threshold: f64,
    pub refresh_schedule: String,
    pub updated_at: DateTime<Utc>,
}

/// A persisted catalog deployment.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = model_deployments)]
pub struct ModelDeployment {
    pub id: Uuid,
    pub alias: String,
    pub spec: serde_json::Value,
    pub credential: Option<Vec<u8>>,
    pub credential_key_version: Option<i32>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A refresh token row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub realm: String,
    pub token_hash: Vec<u8>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// An audit entry as stored.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_email: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub request_id: String,
    pub ip: Option<String>,
}

/// A new audit entry.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewAuditEntry {
    pub actor_user_id: Option<Uuid>,
    pub actor_email: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<Uuid>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: String,
    pub ip: Option<String>,
}

/// A stored request (one usage event).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = requests)]
pub struct RequestRecord {
    pub event_id: Uuid,
    pub request_id: String,
    pub started_at: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub alias: Option<String>,
    pub provider: Option<String>,
    pub deployment: Option<String>,
    pub endpoint: String,
    pub status: i32,
    pub error_code: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub images: i64,
    pub cost_micro_usd: i64,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub stream: bool,
    pub usage_estimated: bool,
    pub schema_version: i32,
    pub ingested_at: DateTime<Utc>,
    /// The batch whose line the request was.
    pub batch_id: Option<String>,
}

/// A request to store (`ingested_at` is set by the database).
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = requests)]
pub struct NewRequestRecord {
    pub event_id: Uuid,
    pub request_id: String,
    pub started_at: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub alias: Option<String>,
    pub provider: Option<String>,
    pub deployment: Option<String>,
    pub endpoint: String,
    pub status: i32,
    pub error_code: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub images: i64,
    pub cost_micro_usd: i64,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub stream: bool,
    pub usage_estimated: bool,
    pub schema_version: i32,
    /// The batch whose line the request was (`UsageEvent::batch_id`).
    pub batch_id: Option<String>,
}

/// A parked usage stream entry.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = usage_dead_letters)]
pub struct DeadLetter {
    pub id: i64,
    pub stream: String,
    pub entry_id: String,
    pub payload: Vec<u8>,
    pub error: String,
    pub received_at: DateTime<Utc>,
}

/// A usage stream entry to park.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = usage_dead_letters)]
pub struct NewDeadLetter {
    pub stream: String,
    pub entry_id: String,
    pub payload: Vec<u8>,
    pub error: String,
}

/// A recorded budget alert delivery attempt.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = budget_alert_events)]
pub struct AlertEvent {
    pub id: i64,
    pub delivery_id: Uuid,
    pub tenant_id: Uuid,
    pub key_id: Option<Uuid>,
    pub level: String,
    pub window_label: String,
    pub channel: String,
    pub target: String,
    pub attempt: i32,
    pub outcome: String,
    pub error: Option<String>,
    pub spend_micro_usd: i64,
    pub limit_micro_usd: i64,
    pub created_at: DateTime<Utc>,
}

/// A delivery attempt to record (`created_at` is the evaluator's clock, so cooldowns and
/// windows are judged on one time line).
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = budget_alert_events)]
pub struct NewAlertEvent {
    pub delivery_id: Uuid,
    pub tenant_id: Uuid,
    pub key_id: Option<Uuid>,
    pub level: String,
    pub window_label: String,
    pub channel: String,
    pub target: String,
    pub attempt: i32,
    pub outcome: String,
    pub error: Option<String>,
    pub spend_micro_usd: i64,
    pub limit_micro_usd: i64,
    pub created_at: DateTime<Utc>,
}
