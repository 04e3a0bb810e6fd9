//! `routing.*`, `health.*` and `idempotency.*`: how a data plane picks deployments, when it
//! stops sending them traffic, and how it deduplicates retried requests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `routing.*`: how a request picks among the deployments of its alias. In cluster mode the
/// control plane's file is the one that counts: these settings travel in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// How to pick within a priority group: `weighted` (default: random in proportion to
    /// each entry's `weight`) or `least_busy` (fewest requests in flight on this data plane;
    /// ties broken by weight).
    pub strategy: RoutingStrategy,
    /// Upstream attempts per request: the first deployment plus failovers, made only before
    /// the first byte reaches the client. 1–10. Default 3.
    pub max_attempts: u32,
    /// Per-alias overrides: `{<alias>: {strategy, max_attempts, timeouts}}`.
    pub aliases: BTreeMap<String, AliasRoutingConfig>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            strategy: RoutingStrategy::Weighted,
            max_attempts: 3,
            aliases: BTreeMap::new(),
        }
    }
}

/// `routing.strategy`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingStrategy {
    /// Random in proportion to `weight`.
    #[default]
    Weighted,
    /// Fewest requests in flight (on this data plane), ties by weight.
    LeastBusy,
}

impl RoutingStrategy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingStrategy::Weighted => "weighted",
            RoutingStrategy::LeastBusy => "least_busy",
        }
    }
}

/// `routing.aliases.<alias>`: what one alias does differently. Unset keys inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AliasRoutingConfig {
    /// Overrides `routing.strategy`.
    pub strategy: Option<RoutingStrategy>,
    /// Overrides `routing.max_attempts`.
    pub max_attempts: Option<u32>,
    /// Overrides of the `server.*` timeouts for this alias.
    pub timeouts: TimeoutOverrides,
}

/// `routing.aliases.<alias>.timeouts`: unset keys use the `server.*` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutOverrides {
    /// TCP + TLS connect (`server.connect_timeout`).
    #[serde(with = "crate::duration::option")]
    pub connect: Option<Duration>,
    /// Whole non-streamed request (`server.sync_timeout`).
    #[serde(with = "crate::duration::option")]
    pub sync: Option<Duration>,
    /// Upstream response headers, and whole non-streamed bodies
    /// (`server.provider_timeout`).
    #[serde(with = "crate::duration::option")]
    pub upstream: Option<Duration>,
    /// Longest gap between two stream chunks (`server.stream_idle_timeout`).
    #[serde(with = "crate::duration::option")]
    pub stream_idle: Option<Duration>,
}

/// `health.*`: circuit breaking and active health checks, per deployment and per data plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Interval between active health checks of the entries that have them
    /// (`model_catalog[].health_check`). Default 60s. (`check_interval` is accepted too.)
    #[serde(with = "crate::duration", alias = "check_interval")]
    pub interval: Duration,
    /// Number of recent active-check results kept and shown per deployment. Default 5.
    pub rolling_window: u32,
    /// How long a tripped deployment gets no traffic before one probe request (half-open).
    /// Default 5m.
    #[serde(with = "crate::duration")]
    pub cooldown: Duration,
    /// Consecutive failures (connect errors, timeouts, 5xx, broken streams, failed checks)
    /// that trip the breaker. Default 3.
    pub failure_threshold: u32,
    /// Share of failed requests over `error_window` that trips the breaker (once at least
    /// `min_requests` were seen), 0–1; `0` turns the ratio rule off. Default 0.5.
    pub error_ratio: f64,
    /// Window of the error ratio. Default 60s.
    #[serde(with = "crate::duration")]
    pub error_window: Duration,
    /// Requests needed in `error_window` before the ratio rule applies. Default 20.
    pub min_requests: u32,
    /// Rest after a provider's 429 without `Retry-After`. Default 30s.
    #[serde(with = "crate::duration")]
    pub rate_limit_cooldown: Duration,
    /// Longest rest a provider's `Retry-After` can impose. Default 5m.
    #[serde(with = "crate::duration")]
    pub max_rate_limit_cooldown: Duration,
    /// Time allowed to one active check. Default 5s.
    #[serde(with = "crate::duration")]
    pub check_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            rolling_window: 5,
            cooldown: Duration::from_secs(300),
            failure_threshold: 3,
            error_ratio: 0.5,
            error_window: Duration::from_secs(60),
            min_requests: 20,
            rate_limit_cooldown: Duration::from_secs(30),
            max_rate_limit_cooldown: Duration::from_secs(300),
            check_timeout: Duration::from_secs(5),
        }
    }
}

