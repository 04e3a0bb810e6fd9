//! The snapshot: everything a data plane needs to serve `/v1`, as versioned serde data.
//!
//! The control plane builds it from Postgres plus the static catalog and publishes it; in
//! standalone mode the data plane builds it from its config file with [`Snapshot::from_config`].
//! Readers are tolerant (unknown fields are ignored, new optional fields default) because the
//! planes roll out at different times; `schema_version` changes only for breaking changes and
//! every published version keeps a parsing fixture (`shared/tests/fixtures/`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{
    CatalogEntry, ConfigError, ConfigErrors, GatewayConfig, KeyStatus, ModelType, RateLimitsConfig,
    RedisFailMode, TenantStatus,
};
use crate::endpoint::Endpoint;
use crate::keys::{format_key, KeyDigest, KeyHasher};
use crate::money::{usd_to_micros, MicroUsd, PricePer1k, PricePerImage, Pricing};
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

/// Namespace for ids derived from names in standalone mode (stable across reloads).
const STANDALONE_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6700_5d1b_4c4e_9a3f_0f1e_2d3c_4b5a);

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
    /// [`KeyHasher::check_value`] of the pepper the key digests were made with; a data plane
    /// whose pepper differs refuses the snapshot (cluster mode). `None` in standalone mode.
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

impl Snapshot {
    /// Builds a standalone snapshot from a validated config: keys need their `prefix` and
    /// `secret` here (there is no database to issue them), ids derive from names.
    pub fn from_config(
        config: &GatewayConfig,
        hasher: &KeyHasher,
        version: u64,
        generated_at_ms: i64,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errors = Vec::new();
        let tenant_id =
            |name: &str| Uuid::new_v5(&STANDALONE_NAMESPACE, format!("tenant:{name}").as_bytes());

        let mut tenants: Vec<Tenant> = config
            .bootstrap
            .tenants
            .iter()
            .map(|tenant| Tenant {
                id: tenant_id(&tenant.name),
                name: tenant.name.clone(),
                status: tenant.status,
                allowed_models: tenant.allowed_models.clone(),
                limits: Limits::default(),
                budget: None,
            })
            .collect();
        for entry in &config.bootstrap.tenant_limits {
            if let Some(tenant) = tenants.iter_mut().find(|t| t.name == entry.tenant) {
                tenant.limits = Limits {
                    requests_per_minute: entry.limits.requests_per_minute,
                    tokens_per_minute: entry.limits.tokens_per_minute,
                    parallel_requests: entry.limits.parallel_requests,
                };
            }
        }
        let default_window = BudgetWindow::parse(&config.budgets.refresh_schedule)
            .unwrap_or(BudgetWindow::CalendarMonth);
        for (index, budget) in config.bootstrap.tenant_budgets.iter().enumerate() {
            let path = format!("bootstrap.tenant_budgets[{index}]");
            let Some(tenant) = tenants.iter_mut().find(|t| t.name == budget.tenant) else {
                continue;
            };
            let window = match &budget.refresh_schedule {
                Some(text) => BudgetWindow::parse(text).unwrap_or(default_window),
                None => default_window,
            };
            match usd_to_micros(budget.budget_usd) {
                Ok(limit) => {
                    tenant.budget = Some(BudgetPolicy {
                        limit_micro_usd: limit,
                        warning_threshold: budget
                            .warning_threshold
                            .unwrap_or(config.budgets.warning_threshold_perc),
                        window,
                    })
                }
                Err(message) => {
                    errors.push(ConfigError::new(format!("{path}.budget_usd"), message))
                }
            }
        }

        let mut keys = Vec::with_capacity(config.bootstrap.api_keys.len());
        for (index, key) in config.bootstrap.api_keys.iter().enumerate() {
            let path = format!("bootstrap.api_keys[{index}]");
            let (Some(prefix), Some(secret)) = (&key.prefix, &key.secret) else {
                errors.push(ConfigError::new(
                    path,
                    "standalone mode needs both `prefix` and `secret` (the key is `sk-<prefix>.<secret>`)",
                ));
                continue;
            };
            let expires_at_ms = key.expires_at.as_deref().and_then(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|at| at.timestamp_millis())
            });
            let budget = match key.budget_usd {
                Some(usd) => match usd_to_micros(usd) {
                    Ok(limit) => Some(BudgetPolicy {
                        limit_micro_usd: limit,
                        warning_threshold: key
                            .warning_threshold
                            .unwrap_or(config.budgets.warning_threshold_perc),
                        window: default_window,
                    }),
                    Err(message) => {
                        errors.push(ConfigError::new(format!("{path}.budget_usd"), message));
                        None
                    }
                },
                None => None,
            };
            let limits = key.rate_limit.map(|limit| Limits {
                requests_per_minute: limit.requests_per_minute,
                tokens_per_minute: limit.tokens_per_minute,
                parallel_requests: limit.parallel_requests,
            });
            keys.push(ApiKey {
                id: Uuid::new_v5(&STANDALONE_NAMESPACE, format!("key:{prefix}").as_bytes()),
                tenant_id: tenant_id(&key.tenant),
                prefix: prefix.clone(),
                digest: hasher.digest(&format_key(prefix, secret.expose())),
                name: key.name.clone(),
                status: key.status,
                expires_at_ms,
                allowed_models: key.allowed_models.clone(),
                limits: limits.unwrap_or_default(),
                budget,
            });
        }

        let mut models: Vec<ModelAlias> = Vec::new();
        for (index, entry) in config.model_catalog.iter().enumerate() {
            let deployment = match deployment_from_entry(
                config,
                entry,
                models
                    .iter()
                    .find(|m| m.alias == entry.alias)
                    .map_or(0, |m| m.deployments.len()),
            ) {
                Ok(deployment) => deployment,
                Err((field, message)) => {
                    errors.push(ConfigError::new(
                        format!("model_catalog[{index}].{field}"),
                        message,
                    ));
                    continue;
                }
            };
            match models.iter_mut().find(|model| model.alias == entry.alias) {
                Some(model) => model.deployments.push(deployment),
                None => models.push(ModelAlias {
                    alias: entry.alias.clone(),
                    model_type: entry.model_type,
                    context_window: entry.context_window,
                    max_output_tokens: entry.max_output_tokens,
                    modalities: entry.modalities.clone(),
                    supports_tools: entry.supports_tools,
                    deployments: vec![deployment],
                }),
            }
        }

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let budget_default = match usd_to_micros(config.budgets.default_usd) {
            Ok(0) | Err(_) => None,
            Ok(limit) => Some(BudgetPolicy {
                limit_micro_usd: limit,
                warning_threshold: config.budgets.warning_threshold_perc,
                window: default_window,
            }),
        };
        Ok(Snapshot {
            schema_version: SCHEMA_VERSION,
            version,
            generated_at_ms,
            tenants,
            keys,
            models,
            rate_limits: RateLimitDefaults {
                requests_per_minute: config.rate_limits.default_requests_per_minute,
                tokens_per_minute: config.rate_limits.default_tokens_per_minute,
                parallel_requests_key: config.rate_limits.default_parallel_requests_key,
                parallel_requests_tenant: config.rate_limits.default_parallel_requests_tenant,
                default_max_tokens: config.rate_limits.default_max_tokens,
            },
            budget_default,
            reporting_timezone: config.reporting.timezone.clone(),
            key_check: None,
            model_limits: model_limits(&config.rate_limits),
            live_dataplanes: 1,
            on_redis_error: config.rate_limits.on_redis_error,
            routing: RoutingPolicy::from_config(&config.routing, &config.health),
        })
    }
}

