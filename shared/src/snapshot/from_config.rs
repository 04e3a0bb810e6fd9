//! The standalone builder: a [`Snapshot`] made from the config file alone (no database),
//! with ids derived from names, and each catalog entry resolved into a [`Deployment`].

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    ApiKey, BudgetPolicy, BudgetWindow, Deployment, Limits, ModelAlias, RateLimitDefaults,
    Snapshot, Tenant, ANTHROPIC_DEFAULT_BASE_URL, OPENAI_DEFAULT_BASE_URL, SCHEMA_VERSION,
};
use crate::bedrock::AwsKeys;
use crate::config::{
    BootstrapApiKey, BootstrapTenantBudget, CatalogEntry, ConfigError, ConfigErrors, GatewayConfig,
    ProvidersConfig, RateLimitOverride, RateLimitsConfig,
};
use crate::endpoint::Endpoint;
use crate::keys::{format_key, KeyHasher};
use crate::money::{usd_to_micros, PricePer1k, PricePerImage, Pricing};
use crate::provider::ProviderKind;
use crate::routing::RoutingPolicy;
use crate::secret::Secret;

/// Namespace for ids derived from names in standalone mode (stable across reloads).
const STANDALONE_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6700_5d1b_4c4e_9a3f_0f1e_2d3c_4b5a);

/// A catalog entry's problem: the entry's field, and the message.
type FieldError = (&'static str, String);

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
        let default_window = BudgetWindow::parse(&config.budgets.refresh_schedule)
            .unwrap_or(BudgetWindow::CalendarMonth);
        let tenants = tenants(config, default_window, &mut errors);
        let keys = keys(config, hasher, default_window, &mut errors);
        let models = models(config, &mut errors);
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
            rate_limits: rate_limit_defaults(&config.rate_limits),
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

/// The id of the tenant named `name`.
fn tenant_id(name: &str) -> Uuid {
    Uuid::new_v5(&STANDALONE_NAMESPACE, format!("tenant:{name}").as_bytes())
}

/// A limits override as snapshot limits.
fn limits_of(limits: &RateLimitOverride) -> Limits {
    Limits {
        requests_per_minute: limits.requests_per_minute,
        tokens_per_minute: limits.tokens_per_minute,
        parallel_requests: limits.parallel_requests,
    }
}

/// `rate_limits.default_*` as snapshot defaults.
fn rate_limit_defaults(limits: &RateLimitsConfig) -> RateLimitDefaults {
    RateLimitDefaults {
        requests_per_minute: limits.default_requests_per_minute,
        tokens_per_minute: limits.default_tokens_per_minute,
        parallel_requests_key: limits.default_parallel_requests_key,
        parallel_requests_tenant: limits.default_parallel_requests_tenant,
        default_max_tokens: limits.default_max_tokens,
    }
}

/// `bootstrap.tenants`, with their `tenant_limits` and `tenant_budgets`.
fn tenants(
    config: &GatewayConfig,
    default_window: BudgetWindow,
    errors: &mut Vec<ConfigError>,
) -> Vec<Tenant> {
    let bootstrap = &config.bootstrap;
    let mut tenants: Vec<Tenant> = bootstrap
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
    for entry in &bootstrap.tenant_limits {
        if let Some(tenant) = tenants.iter_mut().find(|t| t.name == entry.tenant) {
            tenant.limits = limits_of(&entry.limits);
        }
    }
    for (index, budget) in bootstrap.tenant_budgets.iter().enumerate() {
        let Some(tenant) = tenants.iter_mut().find(|t| t.name == budget.tenant) else {
            continue;
        };
        match tenant_budget(config, budget, default_window) {
            Ok(policy) => tenant.budget = Some(policy),
            Err(message) => errors.push(ConfigError::new(
                format!("bootstrap.tenant_budgets[{index}].budget_usd"),
                message,
            )),
        }
    }
    tenants
}

/// One tenant's budget; its window and threshold default to `budgets.*`.
fn tenant_budget(
    config: &GatewayConfig,
    budget: &BootstrapTenantBudget,
    default_window: BudgetWindow,
) -> Result<BudgetPolicy, String> {
    let window = match &budget.refresh_schedule {
        Some(text) => BudgetWindow::parse(text).unwrap_or(default_window),
        None => default_window,
    };
    Ok(BudgetPolicy {
        limit_micro_usd: usd_to_micros(budget.budget_usd)?,
        warning_threshold: budget
            .warning_threshold
            .unwrap_or(config.budgets.warning_threshold_perc),
        window,
    })
}

/// `bootstrap.api_keys`; each needs a prefix and a secret here.
fn keys(
    config: &GatewayConfig,
    hasher: &KeyHasher,
    default_window: BudgetWindow,
    errors: &mut Vec<ConfigError>,
) -> Vec<ApiKey> {
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
        let budget = match key_budget(config, key, default_window) {
            Ok(budget) => budget,
            Err(message) => {
                errors.push(ConfigError::new(format!("{path}.budget_usd"), message));
                None
            }
        };
        keys.push(ApiKey {
            id: Uuid::new_v5(&STANDALONE_NAMESPACE, format!("key:{prefix}").as_bytes()),
            tenant_id: tenant_id(&key.tenant),
            prefix: prefix.clone(),
            digest: hasher.digest(&format_key(prefix, secret.expose())),
            name: key.name.clone(),
            status: key.status,
            expires_at_ms: key.expires_at.as_deref().and_then(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|at| at.timestamp_millis())
            }),
            allowed_models: key.allowed_models.clone(),
            limits: key.rate_limit.as_ref().map(limits_of).unwrap_or_default(),
            budget,
            // Standalone keys have no owner: there are no users without a control plane.
            user_id: None,
        });
    }
    keys
}

