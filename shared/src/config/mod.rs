//! The gateway config schema (`gateway.yaml`), shared by both planes.
//!
//! Key names follow the seeds' `router.yaml`. Every section rejects unknown keys, so a typo
//! is a start-up error naming the key's path, never a silently ignored setting. Each field's
//! doc comment is its reference documentation (`docs/configuration.md` mirrors it).
//! [`load_str`] parses, expands `${ENV_VAR}` references and validates with the data plane's
//! rules; [`load_layered`] also applies `ROUTER_*` environment overrides and picks the rules of
//! either plane ([`Mode`]); [`parse_dotenv`] reads `.env` files. The cross-field rules live in
//! `validate/`, one file per section.

mod cluster;
mod controlplane;
mod dotenv;
mod encryption;
mod env;
mod files;
mod load;
mod retention;
mod routing;
mod server;
mod validate;

pub use cluster::ClusterConfig;
pub use controlplane::{
    AdminConfig, DatabaseConfig, LocalAuthConfig, LoginThrottleConfig, RedisConfig, SameSite,
    SessionConfig,
};
pub use dotenv::parse_dotenv;
pub use env::NON_CONFIG_VARIABLES;
pub use files::{BatchesConfig, FileStorage, FilesConfig, S3Config, UPLOAD_PURPOSES};
pub use retention::RetentionConfig;
pub use routing::{
    AliasRoutingConfig, HealthConfig, IdempotencyConfig, RoutingConfig, RoutingStrategy,
    TimeoutOverrides,
};
pub use server::{ServerConfig, TokenizerKind};
pub use validate::{
    catalog_entry_rules, email_problem, parse_listen_addr, validate_controlplane,
    webhook_url_problem,
};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{load_file, load_layered, load_str, ConfigError, ConfigErrors, Mode};

use crate::provider::ProviderKind;
use crate::secret::Secret;

/// The whole config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listeners, timeouts, body limit, shutdown.
    pub server: ServerConfig,
    /// Where usage records go in standalone mode.
    pub usage: UsageConfig,
    /// Hashing of API keys.
    pub security: SecurityConfig,
    /// Provider-wide credentials used when a catalog entry has none of its own.
    pub providers: ProvidersConfig,
    /// Model aliases and their deployments. Entries sharing an alias are the alias's
    /// deployments (weighted routing among them).
    pub model_catalog: Vec<CatalogEntry>,
    /// Global default rate limits (`0` = unlimited).
    pub rate_limits: RateLimitsConfig,
    /// Global default budget and alerting.
    pub budgets: BudgetsConfig,
    /// Reporting timezone for budget windows and usage aggregation.
    pub reporting: ReportingConfig,
    /// How requests pick deployments: strategy, failover attempts, per-alias timeouts.
    pub routing: RoutingConfig,
    /// Circuit breaking and active health checks of deployments.
    pub health: HealthConfig,
    /// Deduplication of requests carrying an `Idempotency-Key` header.
    pub idempotency: IdempotencyConfig,
    /// Tenants, users and keys created at start-up.
    pub bootstrap: BootstrapConfig,
    /// Postgres (control plane only).
    pub database: DatabaseConfig,
    /// Redis: the bus between the planes. Setting it puts a data plane in cluster mode.
    pub redis: RedisConfig,
    /// Cluster mode: bus names, snapshot cache, usage spool, internal channel.
    pub cluster: ClusterConfig,
    /// Admin authentication: sessions, local logins, login throttling (control plane only).
    pub admin: AdminConfig,
    /// How long usage rows, rollups and alert events are kept (control plane only).
    pub retention: RetentionConfig,
    /// Uploaded files: storage backend, encryption, size caps, sweeping (control plane only).
    pub files: FilesConfig,
    /// The Batch API's worker (control plane only).
    pub batches: BatchesConfig,
}

/// `usage.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Standalone mode: file every usage record is appended to, one JSON object per line.
    /// Parent directories are created. Default `./data/usage.jsonl`.
    pub jsonl_path: PathBuf,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            jsonl_path: PathBuf::from("./data/usage.jsonl"),
        }
    }
}

