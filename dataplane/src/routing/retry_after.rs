//! How long a rate-limiting provider asks to be left alone, from its response headers.
//!
//! - `retry-after-ms` (OpenAI, Azure OpenAI): milliseconds, possibly fractional; the most
//!   precise, so it wins when valid;
//! - `retry-after` (RFC 9110): delay-seconds, or an HTTP-date (then the time left until it,
//!   0 when past); fractional seconds, which some servers send, are taken too.
//!
//! Partial seconds round up: a client told `1` after `retry-after-ms: 200` does not come
//! back too early.

use std::time::SystemTime;

/// The wait in whole seconds, `None` when neither header is there or readable.
pub fn seconds(
    retry_after: Option<&str>,
    retry_after_ms: Option<&str>,
    now: SystemTime,
) -> Option<u64> {
    retry_after_ms
        .and_then(|ms| ceil_seconds(ms, 1000.0))
        .or_else(|| retry_after.and_then(|value| from_retry_after(value, now)))
}

/// `value / per_second`, rounded up, for a finite non-negative number.
fn ceil_seconds(value: &str, per_second: f64) -> Option<u64> {
    let value: f64 = value.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    // Saturates at u64::MAX for absurd values (`as` on a float clamps).
    Some((value / per_second).ceil() as u64)
}

fn from_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(whole) = value.parse::<u64>() {
        return Some(whole);
    }
    if let Some(seconds) = ceil_seconds(value, 1.0) {
        return Some(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).map_or(0, |left| {
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_seconds_milliseconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        for (retry_after, ms, expected) in [
            (Some("7"), None, Some(7)),
            (Some(" 0 "), None, Some(0)),
            (Some("1.5"), None, Some(2)),
            (None, Some("200"), Some(1)),
            (None, Some("2000"), Some(2)),
            (None, Some("2500.5"), Some(3)),
            (Some("30"), Some("1500"), Some(2)),
            (Some("30"), Some("soon"), Some(30)),
            (Some(date.as_str()), None, Some(42)),
            (Some("Thu, 01 Jan 1970 00:00:00 GMT"), None, Some(0)),
            (Some("-3"), None, None),
            (Some("NaN"), None, None),
            (Some("later"), Some("-1"), None),
            (None, None, None),
        ] {
            assert_eq!(
                seconds(retry_after, ms, now),
                expected,
                "{retry_after:?} {ms:?}"
            );
        }
    }
}
