//! Budget windows and levels, in the reporting timezone (`reporting.timezone`).
//!
//! Spend is counted per local day; a window is a run of days ending today:
//! `calendar_month` from the 1st, `weekly` from Monday, `rolling_<N>d` the last N days
//! (today included). Both planes use this one definition: the data plane to pick the day
//! counters it checks and to write `X-Budget-*`, the control plane to rebuild those counters
//! from Postgres, show spend in listings and decide alerts.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::money::MicroUsd;
use crate::snapshot::BudgetWindow;

/// Parses an IANA timezone name (`UTC`, `Europe/Paris`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("`{name}` is not an IANA timezone; use a name such as `UTC` or `Europe/Paris`")
    })
}

/// The local day of an instant.
pub fn local_day(tz: Tz, instant: DateTime<Utc>) -> NaiveDate {
    instant.with_timezone(&tz).date_naive()
}

/// The instant a local day starts (the first existing local time at or after 00:00, for
/// zones whose DST change skips midnight).
pub fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    for hour in 0..4 {
        if let Some(start) = tz
            .from_local_datetime(&(midnight + Duration::hours(hour)))
            .earliest()
        {
            return start.with_timezone(&Utc);
        }
    }
    // No zone skips four hours; treat the local midnight as UTC rather than fail.
    midnight.and_utc()
}

/// The current window of a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpan {
    /// Local days counted, oldest first; the last is today.
    pub days: Vec<NaiveDate>,
    /// When the window started.
    pub starts_at: DateTime<Utc>,
    /// When spend next drops: the next window (calendar, weekly) or the oldest day leaving
    /// (rolling).
    pub resets_at: DateTime<Utc>,
    /// Stable name of this window, e.g. `calendar_month:2026-11-01`: alert state is kept
    /// per window.
    pub label: String,
}

impl WindowSpan {
    /// The window of `window` containing `now`.
    pub fn current(window: BudgetWindow, tz: Tz, now: DateTime<Utc>) -> Self {
        let today = local_day(tz, now);
        let (first, next) = match window {
            BudgetWindow::CalendarMonth => {
                let first = today.with_day(1).unwrap_or(today);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .unwrap_or(today + Duration::days(31));
                (first, next)
            }
            BudgetWindow::Weekly => {
                let first =
                    today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
                (first, first + Duration::days(7))
            }
            BudgetWindow::RollingDays(days) => (
                today - Duration::days(i64::from(days.max(1)) - 1),
                today + Duration::days(1),
            ),
        };
        let days = first.iter_days().take_while(|day| *day <= today).collect();
        Self {
            days,
            starts_at: day_start(tz, first),
            resets_at: day_start(tz, next),
            label: format!("{}:{first}", window.as_string()),
        }
    }
}

/// Where a spend stands against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BudgetLevel {
    /// Below the warning threshold.
    Ok,
    /// At or above the warning threshold.
    Warning,
    /// At or above the limit.
    Exceeded,
}

impl BudgetLevel {
    /// The spelling in alerts and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Exceeded => "exceeded",
        }
    }
}

/// The spend where the warning starts: `limit × threshold`, rounded up.
pub fn warning_at(limit: MicroUsd, threshold: f64) -> MicroUsd {
    let threshold = if threshold.is_finite() {
        threshold.clamp(0.0, 1.0)
    } else {
        1.0
    };
    // Exact for any realistic limit (below 2^53 micro-USD = $9 billion).
    ((limit as f64) * threshold).ceil() as MicroUsd
}

/// The level of `spent` against a budget.
pub fn level(limit: MicroUsd, threshold: f64, spent: MicroUsd) -> BudgetLevel {
    if spent >= limit {
        BudgetLevel::Exceeded
    } else if spent >= warning_at(limit, threshold) {
        BudgetLevel::Warning
    } else {
        BudgetLevel::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn calendar_month_follows_the_reporting_timezone() {
        let tz = parse_timezone("America/New_York").unwrap_or(Tz::UTC);
        // 03:00 UTC on Dec 1 is still Nov 30 in New York.
        let span = WindowSpan::current(BudgetWindow::CalendarMonth, tz, at("2026-12-01T03:00:00Z"));
        assert_eq!(span.days.first(), Some(&day("2026-11-01")));
        assert_eq!(span.days.last(), Some(&day("2026-11-30")));
        assert_eq!(span.days.len(), 30);
        assert_eq!(span.starts_at, at("2026-11-01T04:00:00Z"));
        assert_eq!(span.resets_at, at("2026-12-01T05:00:00Z"));
        assert_eq!(span.label, "calendar_month:2026-11-01");
        // Six hours later it is December there too: a new window with one day.
        let next = WindowSpan::current(BudgetWindow::CalendarMonth, tz, at("2026-12-01T09:00:00Z"));
        assert_eq!(next.days, vec![day("2026-12-01")]);
        assert_ne!(next.label, span.label);
    }

    #[test]
    fn december_rolls_into_january() {
        let span = WindowSpan::current(
            BudgetWindow::CalendarMonth,
            Tz::UTC,
            at("2026-12-31T23:59:59Z"),
        );
        assert_eq!(span.resets_at, at("2027-01-01T00:00:00Z"));
        assert_eq!(span.days.len(), 31);
    }

    #[test]
    fn weekly_starts_on_monday() {
        // 2026-11-23 is a Monday; 2026-11-29 a Sunday.
        let span = WindowSpan::current(BudgetWindow::Weekly, Tz::UTC, at("2026-11-29T12:00:00Z"));
        assert_eq!(span.days.first(), Some(&day("2026-11-23")));
        assert_eq!(span.days.len(), 7);
        assert_eq!(span.resets_at, at("2026-11-30T00:00:00Z"));
    }

    #[test]
    fn rolling_window_keeps_the_last_n_days() {
        let tz = parse_timezone("Asia/Tokyo").unwrap_or(Tz::UTC);
        let span =
            WindowSpan::current(BudgetWindow::RollingDays(7), tz, at("2026-11-23T16:00:00Z"));
        // 01:00 on Nov 24 in Tokyo.
        assert_eq!(span.days.first(), Some(&day("2026-11-18")));
        assert_eq!(span.days.last(), Some(&day("2026-11-24")));
        assert_eq!(span.resets_at, at("2026-11-24T15:00:00Z"));
    }

    #[test]
    fn dst_gap_at_midnight_starts_the_day_at_the_first_real_time() {
        // Santiago skipped 2022-09-11 00:00 → 01:00 (UTC-4 → UTC-3).
        let tz = parse_timezone("America/Santiago").unwrap_or(Tz::UTC);
        assert_eq!(day_start(tz, day("2022-09-11")), at("2022-09-11T04:00:00Z"));
    }

    #[test]
    fn levels_and_thresholds() {
        assert_eq!(warning_at(1_000_000, 0.8), 800_000);
        assert_eq!(level(1_000_000, 0.8, 799_999), BudgetLevel::Ok);
        assert_eq!(level(1_000_000, 0.8, 800_000), BudgetLevel::Warning);
        assert_eq!(level(1_000_000, 0.8, 1_000_000), BudgetLevel::Exceeded);
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