/// `security.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Pepper for the HMAC-SHA256 of API keys (at least 16 characters). Required in cluster
    /// mode, where both planes must share it. In standalone mode, when unset, a random
    /// pepper is drawn at start-up (keys from the config file are hashed in memory only).
    pub api_key_pepper: Option<Secret>,
    /// AES-256-GCM keys for provider credentials (and later snapshots) at rest, each
    /// `{version, key}` with `key` the base64 of exactly 32 random bytes (`openssl rand
    /// -base64 32`). Control plane; at least one is required there. Keep retired versions
    /// listed until nothing encrypted with them remains.
    pub encryption_keys: Vec<EncryptionKeyConfig>,
    /// Version used to encrypt new values; default: the highest version listed.
    pub active_encryption_key: Option<u32>,
}

/// `security.encryption_keys[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKeyConfig {
    /// Key version (≥ 1, unique), stored next to every value it encrypts.
    pub version: u32,
    /// Base64 (standard or URL-safe alphabet, padding optional) of exactly 32 bytes.
    pub key: Secret,
}

/// `providers.*`: defaults for catalog entries that carry no credentials of their own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    /// API key for `provider: openai`.
    pub openai_key: Option<Secret>,
    /// Base URL for `provider: openai`. Default `https://api.openai.com/v1`.
    pub openai_base_url: Option<String>,
    /// API key for `provider: anthropic`.
    pub anthropic_key: Option<Secret>,
    /// Azure OpenAI resource endpoint, e.g. `https://my-resource.openai.azure.com`.
    pub azure_openai_endpoint: Option<String>,
    /// Azure OpenAI API key.
    pub azure_openai_key: Option<Secret>,
    /// Azure OpenAI `api-version`.
    pub azure_openai_version: Option<String>,
    /// AWS access key id for `provider: bedrock` entries without a credential of their own
    /// (SigV4; goes with `aws_secret_access_key`).
    pub aws_access_key_id: Option<Secret>,
    /// AWS secret access key for Bedrock (with `aws_access_key_id`).
    pub aws_secret_access_key: Option<Secret>,
    /// AWS session token, for temporary credentials (with the two keys above).
    pub aws_session_token: Option<Secret>,
    /// Amazon Bedrock API key (`Authorization: Bearer`, nothing signed) for `bedrock` entries
    /// without a credential of their own; wins over the access key above.
    pub bedrock_api_key: Option<Secret>,
    /// AWS region of `bedrock` entries that name no `region`, e.g. `us-east-1`.
    pub aws_region: Option<String>,
    /// GCP project of `vertex` entries (Vertex AI) without `metadata.vertex_project`
    /// (default: the service-account key's `project_id`).
    pub gcp_project_id: Option<String>,
    /// The service-account JSON key (the file's content) of `vertex` entries (Vertex AI)
    /// without `api_key`; the data plane mints OAuth tokens from it.
    pub gcp_json_credentials: Option<Secret>,
    /// Hugging Face token.
    pub hugging_face_token: Option<Secret>,
    /// Defaults for `provider: openai-compatible`.
    pub openai_compatible: OpenAiCompatibleDefaults,
}

/// `providers.openai_compatible.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiCompatibleDefaults {
    /// Base URL including `/v1`, e.g. `http://vllm:8000/v1`.
    pub base_url: Option<String>,
    /// Bearer token, when the server wants one.
    pub api_key: Option<Secret>,
}

/// What a catalog entry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    /// Chat and text completions.
    #[default]
    Llm,
    /// Embeddings.
    Embedding,
    /// Image generation.
    Image,
    /// Text to speech.
    AudioSpeech,
    /// Speech to text.
    AudioTranscription,
    /// Moderation.
    Moderation,
}