/// One key's budget, if it has one; its window is `budgets.refresh_schedule`.
fn key_budget(
    config: &GatewayConfig,
    key: &BootstrapApiKey,
    default_window: BudgetWindow,
) -> Result<Option<BudgetPolicy>, String> {
    let Some(usd) = key.budget_usd else {
        return Ok(None);
    };
    Ok(Some(BudgetPolicy {
        limit_micro_usd: usd_to_micros(usd)?,
        warning_threshold: key
            .warning_threshold
            .unwrap_or(config.budgets.warning_threshold_perc),
        window: default_window,
    }))
}

/// `model_catalog`, grouped by alias in the order aliases first appear.
fn models(config: &GatewayConfig, errors: &mut Vec<ConfigError>) -> Vec<ModelAlias> {
    let mut models: Vec<ModelAlias> = Vec::new();
    for (index, entry) in config.model_catalog.iter().enumerate() {
        let ordinal = models
            .iter()
            .find(|model| model.alias == entry.alias)
            .map_or(0, |model| model.deployments.len());
        let deployment = match deployment_from_entry(config, entry, ordinal) {
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
    models
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

/// An entry's provider resolved: where it is reached, with which key, and what the provider
/// settled beyond the entry's own fields.
struct Reach {
    /// The base URL, not yet parsed.
    endpoint: Option<String>,
    api_key: Option<Secret>,
    /// Bedrock's resolved region, Vertex's location (else the entry's `region`).
    region: Option<String>,
    /// Vertex's project, written into the deployment's metadata.
    project: Option<String>,
    /// Bedrock's static access key.
    aws_keys: Option<AwsKeys>,
}

/// Resolves the entry's base URL and key, each from the entry, else `providers.*`, else
/// the provider's default.
fn reach(entry: &CatalogEntry, providers: &ProvidersConfig) -> Result<Reach, FieldError> {
    let endpoint = |fallback: Option<&String>| entry.endpoint.clone().or(fallback.cloned());
    let key = |fallback: &Option<Secret>| entry.api_key.clone().or_else(|| fallback.clone());
    let (endpoint, api_key) = match entry.provider {
        ProviderKind::Bedrock => return bedrock_reach(entry, providers),
        ProviderKind::Vertex => return vertex_reach(entry, providers),
        ProviderKind::OpenAi => (
            Some(
                endpoint(providers.openai_base_url.as_ref())
                    .unwrap_or_else(|| OPENAI_DEFAULT_BASE_URL.to_owned()),
            ),
            key(&providers.openai_key),
        ),
        ProviderKind::OpenAiCompatible => (
            endpoint(providers.openai_compatible.base_url.as_ref()),
            key(&providers.openai_compatible.api_key),
        ),
        ProviderKind::Azure => (
            endpoint(providers.azure_openai_endpoint.as_ref()),
            key(&providers.azure_openai_key),
        ),
        ProviderKind::Anthropic => (
            Some(endpoint(None).unwrap_or_else(|| ANTHROPIC_DEFAULT_BASE_URL.to_owned())),
            key(&providers.anthropic_key),
        ),
        ProviderKind::HuggingFace => (
            Some(endpoint(None).unwrap_or_else(|| crate::huggingface::DEFAULT_BASE_URL.to_owned())),
            key(&providers.hugging_face_token),
        ),
        ProviderKind::Mock => (endpoint(None), key(&None)),
    };
    Ok(Reach {
        endpoint,
        api_key,
        region: entry.region.clone(),
        project: None,
        aws_keys: None,
    })
}

/// A `bedrock` entry's region, endpoint and configured credential.
fn bedrock_reach(entry: &CatalogEntry, providers: &ProvidersConfig) -> Result<Reach, FieldError> {
    let resolved = crate::bedrock::resolve_entry(entry, providers)?;
    Ok(Reach {
        endpoint: Some(resolved.endpoint),
        api_key: resolved.api_key,
        region: Some(resolved.region),
        project: None,
        aws_keys: resolved.aws_keys,
    })
}

/// A `vertex` entry's endpoint, credential, project and location.
fn vertex_reach(entry: &CatalogEntry, providers: &ProvidersConfig) -> Result<Reach, FieldError> {
    let resolved = crate::vertex::resolve_entry(entry, providers)?;
    Ok(Reach {
        endpoint: Some(resolved.endpoint),
        api_key: Some(resolved.credential),
        region: resolved.location.or_else(|| entry.region.clone()),
        project: resolved.project,
        aws_keys: None,
    })
}

/// Resolves one catalog entry into a deployment: provider defaults, base URL, prices.
/// Errors name the entry's field.
pub fn deployment_from_entry(
    config: &GatewayConfig,
    entry: &CatalogEntry,
    ordinal: usize,
) -> Result<Deployment, FieldError> {
    let providers = &config.providers;
    let reach = reach(entry, providers)?;
    if entry.provider == ProviderKind::OpenAiCompatible && reach.endpoint.is_none() {
        return Err((
            "endpoint",
            "an `openai-compatible` entry needs `endpoint` (base URL including `/v1`) or `providers.openai_compatible.base_url`".to_owned(),
        ));
    }
    let api_version = match entry.provider {
        ProviderKind::Azure => Some(crate::azure::resolve_entry(
            entry,
            providers,
            reach.endpoint.is_some(),
            reach.api_key.as_ref().is_some_and(|key| !key.is_empty()),
        )?),
        _ => entry.api_version.clone(),
    };
    let endpoint = reach
        .endpoint
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
    let mut metadata = entry.metadata.clone();
    if let Some(project) = reach.project {
        metadata.insert(crate::vertex::PROJECT_METADATA_KEY.to_owned(), project);
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
        api_key: reach.api_key.filter(|key| !key.is_empty()),
        api_version,
        region: reach.region,
        weight: entry.weight,
        priority: entry.priority,
        health_check: entry
            .health_check
            .unwrap_or_else(|| entry.provider.checked_by_default()),
        enabled: entry.enabled,
        pricing: pricing(entry)?,
        metadata,
        aws_keys: reach.aws_keys,
    })
}

/// The entry's prices, per 1k tokens and per image.
fn pricing(entry: &CatalogEntry) -> Result<Pricing, FieldError> {
    Ok(Pricing {
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
    })
}
