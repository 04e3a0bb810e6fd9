//! [`RuntimeSnapshot`]: the indexed form of a snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono_tz::Tz;
use omg_shared::config::{ModelType, RedisFailMode, TenantStatus};
use omg_shared::keys::KeyHasher;
use omg_shared::mock::MockSettings;
use omg_shared::provider::{Operation, ProviderKind};
use omg_shared::routing::{AliasPolicy, RoutingPolicy};
use omg_shared::snapshot::{
    ApiKey, BudgetPolicy, Deployment, Limits, RateLimitDefaults, Snapshot, Tenant, SCHEMA_VERSION,
};
use uuid::Uuid;

use crate::credentials;
use crate::providers::{adapter_for, ProviderAdapter};
use crate::routing::{DeploymentHealth, HealthRegistry};

/// A tenant with its status.
#[derive(Debug)]
pub struct TenantEntry {
    /// The tenant.
    pub tenant: Tenant,
}

impl TenantEntry {
    /// Whether requests are refused.
    pub fn suspended(&self) -> bool {
        self.tenant.status == TenantStatus::Suspended
    }
}

/// A key with its tenant and effective allowlist.
#[derive(Debug)]
pub struct KeyEntry {
    /// The key.
    pub key: ApiKey,
    /// Its tenant.
    pub tenant: Arc<TenantEntry>,
    /// Aliases allowed by both tenant and key; `None` = every alias.
    pub allowed: Option<HashSet<String>>,
}

impl KeyEntry {
    /// Whether the key may use an alias.
    pub fn may_use(&self, alias: &str) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|allowed| allowed.contains(alias))
    }
}

/// One enabled deployment, ready to route to.
#[derive(Debug)]
pub struct DeploymentEntry {
    /// The deployment.
    pub deployment: Deployment,
    /// Parsed `mock_*` settings when the provider is `mock`.
    pub mock: Option<MockSettings>,
    /// The provider adapter (`None` for `mock`, which answers in process).
    pub adapter: Option<Arc<dyn ProviderAdapter>>,
    /// Its breaker, load and check results on this data plane (kept across snapshots).
    pub health: Arc<DeploymentHealth>,
}

/// An alias with its enabled deployments.
#[derive(Debug)]
pub struct AliasEntry {
    /// Alias name.
    pub alias: String,
    /// What it serves.
    pub model_type: ModelType,
    /// Enabled deployments (never empty), by priority (catalog order within one).
    pub deployments: Vec<Arc<DeploymentEntry>>,
    /// Strategy, attempts and timeout overrides (`routing.*`).
    pub policy: AliasPolicy,
    /// Largest completion, used as the default `max_tokens` estimate.
    pub max_output_tokens: Option<u64>,
    /// Largest prompt plus completion: caps the prompt a reservation counts.
    pub context_window: Option<u64>,
}

impl AliasEntry {
    /// The `owned_by` shown in `/v1/models`: the first deployment's provider.
    pub fn owned_by(&self) -> &'static str {
        self.deployments
            .first()
            .map_or("open-model-gateway", |d| d.deployment.provider.as_str())
    }

    /// What the alias can serve, for `/v1/models`: the operations of its type that at least
    /// one deployment's provider implements (`chat`, `stream`, `completions`, `embeddings`).
    pub fn capabilities(&self) -> Vec<Operation> {
        let of_type: &[Operation] = match self.model_type {
            ModelType::Llm => &[Operation::Chat, Operation::Stream, Operation::Completions],
            ModelType::Embedding => &[Operation::Embeddings],
            ModelType::Image => &[
                Operation::ImagesGenerate,
                Operation::ImagesEdit,
                Operation::ImagesVariation,
            ],
            ModelType::AudioSpeech | ModelType::AudioTranscription => &[Operation::Audio],
            ModelType::Moderation => &[],
        };
        of_type
            .iter()
            .copied()
            .filter(|op| {
                self.deployments
                    .iter()
                    .any(|d| d.deployment.provider.supports(*op))
            })
            .collect()
    }

    /// The `/v1/models` object of the alias (OpenAI's fields, plus `capabilities`).
    pub fn model_object(&self, created: i64) -> serde_json::Value {
        serde_json::json!({
            "id": self.alias,
            "object": "model",
            "created": created,
            "owned_by": self.owned_by(),
            "capabilities": self.capabilities(),
        })
    }
}

