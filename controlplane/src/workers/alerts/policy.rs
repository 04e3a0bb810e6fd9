//! The alert decision, pure: from a budget, the spend of its current window, the delivery
//! history and the time, which level stands and which targets are due for it.
//!
//! Rules, per target (an email address or a webhook URL) and level:
//! - only the current level is considered: `exceeded` supersedes `warning`;
//! - a level is sent at most once per window (the window's label) and at most once per
//!   cooldown (a new window within the cooldown waits for the cooldown's end);
//! - after a failed delivery the target waits `retry_failed_after` (the sweep interval);
//!   after a refused one (a target the SSRF policy refuses, a channel not configured: it
//!   cannot succeed before the config changes) it waits the cooldown.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use omg_shared::budget::{self, BudgetLevel, WindowSpan};
use omg_shared::money::MicroUsd;
use omg_shared::snapshot::BudgetPolicy;

use crate::service::governance::redact::redact_url;

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// SMTP.
    Email,
    /// Signed HTTP POST.
    Webhook,
}

impl Channel {
    /// The spelling in `budget_alert_events.channel` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }

    /// Parses [`Channel::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "email" => Some(Self::Email),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The channel.
    pub channel: Channel,
    /// The address as configured (a webhook URL may carry a token in its query).
    pub address: String,
    /// The form that is stored and logged: webhook URLs without userinfo, query or fragment.
    pub recorded: String,
}

impl Target {
    /// An email recipient.
    pub fn email(address: &str) -> Self {
        let address = address.trim().to_owned();
        Self {
            channel: Channel::Email,
            recorded: address.clone(),
            address,
        }
    }

    /// A webhook URL.
    pub fn webhook(url: &str) -> Self {
        let url = url.trim().to_owned();
        Self {
            channel: Channel::Webhook,
            recorded: redact_url(&url),
            address: url,
        }
    }
}

/// What was delivered to one target for one level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHistory {
    /// The last successful delivery and its window label.
    pub last_sent: Option<(DateTime<Utc>, String)>,
    /// The last failed attempt.
    pub last_failed_at: Option<DateTime<Utc>>,
    /// The last refused attempt.
    pub last_refused_at: Option<DateTime<Utc>>,
}

/// The history of a budget's targets, by (level, channel, recorded target).
pub type History = BTreeMap<(BudgetLevel, Channel, String), TargetHistory>;

/// The waiting times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between two deliveries of one level to one target, and after a refused delivery.
    pub cooldown: Duration,
    /// After a failed delivery.
    pub retry_failed_after: Duration,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Where the spend stands.
    pub level: BudgetLevel,
    /// The window evaluated.
    pub window: WindowSpan,
    /// The targets to deliver the level's alert to now (empty when none is due).
    pub due: Vec<Target>,
}

/// The earliest instant whose history can matter at `now` (the start of the history to load).
pub fn history_since(window: &WindowSpan, timing: Timing, now: DateTime<Utc>) -> DateTime<Utc> {
    let longest = timing.cooldown.max(timing.retry_failed_after);
    let back = chrono::Duration::from_std(longest).unwrap_or(chrono::Duration::MAX);
    now.checked_sub_signed(back)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .min(window.starts_at)
}