/// One `model_catalog[]` entry: an alias served by one deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The name clients send as `model`.
    pub alias: String,
    /// Provider kind: `openai`, `openai-compatible`, `azure`, `anthropic`, `bedrock`,
    /// `vertex`, `huggingface` or `mock`.
    pub provider: ProviderKind,
    /// The model name the provider knows. Defaults to the alias.
    #[serde(default)]
    pub provider_model: Option<String>,
    /// What the entry serves. Default `llm`.
    #[serde(default)]
    pub model_type: ModelType,
    /// Context window in tokens (informational; shown in listings).
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Largest completion in tokens; also the default `max_tokens` for limit estimates.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Input modalities, e.g. `[text, image]`.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Whether the model accepts tools.
    #[serde(default)]
    pub supports_tools: bool,
    /// USD per 1K prompt tokens. Default 0.
    #[serde(default)]
    pub price_input: f64,
    /// USD per 1K completion tokens. Default 0.
    #[serde(default)]
    pub price_output: f64,
    /// USD per 1K prompt tokens read from the provider's prompt cache (OpenAI's
    /// `cached_tokens`, Anthropic's and Bedrock's cache reads, Gemini's cached content).
    /// Default: `price_input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cache_read: Option<f64>,
    /// USD per 1K prompt tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, Bedrock's `cacheWriteInputTokens`). Default:
    /// `price_input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cache_write: Option<f64>,
    /// USD per generated image (`model_type: image`), added to any token prices the
    /// provider's usage reports (e.g. `gpt-image-1`). Default 0.
    #[serde(default)]
    pub price_per_image: f64,
    /// Currency of the prices; only `USD` is accepted.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Provider deployment name (Azure deployment, etc.).
    #[serde(default)]
    pub deployment: Option<String>,
    /// Base URL of the provider for this entry (for OpenAI-compatible servers, including
    /// `/v1`). Overrides the provider-wide default.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Credential for this entry. Overrides the provider-wide default.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Provider API version (Azure).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Provider region (Bedrock; the location of `vertex` entries, default `us-central1`;
    /// informational for others).
    #[serde(default)]
    pub region: Option<String>,
    /// Routing weight among the alias's deployments of the same `priority`. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Priority group: entries with the lowest value take the traffic; the next group is
    /// used only when every deployment of the group is unavailable (breaker open) or failed
    /// for this request. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Active health checks for this entry (a cheap model listing every `health.interval`).
    /// Default on for `openai-compatible` and `huggingface` (usually self-hosted), off for
    /// paid APIs, where a check costs quota; never for `mock`.
    #[serde(default)]
    pub health_check: Option<bool>,
    /// Disabled entries are not routed to and not listed. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Provider-specific settings as strings (`mock_*`, `bedrock_*`, `vertex_*` …). `vertex`:
    /// `vertex_api` (`vertex`, the default, or `gemini` for the Gemini API with an API key),
    /// `vertex_project`, `vertex_location` (see `crate::vertex`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn default_currency() -> String {
    "USD".to_owned()
}

fn default_weight() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

/// `rate_limits.*`: defaults applied where tenants and keys set nothing. `0` = unlimited.
/// In cluster mode the four `default_*` values are the starting point: once set through the
/// control plane's admin API (`PUT /admin/settings/rate-limits`) the stored values win.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Requests per minute per key. Default 1000.
    pub default_requests_per_minute: u64,
    /// Tokens per minute per key. Default 1,000,000.
    pub default_tokens_per_minute: u64,
    /// Concurrent requests per key. Default 10.
    pub default_parallel_requests_key: u64,
    /// Concurrent requests per tenant. Default 100.
    pub default_parallel_requests_tenant: u64,
    /// Completion tokens assumed when a request sets no `max_tokens` and its model no
    /// `max_output_tokens`: the worst case reserved against TPM and budgets before the
    /// request, settled to the real count after. Default 4096.
    pub default_max_tokens: u64,
    /// Per-model-alias caps shared by every tenant:
    /// `{<alias>: {requests_per_minute, tokens_per_minute}}` (absent = uncapped).
    pub models: BTreeMap<String, ModelRateLimit>,
    /// What a cluster data plane does while Redis is unreachable: `local_share` (default:
    /// enforce each limit and budget locally at its share, limit ÷ live data planes) or
    /// `reject` (answer 503 to metered requests).
    pub on_redis_error: RedisFailMode,
    /// How long a parallel slot or budget reservation outlives a silent data plane; held
    /// ones are renewed every third of it. Default 30s.
    #[serde(with = "crate::duration")]
    pub lease_ttl: Duration,
    /// Longest wait for the Redis limits round trip before the local share takes over.
    /// Default 250ms.
    #[serde(with = "crate::duration")]
    pub redis_timeout: Duration,
}

/// `rate_limits.models.<alias>`: caps of one model alias, summed over all tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRateLimit {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

/// `rate_limits.on_redis_error`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailMode {
    /// Enforce locally at limit ÷ live data planes (the cluster never exceeds the limit).
    #[default]
    LocalShare,
    /// Refuse metered requests with 503 until Redis is back.
    Reject,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            default_requests_per_minute: 1000,
            default_tokens_per_minute: 1_000_000,
            default_parallel_requests_key: 10,
            default_parallel_requests_tenant: 100,
            default_max_tokens: 4096,
            models: BTreeMap::new(),
            on_redis_error: RedisFailMode::LocalShare,
            lease_ttl: Duration::from_secs(30),
            redis_timeout: Duration::from_millis(250),
        }
    }
}

