//! The snapshot: everything a data plane needs to serve `/v1`, as versioned serde data.
//!
//! The control plane builds it from Postgres plus the static catalog and publishes it; in
//! standalone mode the data plane builds it from its config file with [`Snapshot::from_config`]
//! (`snapshot/from_config.rs`).
//! Readers are tolerant (unknown fields are ignored, new optional fields default) because the
//! planes roll out at different times; `schema_version` changes only for breaking changes and
//! every published version keeps a parsing fixture (`shared/tests/fixtures/`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{KeyStatus, ModelType, RedisFailMode, TenantStatus};
use crate::endpoint::Endpoint;
use crate::keys::KeyDigest;
use crate::money::{MicroUsd, Pricing};
use crate::provider::ProviderKind;
use crate::routing::RoutingPolicy;
use crate::secret::Secret;

/// The current schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// Default base URL of `provider: openai`.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Base URL of `provider: anthropic` entries that name no `endpoint` (the Messages API is
/// `POST <base>/v1/messages`).
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// A complete, self-contained view for the data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Breaking-change counter of this schema ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Monotonic version: a data plane never replaces a snapshot with an older one.
    pub version: u64,
    /// When it was built, Unix milliseconds.
    pub generated_at_ms: i64,
    /// Tenants.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// API keys (hashes only).
    #[serde(default)]
    pub keys: Vec<ApiKey>,
    /// Model catalog.
    #[serde(default)]
    pub models: Vec<ModelAlias>,
    /// Global default limits.
    #[serde(default)]
    pub rate_limits: RateLimitDefaults,
    /// Global default budget (`None` = no budget).
    #[serde(default)]
    pub budget_default: Option<BudgetPolicy>,
    /// IANA timezone of budget windows.
    #[serde(default = "utc")]
    pub reporting_timezone: String,
    /// [`KeyHasher::check_value`](crate::keys::KeyHasher::check_value) of the pepper the key
    /// digests were made with; a data plane whose pepper differs refuses the snapshot
    /// (cluster mode). `None` in standalone mode.
    #[serde(default)]
    pub key_check: Option<String>,
    /// Per-alias caps over all tenants (`rate_limits.models`); `None` fields are uncapped.
    #[serde(default)]
    pub model_limits: BTreeMap<String, Limits>,
    /// Data planes alive when the snapshot was built (at least 1): while Redis is
    /// unreachable each enforces limit ÷ this.
    #[serde(default = "one")]
    pub live_dataplanes: u32,
    /// What to do while Redis is unreachable (`rate_limits.on_redis_error`).
    #[serde(default)]
    pub on_redis_error: RedisFailMode,
    /// Routing strategy, failover attempts, per-alias timeouts, breaker and health checks
    /// (`routing.*`, `health.*`).
    #[serde(default)]
    pub routing: RoutingPolicy,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Stable id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Active or suspended.
    #[serde(default)]
    pub status: TenantStatus,
    /// Aliases the tenant may use; `None` = all.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Tenant-level limits (unset fields inherit the defaults).
    #[serde(default)]
    pub limits: Limits,
    /// Tenant budget (`None` = the default budget).
    #[serde(default)]
    pub budget: Option<BudgetPolicy>,
}

/// An API key, by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Stable id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Public prefix.
    pub prefix: String,
    /// HMAC-SHA256 of the full key.
    pub digest: KeyDigest,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Status.
    #[serde(default)]
    pub status: KeyStatus,
    /// Expiry, Unix milliseconds.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    /// Aliases the key may use (within the tenant's); `None` = the tenant's.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Key-level limits (never above the tenant's).
    #[serde(default)]
    pub limits: Limits,
    /// Key budget.
    #[serde(default)]
    pub budget: Option<BudgetPolicy>,
    /// The user the key acts for, stamped on its usage events (`UsageEvent::user_id`);
    /// `None`: no owner (always in standalone mode). Absent from older snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