/// Decides which targets get an alert now. `spent` is the spend of the window containing
/// `now` ([`WindowSpan::current`] of `budget.window` in `tz`); a limit of 0 means no budget.
pub fn decide(
    budget: &BudgetPolicy,
    tz: Tz,
    spent: MicroUsd,
    targets: &[Target],
    history: &History,
    timing: Timing,
    now: DateTime<Utc>,
) -> Decision {
    let window = WindowSpan::current(budget.window, tz, now);
    let level = if budget.limit_micro_usd <= 0 {
        BudgetLevel::Ok
    } else {
        budget::level(budget.limit_micro_usd, budget.warning_threshold, spent)
    };
    let mut due = Vec::new();
    if level != BudgetLevel::Ok {
        let within = |at: Option<DateTime<Utc>>, wait: Duration| {
            at.is_some_and(|at| {
                chrono::Duration::from_std(wait)
                    .ok()
                    .and_then(|wait| at.checked_add_signed(wait))
                    .is_none_or(|until| now < until)
            })
        };
        for target in targets {
            if due.iter().any(|t: &Target| t == target) {
                continue;
            }
            let key = (level, target.channel, target.recorded.clone());
            let past = history.get(&key).cloned().unwrap_or_default();
            let sent_this_window = past
                .last_sent
                .as_ref()
                .is_some_and(|(_, label)| *label == window.label);
            let blocked = sent_this_window
                || within(past.last_sent.map(|(at, _)| at), timing.cooldown)
                || within(past.last_refused_at, timing.cooldown)
                || within(past.last_failed_at, timing.retry_failed_after);
            if !blocked {
                due.push(target.clone());
            }
        }
    }
    Decision { level, window, due }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use omg_shared::snapshot::BudgetWindow;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const TIMING: Timing = Timing {
        cooldown: HOUR,
        retry_failed_after: Duration::from_secs(60),
    };

    fn budget(window: BudgetWindow) -> BudgetPolicy {
        BudgetPolicy {
            limit_micro_usd: 10_000_000,
            warning_threshold: 0.8,
            window,
        }
    }

    fn targets() -> Vec<Target> {
        vec![
            Target::email("ops@example.com"),
            Target::webhook("https://hooks.example.com/x?token=secret"),
        ]
    }

    fn sent(level: BudgetLevel, target: &Target, when: &str, label: &str) -> History {
        let mut history = History::new();
        history.insert(
            (level, target.channel, target.recorded.clone()),
            TargetHistory {
                last_sent: Some((at(when), label.to_owned())),
                ..TargetHistory::default()
            },
        );
        history
    }

    #[test]
    fn levels_pick_the_alert_and_exceeded_supersedes_warning() {
        let b = budget(BudgetWindow::CalendarMonth);
        let now = at("2026-11-20T12:00:00Z");
        let d = decide(
            &b,
            Tz::UTC,
            7_999_999,
            &targets(),
            &History::new(),
            TIMING,
            now,
        );
        assert_eq!(d.level, BudgetLevel::Ok);
        assert!(d.due.is_empty());
        let d = decide(
            &b,
            Tz::UTC,
            8_000_000,
            &targets(),
            &History::new(),
            TIMING,
            now,
        );
        assert_eq!(d.level, BudgetLevel::Warning);
        assert_eq!(d.due, targets());
        // A warning already sent does not hold back the exceeded alert.
        let email = Target::email("ops@example.com");
        let history = sent(
            BudgetLevel::Warning,
            &email,
            "2026-11-20T11:59:00Z",
            "calendar_month:2026-11-01",
        );
        let d = decide(&b, Tz::UTC, 10_000_000, &targets(), &history, TIMING, now);
        assert_eq!(d.level, BudgetLevel::Exceeded);
        assert_eq!(d.due, targets());
        // No budget, no alert.
        let none = BudgetPolicy {
            limit_micro_usd: 0,
            ..b
        };
        let d = decide(
            &none,
            Tz::UTC,
            99_000_000,
            &targets(),
            &History::new(),
            TIMING,
            now,
        );
        assert_eq!(d.level, BudgetLevel::Ok);
        assert!(d.due.is_empty());
    }

    #[test]
    fn once_per_window_and_per_cooldown_per_target() {
        let b = budget(BudgetWindow::CalendarMonth);
        let email = Target::email("ops@example.com");
        let history = sent(
            BudgetLevel::Warning,
            &email,
            "2026-11-20T12:00:00Z",
            "calendar_month:2026-11-01",
        );
        // Same window, cooldown long over: still not again.
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            &targets(),
            &history,
            TIMING,
            at("2026-11-25T12:00:00Z"),
        );
        assert_eq!(d.due, vec![targets()[1].clone()], "only the webhook is due");
        // A new window within the cooldown waits for the cooldown.
        let history = sent(
            BudgetLevel::Warning,
            &email,
            "2026-11-30T23:30:00Z",
            "calendar_month:2026-11-01",
        );
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            std::slice::from_ref(&email),
            &history,
            TIMING,
            at("2026-12-01T00:10:00Z"),
        );
        assert!(d.due.is_empty());
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            std::slice::from_ref(&email),
            &history,
            TIMING,
            at("2026-12-01T00:31:00Z"),
        );
        assert_eq!(d.due, vec![email]);
    }

    #[test]
    fn calendar_month_rolls_over_in_the_reporting_timezone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let b = budget(BudgetWindow::CalendarMonth);
        let email = Target::email("ops@example.com");
        // Exceeded alert sent on Nov 20 (New York), November window.
        let history = sent(
            BudgetLevel::Exceeded,
            &email,
            "2026-11-20T15:00:00Z",
            "calendar_month:2026-11-01",
        );
        // 03:00 UTC on Dec 1 is still Nov 30 in New York: same window, nothing due.
        let d = decide(
            &b,
            tz,
            12_000_000,
            std::slice::from_ref(&email),
            &history,
            TIMING,
            at("2026-12-01T03:00:00Z"),
        );
        assert_eq!(d.window.label, "calendar_month:2026-11-01");
        assert!(d.due.is_empty());
        // 09:00 UTC is Dec 1 there: a new window whose spend is over the limit again.
        let d = decide(
            &b,
            tz,
            12_000_000,
            std::slice::from_ref(&email),
            &history,
            TIMING,
            at("2026-12-01T09:00:00Z"),
        );
        assert_eq!(d.window.label, "calendar_month:2026-12-01");
        assert_eq!(d.window.starts_at, at("2026-12-01T05:00:00Z"));
        assert_eq!(d.due, vec![email]);
    }

    #[test]
    fn rolling_seven_days_moves_its_label_daily() {
        let b = budget(BudgetWindow::RollingDays(7));
        let email = Target::email("ops@example.com");
        let now = at("2026-11-23T10:00:00Z");
        let d = decide(
            &b,
            Tz::UTC,
            8_500_000,
            std::slice::from_ref(&email),
            &History::new(),
            TIMING,
            now,
        );
        assert_eq!(d.window.label, "rolling_7d:2026-11-17");
        assert_eq!(d.due, vec![email.clone()]);
        let history = sent(
            BudgetLevel::Warning,
            &email,
            "2026-11-23T10:00:00Z",
            &d.window.label,
        );
        // Later the same day: same window.
        let later = decide(
            &b,
            Tz::UTC,
            8_500_000,
            std::slice::from_ref(&email),
            &history,
            TIMING,
            at("2026-11-23T23:00:00Z"),
        );
        assert!(later.due.is_empty());
        // Next day the oldest day left the window: a new window, still at warning.
        let next = decide(
            &b,
            Tz::UTC,
            8_500_000,
            std::slice::from_ref(&email),
            &history,
            TIMING,
            at("2026-11-24T00:30:00Z"),
        );
        assert_eq!(next.window.label, "rolling_7d:2026-11-18");
        assert_eq!(next.due, vec![email]);
    }

    #[test]
    fn failures_wait_the_retry_delay_and_refusals_the_cooldown() {
        let b = budget(BudgetWindow::Weekly);
        let hook = Target::webhook("https://hooks.example.com/x");
        let email = Target::email("ops@example.com");
        let mut history = History::new();
        history.insert(
            (
                BudgetLevel::Warning,
                Channel::Webhook,
                hook.recorded.clone(),
            ),
            TargetHistory {
                last_failed_at: Some(at("2026-11-24T12:00:00Z")),
                ..TargetHistory::default()
            },
        );
        history.insert(
            (BudgetLevel::Warning, Channel::Email, email.recorded.clone()),
            TargetHistory {
                last_refused_at: Some(at("2026-11-24T12:00:00Z")),
                ..TargetHistory::default()
            },
        );
        let both = [hook.clone(), email.clone()];
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            &both,
            &history,
            TIMING,
            at("2026-11-24T12:00:30Z"),
        );
        assert!(d.due.is_empty());
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            &both,
            &history,
            TIMING,
            at("2026-11-24T12:01:00Z"),
        );
        assert_eq!(d.due, vec![hook.clone()]);
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            &both,
            &history,
            TIMING,
            at("2026-11-24T13:00:00Z"),
        );
        assert_eq!(d.due, vec![hook, email]);
    }

    #[test]
    fn targets_are_recorded_without_secrets_and_deduplicated() {
        let hook = Target::webhook("https://user:pw@hooks.example.com:8443/a/b?token=t#frag");
        assert!(
            hook.recorded
                .starts_with("https://hooks.example.com:8443/…#")
                && !hook.recorded.contains("/a/b")
                && !hook.recorded.contains("token"),
            "{}",
            hook.recorded
        );
        let b = budget(BudgetWindow::Weekly);
        let twice = [hook.clone(), hook.clone()];
        let d = decide(
            &b,
            Tz::UTC,
            9_000_000,
            &twice,
            &History::new(),
            TIMING,
            at("2026-11-24T12:00:00Z"),
        );
        assert_eq!(d.due, vec![hook]);
        let since = history_since(&d.window, TIMING, at("2026-11-24T12:00:00Z"));
        assert_eq!(since, at("2026-11-23T00:00:00Z"));
    }
}