/// `budgets.*`. In cluster mode `default_usd`, `warning_threshold_perc` and
/// `refresh_schedule` are the starting point: once set through the control plane's admin API
/// (`PUT /admin/budgets/default`) the stored values win.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Default budget per tenant in USD per window. `0` = no budget. Default 100.
    pub default_usd: f64,
    /// Fraction of the budget at which the warning state starts (0 < x ≤ 1). Default 0.8.
    pub warning_threshold_perc: f64,
    /// Budget window: `calendar_month`, `weekly` or `rolling_<N>d`. Default
    /// `calendar_month`.
    pub refresh_schedule: String,
    /// Alert delivery.
    pub alert: AlertConfig,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        Self {
            default_usd: 100.0,
            warning_threshold_perc: 0.8,
            refresh_schedule: "calendar_month".to_owned(),
            alert: AlertConfig::default(),
        }
    }
}

/// `budgets.alert.*`: budget alerts, sent by the control plane when a tenant's spend in its
/// current window reaches the warning threshold and again when it reaches the limit. Each
/// level is sent at most once per window and per `cooldown` to each recipient; every
/// delivery attempt is recorded in `budget_alert_events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Whether alerts are sent. Default true.
    pub enabled: bool,
    /// Default email recipients (a tenant's own `alert_emails`, when it has some, replace
    /// them). Needs `budgets.alert.smtp.host` and `.from`.
    pub emails: Vec<String>,
    /// Default webhook URLs, `http://` or `https://` (a tenant's own `alert_webhooks`, when
    /// it has some, replace them). Needs `budgets.alert.webhook.secret`.
    pub webhooks: Vec<String>,
    /// Minimum time between two alerts of the same level to the same recipient of a tenant
    /// (a tenant's `alert_cooldown` overrides it). Default 1h.
    #[serde(with = "crate::duration")]
    pub cooldown: Duration,
    /// How often every tenant with spend in its current window is evaluated, on top of the
    /// evaluation after each ingested usage batch (it also retries failed deliveries).
    /// Default 60s.
    #[serde(with = "crate::duration")]
    pub sweep_interval: Duration,
    /// Non-public address blocks alert targets may resolve to (CIDR, e.g. `10.20.0.0/16`,
    /// `127.0.0.1/32`). Webhook hosts and the SMTP relay are resolved and refused when any
    /// address is loopback, private (RFC 1918), link-local (cloud metadata included),
    /// unique-local, CGNAT, unspecified, multicast or reserved, unless a block listed here
    /// contains it. Default empty (public addresses only).
    pub allow_private_targets: Vec<String>,
    /// SMTP relay.
    pub smtp: SmtpConfig,
    /// Webhook delivery.
    pub webhook: WebhookConfig,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            emails: Vec::new(),
            webhooks: Vec::new(),
            cooldown: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(60),
            allow_private_targets: Vec::new(),
            smtp: SmtpConfig::default(),
            webhook: WebhookConfig::default(),
        }
    }
}

/// `budgets.alert.smtp.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host; empty disables email. Resolved and checked against
    /// `budgets.alert.allow_private_targets` before each connection.
    pub host: String,
    /// Relay port. Default 587. With `use_tls`, port 465 means implicit TLS (SMTPS) and any
    /// other port STARTTLS, required.
    pub port: u16,
    /// Login, when the relay wants one.
    pub username: String,
    /// Password, when the relay wants one.
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
    /// Encrypt the connection. Default true: implicit TLS on port 465, else STARTTLS,
    /// required (a relay that does not offer it is an error, never a plain-text fallback).
    /// `false` sends in plain text (local relays and tests only).
    pub use_tls: bool,
    /// Accept invalid certificates and host names (test relays only). Default false.
    pub skip_tls_verify: bool,
    /// Timeout of the connection and of each SMTP command. Default 5s.
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            username: String::new(),
            password: None,
            from: String::new(),
            use_tls: true,
            skip_tls_verify: false,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// `budgets.alert.webhook.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Per-attempt timeout. Default 5s.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Retries after the first attempt (0–10), with exponential backoff and jitter, on
    /// network errors, timeouts, 408, 429 and 5xx answers. Default 3.
    pub max_retries: u32,
    /// HMAC-SHA256 key signing each webhook (`X-OMG-Signature: t=<unix>,v1=<hex of
    /// HMAC(secret, "<t>.<body>")>`), at least 16 characters. Required when any webhook is
    /// configured; also `ROUTER_BUDGETS_ALERT_WEBHOOK_SECRET`.
    pub secret: Option<Secret>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_retries: 3,
            secret: None,
        }
    }
}