/// `rate_limits.models` as snapshot limits.
pub fn model_limits(config: &RateLimitsConfig) -> BTreeMap<String, Limits> {
    config
        .models
        .iter()
        .map(|(alias, caps)| {
            let limits = Limits {
                requests_per_minute: caps.requests_per_minute,
                tokens_per_minute: caps.tokens_per_minute,
                parallel_requests: None,
            };
            (alias.clone(), limits)
        })
        .collect()
}

/// Resolves one catalog entry into a deployment: provider defaults, base URL, prices.
/// Errors name the entry's field.
pub fn deployment_from_entry(
    config: &GatewayConfig,
    entry: &CatalogEntry,
    ordinal: usize,
) -> Result<Deployment, (&'static str, String)> {
    let providers = &config.providers;
    // Vertex: the resolved project and location (written into the deployment below).
    let mut vertex = None;
    let bedrock = match entry.provider {
        ProviderKind::Bedrock => Some(crate::bedrock::resolve_entry(entry, providers)?),
        _ => None,
    };
    let (endpoint_text, api_key) = match entry.provider {
        ProviderKind::OpenAi => (
            Some(
                entry
                    .endpoint
                    .clone()
                    .or_else(|| providers.openai_base_url.clone())
                    .unwrap_or_else(|| OPENAI_DEFAULT_BASE_URL.to_owned()),
            ),
            entry
                .api_key
                .clone()
                .or_else(|| providers.openai_key.clone()),
        ),
        ProviderKind::OpenAiCompatible => (
            entry
                .endpoint
                .clone()
                .or_else(|| providers.openai_compatible.base_url.clone()),
            entry
                .api_key
                .clone()
                .or_else(|| providers.openai_compatible.api_key.clone()),
        ),
        ProviderKind::Azure => (
            entry
                .endpoint
                .clone()
                .or_else(|| providers.azure_openai_endpoint.clone()),
            entry
                .api_key
                .clone()
                .or_else(|| providers.azure_openai_key.clone()),
        ),
        ProviderKind::Anthropic => (
            Some(
                entry
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| ANTHROPIC_DEFAULT_BASE_URL.to_owned()),
            ),
            entry
                .api_key
                .clone()
                .or_else(|| providers.anthropic_key.clone()),
        ),
        ProviderKind::HuggingFace => (
            Some(
                entry
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| crate::huggingface::DEFAULT_BASE_URL.to_owned()),
            ),
            entry
                .api_key
                .clone()
                .or_else(|| providers.hugging_face_token.clone()),
        ),
        ProviderKind::Bedrock => (
            bedrock.as_ref().map(|b| b.endpoint.clone()),
            bedrock.as_ref().and_then(|b| b.api_key.clone()),
        ),
        ProviderKind::Vertex => {
            let resolved = crate::vertex::resolve_entry(entry, providers)?;
            vertex = Some((resolved.project, resolved.location));
            (Some(resolved.endpoint), Some(resolved.credential))
        }
        ProviderKind::Mock => (entry.endpoint.clone(), entry.api_key.clone()),
    };
    if entry.provider == ProviderKind::OpenAiCompatible && endpoint_text.is_none() {
        return Err((
            "endpoint",
            "an `openai-compatible` entry needs `endpoint` (base URL including `/v1`) or `providers.openai_compatible.base_url`".to_owned(),
        ));
    }
    let api_version = match entry.provider {
        ProviderKind::Azure => Some(crate::azure::resolve_entry(
            entry,
            providers,
            endpoint_text.is_some(),
            api_key.as_ref().is_some_and(|key| !key.is_empty()),
        )?),
        _ => entry.api_version.clone(),
    };
    let endpoint = endpoint_text
        .as_deref()
        .map(Endpoint::parse)
        .transpose()
        .map_err(|message| ("endpoint", message))?;
    if entry.provider == ProviderKind::HuggingFace {
        let host = endpoint.as_ref().map_or("", |e| e.host.as_str());
        crate::huggingface::EmbeddingApi::from_metadata(&entry.metadata, host)
            .and_then(|_| crate::huggingface::truncate(&entry.metadata))
            .map_err(|message| ("metadata", message))?;
    }
    let pricing = Pricing {
        input: PricePer1k::from_usd(entry.price_input)
            .map_err(|message| ("price_input", message))?,
        output: PricePer1k::from_usd(entry.price_output)
            .map_err(|message| ("price_output", message))?,
        image: PricePerImage::from_usd(entry.price_per_image)
            .map_err(|message| ("price_per_image", message))?,
        cache_read: entry
            .price_cache_read
            .map(PricePer1k::from_usd)
            .transpose()
            .map_err(|message| ("price_cache_read", message))?,
        cache_write: entry
            .price_cache_write
            .map(PricePer1k::from_usd)
            .transpose()
            .map_err(|message| ("price_cache_write", message))?,
    };
    let mut metadata = entry.metadata.clone();
    let mut region = entry.region.clone();
    if let Some((project, location)) = vertex {
        if let Some(project) = project {
            metadata.insert(crate::vertex::PROJECT_METADATA_KEY.to_owned(), project);
        }
        region = location.or(region);
    }
    Ok(Deployment {
        id: format!("{}#{ordinal}", entry.alias),
        provider: entry.provider,
        provider_model: entry
            .provider_model
            .clone()
            .unwrap_or_else(|| entry.alias.clone()),
        endpoint,
        deployment: entry.deployment.clone(),
        api_key: api_key.filter(|key| !key.is_empty()),
        api_version,
        region: match &bedrock {
            Some(bedrock) => Some(bedrock.region.clone()),
            None => region,
        },
        weight: entry.weight,
        priority: entry.priority,
        health_check: entry
            .health_check
            .unwrap_or_else(|| entry.provider.checked_by_default()),
        enabled: entry.enabled,
        pricing,
        metadata,
        aws_keys: bedrock.and_then(|b| b.aws_keys),
    })
}

#[cfg(test)]
mod tests;
