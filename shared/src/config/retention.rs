//! `retention.*` (control plane): how long usage rows, usage rollups and budget alert events
//! are kept. A background job of the control plane deletes what is older, in batches.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, GatewayConfig};
use crate::snapshot::BudgetWindow;

const DAY: Duration = Duration::from_secs(86_400);

/// `retention.*`. Durations (`90d`, `2160h`); `0` keeps the rows forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Request rows (`requests`, one per metered request) whose `started_at` is older than
    /// this are deleted. Budget spend is summed from these rows, so it must cover the
    /// default budget window (`budgets.refresh_schedule`) plus a day; a tenant override with
    /// a longer window counts only the rows kept. Default 90d.
    #[serde(with = "crate::duration")]
    pub requests: Duration,
    /// Hourly usage rollups (`usage_rollups`, by `hour`) older than this are deleted. At
    /// least `requests` (rollups outlive the raw rows so long-range reports still answer);
    /// `0` when `requests` is `0`. Default 400d.
    #[serde(with = "crate::duration")]
    pub rollups: Duration,
    /// Budget alert delivery records (`budget_alert_events`, by `created_at`) older than this
    /// are deleted. The alert evaluator reads them to send each level once per window, so it
    /// must cover the default budget window plus a day. Default 365d.
    #[serde(with = "crate::duration")]
    pub alert_events: Duration,
    /// Time between two passes of the job (the first runs a minute after start-up),
    /// 1m–24h. Default 1h.
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    /// Rows deleted per statement (each its own short transaction), 1–100000. Default 10000.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            requests: 90 * DAY,
            rollups: 400 * DAY,
            alert_events: 365 * DAY,
            interval: Duration::from_secs(3600),
            batch_size: 10_000,
        }
    }
}

/// The longest span of a budget window (a calendar month has at most 31 days).
fn window_span(window: BudgetWindow) -> Duration {
    match window {
        BudgetWindow::CalendarMonth => 31 * DAY,
        BudgetWindow::Weekly => 7 * DAY,
        BudgetWindow::RollingDays(days) => u32::from(days) * DAY,
    }
}

fn days(d: Duration) -> u64 {
    d.as_secs().div_ceil(86_400)
}

/// `retention.*`: the interval and batch size make sense, rollups outlive requests, and
/// requests and alert events cover the default budget window.
pub(super) fn rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let retention = &config.retention;
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    if !(Duration::from_secs(60)..=DAY).contains(&retention.interval) {
        error(
            "retention.interval",
            "must be between 1m and 24h".to_owned(),
        );
    }
    if !(1..=100_000).contains(&retention.batch_size) {
        error(
            "retention.batch_size",
            format!("{} is outside 1..=100000", retention.batch_size),
        );
    }
    match (retention.requests.is_zero(), retention.rollups.is_zero()) {
        (true, false) => error(
            "retention.rollups",
            "must be 0 (forever) when retention.requests is 0: rollups outlive the raw rows"
                .to_owned(),
        ),
        (false, false) if retention.rollups < retention.requests => error(
            "retention.rollups",
            format!(
                "must be at least retention.requests ({} days): rollups outlive the raw rows",
                days(retention.requests)
            ),
        ),
        _ => {}
    }
    // An invalid schedule is reported by the budget rules; nothing to compare against then.
    if let Ok(window) = BudgetWindow::parse(&config.budgets.refresh_schedule) {
        let needed = window_span(window) + DAY;
        for (path, kept) in [
            ("retention.requests", retention.requests),
            ("retention.alert_events", retention.alert_events),
        ] {
            if !kept.is_zero() && kept < needed {
                error(
                    path,
                    format!(
                        "must be 0 (forever) or at least {} days: budgets.refresh_schedule `{}` \
                         needs its whole window",
                        days(needed),
                        config.budgets.refresh_schedule
                    ),
                );
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Vec<String> {
        let config: GatewayConfig = serde_yaml::from_str(yaml).unwrap();
        rules(&config).into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_pass_and_zero_keeps_forever() {
        assert!(check("{}").is_empty());
        assert!(check("retention: {requests: 0, rollups: 0, alert_events: 0}").is_empty());
    }

    #[test]
    fn rollups_outlive_requests() {
        let errors = check("retention: {requests: 100d, rollups: 50d}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("retention.rollups"), "{errors:?}");
        let errors = check("retention: {requests: 0, rollups: 400d}");
        assert!(errors[0].contains("retention.rollups"), "{errors:?}");
    }

    #[test]
    fn windows_interval_and_batch_are_checked() {
        let errors = check("retention: {requests: 10d, interval: 10s, batch_size: 0}");
        assert_eq!(errors.len(), 3, "{errors:?}");
        let errors = check(
            "budgets: {refresh_schedule: rolling_120d}\nretention: {requests: 100d, rollups: 400d}",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("retention.requests") && e.contains("121 days")),
            "{errors:?}"
        );
        assert!(check("budgets: {refresh_schedule: weekly}\nretention: {requests: 8d}").is_empty());
    }
}