/// `idempotency.*`: requests carrying an `Idempotency-Key` header are answered once per
/// tenant and key; retries within `ttl` get the stored answer. Read by each data plane from
/// its own file (shared in Redis in cluster mode, in process in standalone mode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Honour `Idempotency-Key`. Default true.
    pub enabled: bool,
    /// How long a stored answer is replayed. Default 24h.
    #[serde(with = "crate::duration")]
    pub ttl: Duration,
    /// Largest answer stored, in KiB; a larger one is delivered but not stored (a retry runs
    /// again). Default 4096.
    pub max_response_kb: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Duration::from_secs(24 * 3600),
            max_response_kb: 4096,
        }
    }
}

/// The rules of `routing.*`, `health.*` and `idempotency.*`.
pub(super) fn rules(config: &super::GatewayConfig) -> Vec<super::ConfigError> {
    use super::ConfigError;
    let mut errors = Vec::new();
    let mut error = |path: &str, message: &str| errors.push(ConfigError::new(path, message));
    let routing = &config.routing;
    let attempts = |value: u32| (1..=10).contains(&value);
    if !attempts(routing.max_attempts) {
        error("routing.max_attempts", "must be between 1 and 10");
    }
    for (alias, overrides) in &routing.aliases {
        let path = format!("routing.aliases.{alias}");
        if !config
            .model_catalog
            .iter()
            .any(|entry| &entry.alias == alias)
        {
            error(
                &path,
                "no `model_catalog` entry has this alias; fix the name or remove the override",
            );
        }
        if overrides.max_attempts.is_some_and(|value| !attempts(value)) {
            error(&format!("{path}.max_attempts"), "must be between 1 and 10");
        }
        let timeouts = &overrides.timeouts;
        for (name, value) in [
            ("connect", timeouts.connect),
            ("sync", timeouts.sync),
            ("upstream", timeouts.upstream),
            ("stream_idle", timeouts.stream_idle),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                error(
                    &format!("{path}.timeouts.{name}"),
                    "must be above zero; leave it out to use the `server.*` value",
                );
            }
        }
    }

    let health = &config.health;
    let second = Duration::from_secs(1);
    for (name, value) in [
        ("interval", health.interval),
        ("cooldown", health.cooldown),
        ("error_window", health.error_window),
        ("rate_limit_cooldown", health.rate_limit_cooldown),
        ("max_rate_limit_cooldown", health.max_rate_limit_cooldown),
    ] {
        if value < second {
            error(&format!("health.{name}"), "must be at least 1s");
        }
    }
    if health.check_timeout.is_zero() {
        error("health.check_timeout", "must be above zero, e.g. `5s`");
    }
    if !(1..=100).contains(&health.rolling_window) {
        error("health.rolling_window", "must be between 1 and 100");
    }
    if health.failure_threshold == 0 {
        error("health.failure_threshold", "must be at least 1");
    }
    if !(0.0..=1.0).contains(&health.error_ratio) {
        error(
            "health.error_ratio",
            "must be between 0 and 1 (0 turns the ratio rule off)",
        );
    }

    let idempotency = &config.idempotency;
    if idempotency.ttl < second {
        error("idempotency.ttl", "must be at least 1s, e.g. `24h`");
    }
    if idempotency.max_response_kb == 0 {
        error("idempotency.max_response_kb", "must be at least 1");
    }
    errors
}