/// The indexed snapshot the request path reads.
#[derive(Debug)]
pub struct RuntimeSnapshot {
    /// Snapshot version.
    pub version: u64,
    /// When the snapshot was generated (Unix ms).
    pub generated_at_ms: i64,
    /// Hasher for presented keys (same pepper as the stored digests).
    pub hasher: KeyHasher,
    keys: HashMap<String, Arc<KeyEntry>>,
    /// The same keys by id (batch lines name their key by id).
    keys_by_id: HashMap<Uuid, Arc<KeyEntry>>,
    models: HashMap<String, Arc<AliasEntry>>,
    /// Alias names, sorted, for listings.
    model_names: Vec<String>,
    tenants: HashMap<Uuid, Arc<TenantEntry>>,
    /// Limits and budgets beyond tenants and keys.
    pub governance: Governance,
    /// Routing defaults and the breaker / health-check policy.
    pub routing: RoutingPolicy,
}

/// The snapshot's limit and budget settings, parsed once.
#[derive(Debug, Clone)]
pub struct Governance {
    /// Global defaults.
    pub rate_limits: RateLimitDefaults,
    /// Default tenant budget.
    pub budget_default: Option<BudgetPolicy>,
    /// Per-alias caps.
    pub model_limits: BTreeMap<String, Limits>,
    /// Reporting timezone of budget windows.
    pub timezone: Tz,
    /// Live data planes (≥ 1): the divisor of the local share.
    pub live_dataplanes: u32,
    /// Behaviour while Redis is unreachable.
    pub on_redis_error: RedisFailMode,
}

impl RuntimeSnapshot {
    /// Validates and indexes a snapshot. Refuses unknown schema versions, keys of unknown
    /// tenants, duplicate prefixes and deployments of provider kinds this build cannot serve.
    pub fn build(snapshot: Snapshot, hasher: KeyHasher) -> Result<Self, String> {
        if snapshot.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "snapshot schema version {} is not supported by this data plane (expects {SCHEMA_VERSION})",
                snapshot.schema_version
            ));
        }
        let tenants: HashMap<Uuid, Arc<TenantEntry>> = snapshot
            .tenants
            .into_iter()
            .map(|tenant| (tenant.id, Arc::new(TenantEntry { tenant })))
            .collect();

        let mut models = HashMap::new();
        for model in snapshot.models {
            let mut deployments = Vec::new();
            for deployment in model.deployments.into_iter().filter(|d| d.enabled) {
                deployments.push(deployment_entry(deployment)?);
            }
            if deployments.is_empty() {
                continue;
            }
            deployments.sort_by_key(|d| d.deployment.priority);
            let policy = snapshot.routing.for_alias(&model.alias);
            models.insert(
                model.alias.clone(),
                Arc::new(AliasEntry {
                    alias: model.alias,
                    model_type: model.model_type,
                    deployments,
                    policy,
                    max_output_tokens: model.max_output_tokens,
                    context_window: model.context_window,
                }),
            );
        }
        let mut model_names: Vec<String> = models.keys().cloned().collect();
        model_names.sort();

        let keys = key_entries(snapshot.keys, &tenants)?;
        let keys_by_id = keys
            .values()
            .map(|entry| (entry.key.id, entry.clone()))
            .collect();
        let timezone = omg_shared::budget::parse_timezone(&snapshot.reporting_timezone)?;
        Ok(Self {
            version: snapshot.version,
            generated_at_ms: snapshot.generated_at_ms,
            hasher,
            keys,
            keys_by_id,
            models,
            model_names,
            tenants,
            governance: Governance {
                rate_limits: snapshot.rate_limits,
                budget_default: snapshot.budget_default,
                model_limits: snapshot.model_limits,
                timezone,
                live_dataplanes: snapshot.live_dataplanes.max(1),
                on_redis_error: snapshot.on_redis_error,
            },
            routing: snapshot.routing,
        })
    }

    /// The key with this prefix.
    pub fn key(&self, prefix: &str) -> Option<&Arc<KeyEntry>> {
        self.keys.get(prefix)
    }

    /// The key with this id.
    pub fn key_by_id(&self, id: Uuid) -> Option<&Arc<KeyEntry>> {
        self.keys_by_id.get(&id)
    }

    /// The alias, if it has an enabled deployment.
    pub fn model(&self, alias: &str) -> Option<&Arc<AliasEntry>> {
        self.models.get(alias)
    }

    /// Aliases a key may use, sorted.
    pub fn models_for<'a>(
        &'a self,
        key: &'a KeyEntry,
    ) -> impl Iterator<Item = &'a Arc<AliasEntry>> + 'a {
        self.model_names
            .iter()
            .filter(move |alias| key.may_use(alias))
            .filter_map(move |alias| self.models.get(alias))
    }

    /// Every enabled deployment, by alias name then priority.
    pub fn deployments(&self) -> impl Iterator<Item = &Arc<DeploymentEntry>> + '_ {
        self.model_names
            .iter()
            .filter_map(|alias| self.models.get(alias))
            .flat_map(|alias| alias.deployments.iter())
    }

    /// Whether some request may reserve tokens or money before it goes upstream: a token
    /// limit or a budget anywhere (the prompt must then be counted).
    pub fn reserves_tokens(&self) -> bool {
        let governance = &self.governance;
        let budget =
            |policy: &Option<BudgetPolicy>| policy.as_ref().is_some_and(|p| p.limit_micro_usd > 0);
        let tpm = |limits: &Limits| limits.tokens_per_minute.is_some_and(|tpm| tpm > 0);
        governance.rate_limits.tokens_per_minute > 0
            || budget(&governance.budget_default)
            || governance.model_limits.values().any(tpm)
            || self
                .tenants
                .values()
                .any(|t| tpm(&t.tenant.limits) || budget(&t.tenant.budget))
            || self
                .keys
                .values()
                .any(|k| tpm(&k.key.limits) || budget(&k.key.budget))
    }

    /// The provider model of every enabled deployment.
    pub fn provider_models(&self) -> impl Iterator<Item = &str> + '_ {
        self.deployments()
            .map(|entry| entry.deployment.provider_model.as_str())
    }

    /// Number of keys and tenants, for health output.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.tenants.len(), self.keys.len(), self.models.len())
    }
}