/// `reporting.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportingConfig {
    /// IANA timezone for budget windows and usage days. Default `UTC`.
    pub timezone: String,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".to_owned(),
        }
    }
}

/// `bootstrap.*`: seeds created at start-up (idempotently, in cluster mode).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Tenants.
    pub tenants: Vec<BootstrapTenant>,
    /// Admin users (control plane), promoted to super admin.
    pub admin_users: Vec<BootstrapAdminUser>,
    /// API keys.
    pub api_keys: Vec<BootstrapApiKey>,
    /// Tenant memberships (control plane).
    pub memberships: Vec<BootstrapMembership>,
    /// Tenant rate-limit overrides.
    pub tenant_limits: Vec<BootstrapTenantLimits>,
    /// Tenant budget overrides.
    pub tenant_budgets: Vec<BootstrapTenantBudget>,
}

/// Tenant status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Serving.
    #[default]
    Active,
    /// Every request refused with 403 `tenant_suspended`.
    Suspended,
}

/// `bootstrap.tenants[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapTenant {
    /// Unique tenant name.
    pub name: String,
    /// `active` (default) or `suspended`.
    #[serde(default)]
    pub status: TenantStatus,
    /// Aliases the tenant may use; absent = every enabled alias.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// `bootstrap.admin_users[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapAdminUser {
    /// Login email.
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Initial password (hashed with argon2id; never stored in clear).
    pub password: Option<Secret>,
}

/// Key status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Usable.
    #[default]
    Active,
    /// Refused with 401; can be re-enabled.
    Disabled,
    /// Refused with 401 forever.
    Revoked,
}

/// Rate-limit override (`None` = inherit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitOverride {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Concurrent requests.
    pub parallel_requests: Option<u64>,
}

/// `bootstrap.api_keys[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapApiKey {
    /// Tenant name the key belongs to.
    pub tenant: String,
    /// Public prefix (`sk-<prefix>.<secret>`), `[A-Za-z0-9_-]{1,32}`. Required in
    /// standalone mode.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Secret part. Required in standalone mode; only its hash is kept.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Informational scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `active` (default), `disabled` or `revoked`.
    #[serde(default)]
    pub status: KeyStatus,
    /// RFC 3339 expiry, e.g. `2027-01-01T00:00:00Z`.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Aliases the key may use (within its tenant's); absent = the tenant's.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Rate-limit override (never above the tenant's).
    #[serde(default)]
    pub rate_limit: Option<RateLimitOverride>,
    /// Key budget in USD per window.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Warning threshold of the key budget.
    #[serde(default)]
    pub warning_threshold: Option<f64>,
}

/// `bootstrap.memberships[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapMembership {
    /// Tenant name.
    pub tenant: String,
    /// User email.
    pub email: String,
    /// `owner`, `admin`, `viewer` or `user`.
    pub role: String,
}

/// `bootstrap.tenant_limits[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapTenantLimits {
    /// Tenant name.
    pub tenant: String,
    /// The tenant's limits: `{requests_per_minute, tokens_per_minute, parallel_requests}`
    /// (absent = the global default).
    pub limits: RateLimitOverride,
}

/// `bootstrap.tenant_budgets[]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapTenantBudget {
    /// Tenant name.
    pub tenant: String,
    /// Budget in USD per window.
    pub budget_usd: f64,
    /// Warning threshold (fraction).
    #[serde(default)]
    pub warning_threshold: Option<f64>,
    /// `calendar_month`, `weekly` or `rolling_<N>d`.
    #[serde(default)]
    pub refresh_schedule: Option<String>,
    /// Alert recipients.
    #[serde(default)]
    pub alert_emails: Vec<String>,
    /// Alert webhooks.
    #[serde(default)]
    pub alert_webhooks: Vec<String>,
    /// Alert cooldown, e.g. `90m`.
    #[serde(default)]
    pub alert_cooldown: Option<String>,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod layered_tests;