/// Rate limits; `None` inherits, `Some(0)` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Concurrent requests.
    #[serde(default)]
    pub parallel_requests: Option<u64>,
}

/// Global default limits (`0` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitDefaults {
    /// Requests per minute per key.
    pub requests_per_minute: u64,
    /// Tokens per minute per key.
    pub tokens_per_minute: u64,
    /// Concurrent requests per key.
    pub parallel_requests_key: u64,
    /// Concurrent requests per tenant.
    pub parallel_requests_tenant: u64,
    /// Completion tokens assumed for reservations when neither the request nor the model
    /// says (`rate_limits.default_max_tokens`).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
}

fn default_max_tokens() -> u64 {
    4096
}

impl Default for RateLimitDefaults {
    fn default() -> Self {
        Self {
            requests_per_minute: 0,
            tokens_per_minute: 0,
            parallel_requests_key: 0,
            parallel_requests_tenant: 0,
            default_max_tokens: default_max_tokens(),
        }
    }
}

fn one() -> u32 {
    1
}

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    /// From the 1st of the month, 00:00 in the reporting timezone.
    CalendarMonth,
    /// From Monday 00:00 in the reporting timezone.
    Weekly,
    /// The last N days.
    RollingDays(u16),
}

impl BudgetWindow {
    /// Parses `calendar_month`, `weekly` or `rolling_<N>d` (1 ≤ N ≤ 366).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "calendar_month" => Ok(Self::CalendarMonth),
            "weekly" => Ok(Self::Weekly),
            other => other
                .strip_prefix("rolling_")
                .and_then(|rest| rest.strip_suffix('d'))
                .and_then(|days| days.parse::<u16>().ok())
                .filter(|days| (1..=366).contains(days))
                .map(Self::RollingDays)
                .ok_or_else(|| {
                    format!("`{text}` is not a budget window; use `calendar_month`, `weekly` or `rolling_<N>d` (e.g. `rolling_7d`)")
                }),
        }
    }

    /// The config spelling.
    pub fn as_string(&self) -> String {
        match self {
            Self::CalendarMonth => "calendar_month".to_owned(),
            Self::Weekly => "weekly".to_owned(),
            Self::RollingDays(days) => format!("rolling_{days}d"),
        }
    }
}

impl Serialize for BudgetWindow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for BudgetWindow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A USD budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetPolicy {
    /// Limit per window, micro-USD.
    pub limit_micro_usd: MicroUsd,
    /// Fraction of the limit where the warning state starts.
    pub warning_threshold: f64,
    /// Window.
    pub window: BudgetWindow,
}

/// A model alias and its deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAlias {
    /// The name clients send.
    pub alias: String,
    /// What it serves.
    #[serde(default)]
    pub model_type: ModelType,
    /// Context window.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Largest completion.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Modalities.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Accepts tools.
    #[serde(default)]
    pub supports_tools: bool,
    /// Deployments, in catalog order.
    pub deployments: Vec<Deployment>,
}

/// One upstream target of an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Stable id within the snapshot, e.g. `gpt-4o#0`.
    pub id: String,
    /// Provider kind.
    pub provider: ProviderKind,
    /// Model name at the provider.
    pub provider_model: String,
    /// Base URL (absent for `mock`).
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// Provider deployment name.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Credential.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// API version.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Routing weight within its priority group.
    pub weight: u32,
    /// Priority group (lowest first).
    #[serde(default)]
    pub priority: u32,
    /// Active health checks on.
    #[serde(default)]
    pub health_check: bool,
    /// Routed to or not.
    pub enabled: bool,
    /// Prices.
    pub pricing: Pricing,
    /// Provider-specific settings.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Bedrock: a static AWS access key (SigV4), resolved from the entry or `providers.*`
    /// (see [`crate::bedrock`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_keys: Option<crate::bedrock::AwsKeys>,
}

mod from_config;

pub use from_config::{deployment_from_entry, model_limits};

#[cfg(test)]
mod tests;
