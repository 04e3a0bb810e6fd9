//! The rules of `budgets.*` (with `reporting.timezone`, which budget windows are read in)
//! and `rate_limits.*`.

use std::time::Duration;

use super::is_share;
use crate::config::{ConfigError, GatewayConfig, RateLimitsConfig};
use crate::money::usd_to_micros;
use crate::snapshot::BudgetWindow;

/// `budgets.default_usd`, the warning threshold, the refresh window and the reporting
/// timezone. (`budgets.alert.*` is the control plane's: see `alerts.rs`.)
pub(super) fn budget_rules(config: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    let budgets = &config.budgets;
    if let Err(message) = usd_to_micros(budgets.default_usd) {
        error("budgets.default_usd", message);
    }
    if !is_share(budgets.warning_threshold_perc) {
        error(
            "budgets.warning_threshold_perc",
            format!("{} must be in (0, 1]", budgets.warning_threshold_perc),
        );
    }
    if let Err(message) = BudgetWindow::parse(&budgets.refresh_schedule) {
        error("budgets.refresh_schedule", message);
    }
    if let Err(message) = crate::budget::parse_timezone(&config.reporting.timezone) {
        error("reporting.timezone", message);
    }
}

/// `rate_limits.*`: the assumed completion size, the lease and Redis timings, and the
/// per-model keys.
pub(super) fn rate_limit_rules(limits: &RateLimitsConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    if limits.default_max_tokens == 0 {
        error(
            "rate_limits.default_max_tokens",
            "must be at least 1 (it is the completion size assumed for reservations)".to_owned(),
        );
    }
    if limits.lease_ttl < Duration::from_secs(3) {
        error(
            "rate_limits.lease_ttl",
            "must be at least 3s (leases are renewed every third of it)".to_owned(),
        );
    }
    if limits.redis_timeout.is_zero() {
        error(
            "rate_limits.redis_timeout",
            "must be above zero, e.g. `250ms`".to_owned(),
        );
    }
    for (alias, _) in limits.models.iter().filter(|(a, _)| a.trim().is_empty()) {
        error(
            "rate_limits.models",
            format!("`{alias}` is not a model alias"),
        );
    }
}
