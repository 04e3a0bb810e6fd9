//! The time range of a report: `timezone` (IANA), then `start`+`end` (RFC 3339, both or
//! neither, at most 180 days) or `period` (`Nd`: the last N local days, today included),
//! resolved to rollup hours and the list of local days.

use chrono::{DateTime, Days, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::service::error::{Error, Result};

/// The longest range a report covers.
pub const MAX_DAYS: i64 = 180;
/// The period when neither `period` nor `start`+`end` is given.
pub const DEFAULT_PERIOD_DAYS: u64 = 30;

/// What the caller asked for (query-string values, unparsed).
#[derive(Debug, Clone, Default)]
pub struct RangeInput {
    pub period: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
}

/// A resolved range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub timezone: Tz,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The local days covered, in order.
    pub days: Vec<NaiveDate>,
}

impl Range {
    /// The rollup hours of the range: those whose middle lies in `[start, end)`, i.e. the
    /// bounds rounded to the nearest hour (exact when they are on hour boundaries).
    pub fn hours(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let half = Duration::minutes(30);
        (self.start - half, self.end - half)
    }
}

/// Parses an IANA timezone name; `field` names the query parameter in the error.
pub fn parse_timezone(name: &str, field: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::invalid(
            field,
            format!(
                "unknown timezone {name:?}: give an IANA name such as `UTC`, \
                 `Europe/Paris` or `America/New_York`"
            ),
        )
    })
}

fn parse_instant(text: &str, field: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::invalid(
                field,
                format!("{text:?} is not an RFC 3339 timestamp ({e}); e.g. 2026-01-01T00:00:00Z"),
            )
        })
}

fn parse_period(text: &str) -> Result<u64> {
    let days = text
        .strip_suffix('d')
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| (1..=MAX_DAYS as u64).contains(n));
    days.ok_or_else(|| {
        Error::invalid(
            "period",
            format!(
                "{text:?} is not a period: give a number of days from 1d to {MAX_DAYS}d \
                 (e.g. 7d, 30d, 90d), or `start` and `end`"
            ),
        )
    })
}

/// The instant local `day` starts in `tz` (the first valid local time when midnight falls in
/// a DST gap).
fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut local = day.and_time(NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc);
        }
        local += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN))
}

fn local_days(tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<NaiveDate> {
    let first = start.with_timezone(&tz).date_naive();
    let last = (end - Duration::microseconds(1))
        .with_timezone(&tz)
        .date_naive();
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// Resolves `input` at `now`; `default_timezone` is `reporting.timezone`.
pub fn resolve(input: &RangeInput, default_timezone: &str, now: DateTime<Utc>) -> Result<Range> {
    let timezone = match &input.timezone {
        Some(name) => parse_timezone(name, "timezone")?,
        None => parse_timezone(default_timezone, "reporting.timezone")?,
    };
    let (start, end) = match (&input.start, &input.end) {
        (Some(start), Some(end)) => {
            let start = parse_instant(start, "start")?;
            let end = parse_instant(end, "end")?;
            if start >= end {
                return Err(Error::invalid("end", "`end` must be after `start`"));
            }
            if end - start > Duration::days(MAX_DAYS) {
                return Err(Error::invalid(
                    "end",
                    format!("a range covers at most {MAX_DAYS} days: move `start` or `end`"),
                ));
            }
            (start, end)
        }
        (Some(_), None) => return Err(both_or_neither("end")),
        (None, Some(_)) => return Err(both_or_neither("start")),
        (None, None) => {
            let days = match &input.period {
                Some(text) => parse_period(text)?,
                None => DEFAULT_PERIOD_DAYS,
            };
            let today = now.with_timezone(&timezone).date_naive();
            let first = today - Days::new(days - 1);
            let tomorrow = today + Days::new(1);
            (day_start(timezone, first), day_start(timezone, tomorrow))
        }
    };
    Ok(Range {
        timezone,
        start,
        end,
        days: local_days(timezone, start, end),
    })
}

fn both_or_neither(missing: &str) -> Error {
    Error::invalid(
        missing,
        format!("`start` and `end` go together: give `{missing}` too, or neither (then `period`)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(period: Option<&str>, start: Option<&str>, end: Option<&str>) -> RangeInput {
        RangeInput {
            period: period.map(str::to_owned),
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
            timezone: Some("America/New_York".to_owned()),
        }
    }

    #[test]
    fn periods_are_local_days_across_dst() {
        // 2026-03-08 is the spring-forward day in New York (23 hours).
        let now = Utc.with_ymd_and_hms(2026, 3, 9, 15, 0, 0).unwrap();
        let range = resolve(&input(Some("2d"), None, None), "UTC", now).unwrap();
        assert_eq!(
            range.start,
            Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap()
        );
        assert_eq!(
            range.end,
            Utc.with_ymd_and_hms(2026, 3, 10, 4, 0, 0).unwrap()
        );
        assert_eq!(range.days.len(), 2);
    }

    #[test]
    fn caps_and_pairs() {
        let now = Utc::now();
        let err = resolve(&input(None, Some("2026-01-01T00:00:00Z"), None), "UTC", now);
        assert_eq!(err.unwrap_err().field(), Some("end"));
        let err = resolve(
            &input(
                None,
                Some("2026-01-01T00:00:00Z"),
                Some("2026-06-30T00:00:01Z"),
            ),
            "UTC",
            now,
        );
        assert_eq!(err.unwrap_err().field(), Some("end"));
        assert!(resolve(
            &input(
                None,
                Some("2026-01-01T00:00:00Z"),
                Some("2026-06-30T00:00:00Z")
            ),
            "UTC",
            now
        )
        .is_ok());
        assert_eq!(
            resolve(&input(Some("181d"), None, None), "UTC", now)
                .unwrap_err()
                .field(),
            Some("period")
        );
        let bad_zone = RangeInput {
            timezone: Some("Mars/Olympus".to_owned()),
            ..RangeInput::default()
        };
        assert_eq!(
            resolve(&bad_zone, "UTC", now).unwrap_err().field(),
            Some("timezone")
        );
    }
}
