//! The routing part of the snapshot: strategy, failover attempts, per-alias timeouts and the
//! breaker / health-check policy. Built from the config's `routing.*` and `health.*`; unlike
//! the config, unknown fields are tolerated (a newer control plane may add some).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{
    AliasRoutingConfig, HealthConfig, RoutingConfig, RoutingStrategy, TimeoutOverrides,
};

/// How deployments are picked and when they rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingPolicy {
    /// Default strategy within a priority group.
    pub strategy: RoutingStrategy,
    /// Default upstream attempts per request (≥ 1).
    pub max_attempts: u32,
    /// Per-alias overrides.
    pub aliases: BTreeMap<String, AliasRouting>,
    /// Breaker and active checks.
    pub health: HealthPolicy,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        Self::from_config(&RoutingConfig::default(), &HealthConfig::default())
    }
}

impl RoutingPolicy {
    /// From the config's sections.
    pub fn from_config(routing: &RoutingConfig, health: &HealthConfig) -> Self {
        Self {
            strategy: routing.strategy,
            max_attempts: routing.max_attempts.max(1),
            aliases: routing
                .aliases
                .iter()
                .map(|(alias, config)| (alias.clone(), AliasRouting::from(config)))
                .collect(),
            health: HealthPolicy::from(health),
        }
    }

    /// The effective settings of one alias.
    pub fn for_alias(&self, alias: &str) -> AliasPolicy {
        let overrides = self.aliases.get(alias);
        AliasPolicy {
            strategy: overrides.and_then(|o| o.strategy).unwrap_or(self.strategy),
            max_attempts: overrides
                .and_then(|o| o.max_attempts)
                .unwrap_or(self.max_attempts)
                .max(1),
            timeouts: overrides.map(|o| o.timeouts).unwrap_or_default(),
        }
    }
}

/// One alias's overrides as carried in the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AliasRouting {
    /// Strategy override.
    pub strategy: Option<RoutingStrategy>,
    /// Attempts override.
    pub max_attempts: Option<u32>,
    /// Timeout overrides in milliseconds.
    pub timeouts: TimeoutsMs,
}

impl From<&AliasRoutingConfig> for AliasRouting {
    fn from(config: &AliasRoutingConfig) -> Self {
        Self {
            strategy: config.strategy,
            max_attempts: config.max_attempts,
            timeouts: TimeoutsMs::from(&config.timeouts),
        }
    }
}

/// Timeout overrides in milliseconds; `None` = the data plane's `server.*` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeoutsMs {
    /// Connect.
    pub connect_ms: Option<u64>,
    /// Whole non-streamed request.
    pub sync_ms: Option<u64>,
    /// Upstream response headers / non-streamed body.
    pub upstream_ms: Option<u64>,
    /// Gap between stream chunks.
    pub stream_idle_ms: Option<u64>,
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl From<&TimeoutOverrides> for TimeoutsMs {
    fn from(config: &TimeoutOverrides) -> Self {
        Self {
            connect_ms: config.connect.map(millis),
            sync_ms: config.sync.map(millis),
            upstream_ms: config.upstream.map(millis),
            stream_idle_ms: config.stream_idle.map(millis),
        }
    }
}

/// The effective routing of one alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasPolicy {
    /// Strategy within a priority group.
    pub strategy: RoutingStrategy,
    /// Attempts (≥ 1).
    pub max_attempts: u32,
    /// Timeout overrides.
    pub timeouts: TimeoutsMs,
}

/// `health.*` as carried in the snapshot (durations in milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthPolicy {
    /// Between active checks.
    pub interval_ms: u64,
    /// Check results kept.
    pub rolling_window: u32,
    /// Rest of a tripped deployment before a probe.
    pub cooldown_ms: u64,
    /// Consecutive failures that trip.
    pub failure_threshold: u32,
    /// Failure share that trips (0 = off).
    pub error_ratio: f64,
    /// Window of the ratio.
    pub error_window_ms: u64,
    /// Requests needed before the ratio applies.
    pub min_requests: u32,
    /// Rest after a 429 without `Retry-After`.
    pub rate_limit_cooldown_ms: u64,
    /// Cap on a `Retry-After` rest.
    pub max_rate_limit_cooldown_ms: u64,
    /// Time allowed to one check.
    pub check_timeout_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self::from(&HealthConfig::default())
    }
}

impl From<&HealthConfig> for HealthPolicy {
    fn from(config: &HealthConfig) -> Self {
        Self {
            interval_ms: millis(config.interval),
            rolling_window: config.rolling_window.max(1),
            cooldown_ms: millis(config.cooldown),
            failure_threshold: config.failure_threshold.max(1),
            error_ratio: config.error_ratio,
            error_window_ms: millis(config.error_window),
            min_requests: config.min_requests,
            rate_limit_cooldown_ms: millis(config.rate_limit_cooldown),
            max_rate_limit_cooldown_ms: millis(config.max_rate_limit_cooldown),
            check_timeout_ms: millis(config.check_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn alias_overrides_fall_back_to_the_defaults() {
        let mut routing = RoutingConfig::default();
        routing.aliases.insert(
            "fast".to_owned(),
            AliasRoutingConfig {
                strategy: Some(RoutingStrategy::LeastBusy),
                max_attempts: None,
                timeouts: TimeoutOverrides {
                    stream_idle: Some(Duration::from_secs(5)),
                    ..TimeoutOverrides::default()
                },
            },
        );
        let policy = RoutingPolicy::from_config(&routing, &HealthConfig::default());
        let fast = policy.for_alias("fast");
        assert_eq!(fast.strategy, RoutingStrategy::LeastBusy);
        assert_eq!(fast.max_attempts, 3);
        assert_eq!(fast.timeouts.stream_idle_ms, Some(5000));
        assert_eq!(fast.timeouts.sync_ms, None);
        let other = policy.for_alias("other");
        assert_eq!(other.strategy, RoutingStrategy::Weighted);
        assert_eq!(other.timeouts, TimeoutsMs::default());
    }

    #[test]
    fn unknown_snapshot_fields_are_tolerated() {
        let policy: RoutingPolicy = serde_json::from_str(
            r#"{"strategy":"least_busy","future":1,"health":{"cooldown_ms":10,"new":true}}"#,
        )
        .unwrap();
        assert_eq!(policy.strategy, RoutingStrategy::LeastBusy);
        assert_eq!(policy.health.cooldown_ms, 10);
        assert_eq!(policy.health.failure_threshold, 3);
    }
}