/// One enabled deployment, checked (provider served, endpoint, mock settings) and given its
/// adapter, built with the credential resolved for it, and its health entry.
fn deployment_entry(deployment: Deployment) -> Result<Arc<DeploymentEntry>, String> {
    if !deployment.provider.is_supported() {
        return Err(format!(
            "deployment `{}` uses provider `{}`, which this data plane cannot serve",
            deployment.id, deployment.provider
        ));
    }
    let mock = if deployment.provider == ProviderKind::Mock {
        Some(
            MockSettings::from_metadata(&deployment.metadata).map_err(|(key, message)| {
                format!(
                    "deployment `{}`: metadata `{key}`: {message}",
                    deployment.id
                )
            })?,
        )
    } else {
        None
    };
    if deployment.provider != ProviderKind::Mock && deployment.endpoint.is_none() {
        return Err(format!("deployment `{}` has no endpoint", deployment.id));
    }
    let adapter = credentials::for_deployment(&deployment, &credentials::Global)
        .and_then(|credential| adapter_for(&deployment, credential))
        .map_err(|message| format!("deployment `{}`: {message}", deployment.id))?;
    let health = HealthRegistry::global().entry(&deployment);
    Ok(Arc::new(DeploymentEntry {
        deployment,
        mock,
        adapter,
        health,
    }))
}

/// The keys by prefix, each with its tenant and the aliases it may use (the tenant's list
/// and the key's, intersected). Refuses keys of unknown tenants and duplicate prefixes.
fn key_entries(
    snapshot_keys: Vec<ApiKey>,
    tenants: &HashMap<Uuid, Arc<TenantEntry>>,
) -> Result<HashMap<String, Arc<KeyEntry>>, String> {
    let mut keys = HashMap::with_capacity(snapshot_keys.len());
    for key in snapshot_keys {
        let tenant = tenants.get(&key.tenant_id).cloned().ok_or_else(|| {
            format!(
                "key `{}` belongs to unknown tenant {}",
                key.prefix, key.tenant_id
            )
        })?;
        let allowed = match (&tenant.tenant.allowed_models, &key.allowed_models) {
            (None, None) => None,
            (Some(list), None) | (None, Some(list)) => Some(list.iter().cloned().collect()),
            (Some(tenant_list), Some(key_list)) => Some(
                key_list
                    .iter()
                    .filter(|alias| tenant_list.contains(alias))
                    .cloned()
                    .collect(),
            ),
        };
        let prefix = key.prefix.clone();
        if keys
            .insert(
                prefix.clone(),
                Arc::new(KeyEntry {
                    key,
                    tenant,
                    allowed,
                }),
            )
            .is_some()
        {
            return Err(format!("two keys share the prefix `{prefix}`"));
        }
    }
    Ok(keys)
}
