//! What a data plane's answer to a batch line means (pure): done (with its usage), failed,
//! a budget stop, or "send it again later" (a rate limit, an overload, the line still running
//! from an earlier send), and how long the batch should wait to keep `headroom_percent` of the
//! key's limits free.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// The error code a data plane answers when a budget is spent (429, `x-should-retry: false`).
pub const BUDGET_EXCEEDED: &str = "budget_exceeded";

/// Wait after a 429/503 that names no time.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// Longest wait taken from an answer (a wrong header must not park a batch for hours).
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Tokens an answer reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    pub cached: i64,
    pub output: i64,
    pub reasoning: i64,
}

/// What to do with a line after its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Done(Tokens),
    /// Answered with an error that another send would not fix: the line fails.
    Failed { code: String, message: String },
    /// A budget is spent: the line fails and the batch stops.
    Stop { code: String, message: String },
    /// Not now (rate limited, overloaded, still running): back to pending; the batch waits.
    Retry(Duration),
}

/// Reads an answer: `status`, its headers and body.
pub fn verdict(status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Done(usage_of(body));
    }
    let (code, message) = error_of(status, body);
    match status {
        429 if code == BUDGET_EXCEEDED => Verdict::Stop { code, message },
        429 | 503 => Verdict::Retry(retry_after(headers).unwrap_or(DEFAULT_RETRY)),
        // The same Idempotency-Key is still running (the line was sent before a crash).
        409 if code == "idempotency_key_in_use" => Verdict::Retry(DEFAULT_RETRY),
        _ => Verdict::Failed { code, message },
    }
}

/// The OpenAI error of a body (`code`, else `type`, else `http_<status>`) and its message.
pub fn error_of(status: u16, body: &[u8]) -> (String, String) {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error = &value["error"];
    let code = error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .map_or_else(|| format!("http_{status}"), str::to_owned);
    let message = error["message"].as_str().map_or_else(
        || format!("The data plane answered HTTP {status}."),
        str::to_owned,
    );
    (code, message)
}

/// `retry-after-ms`, `retry-after` (seconds) or the later `x-ratelimit-reset-*`, capped.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let wait = text("retry-after-ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .or_else(|| {
            text("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        })
        .or_else(|| {
            let requests = text("x-ratelimit-reset-requests").and_then(go_duration);
            let tokens = text("x-ratelimit-reset-tokens").and_then(go_duration);
            requests.max(tokens)
        })?;
    Some(wait.min(MAX_WAIT))
}

/// How long to wait before more lines of this key are sent, when less than `percent` % of
/// its requests or tokens remain in the window (`x-ratelimit-*` of a successful answer).
pub fn headroom_wait(headers: &HeaderMap, percent: u8) -> Option<Duration> {
    if percent == 0 {
        return None;
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let reset = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(go_duration)
    };
    let mut wait: Option<Duration> = None;
    for kind in ["requests", "tokens"] {
        let (Some(limit), Some(remaining)) = (
            number(&format!("x-ratelimit-limit-{kind}")),
            number(&format!("x-ratelimit-remaining-{kind}")),
        ) else {
            continue;
        };
        if limit > 0 && remaining.saturating_mul(100) < limit.saturating_mul(u64::from(percent)) {
            let until = reset(&format!("x-ratelimit-reset-{kind}")).unwrap_or(DEFAULT_RETRY);
            wait = wait.max(Some(until.min(MAX_WAIT)));
        }
    }
    wait
}

/// A Go-style duration as OpenAI's reset headers send it: `1s`, `6m0s`, `12ms`, `1h2m3.5s`.
pub fn go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

/// The usage of an answer body: OpenAI's (`prompt_tokens`, `completion_tokens` and their
/// details) or Anthropic's Messages (`input_tokens`, `output_tokens`, cache reads).
pub fn usage_of(body: &[u8]) -> Tokens {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let usage = &value["usage"];
    let n = |v: &serde_json::Value| v.as_i64().unwrap_or(0).max(0);
    if usage.get("prompt_tokens").is_some() {
        Tokens {
            input: n(&usage["prompt_tokens"]),
            cached: n(&usage["prompt_tokens_details"]["cached_tokens"]),
            output: n(&usage["completion_tokens"]),
            reasoning: n(&usage["completion_tokens_details"]["reasoning_tokens"]),
        }
    } else {
        let cache_read = n(&usage["cache_read_input_tokens"]);
        let cache_write = n(&usage["cache_creation_input_tokens"]);
        Tokens {
            input: n(&usage["input_tokens"])
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            cached: cache_read,
            output: n(&usage["output_tokens"]),
            reasoning: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("5x"), None);
        assert_eq!(go_duration("s"), None);
    }

    #[test]
    fn verdicts() {
        let none = HeaderMap::new();
        let body = br#"{"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(
            verdict(200, &none, body),
            Verdict::Done(Tokens {
                input: 7,
                cached: 2,
                output: 3,
                reasoning: 1
            })
        );
        let budget = br#"{"error":{"message":"The key's budget is spent","type":"insufficient_quota","param":null,"code":"budget_exceeded"}}"#;
        assert_eq!(
            verdict(429, &none, budget),
            Verdict::Stop {
                code: "budget_exceeded".into(),
                message: "The key's budget is spent".into()
            }
        );
        let limited = br#"{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            verdict(429, &headers(&[("retry-after", "3")]), limited),
            Verdict::Retry(Duration::from_secs(3))
        );
        assert_eq!(
            verdict(
                503,
                &headers(&[("retry-after-ms", "250"), ("retry-after", "1")]),
                b""
            ),
            Verdict::Retry(Duration::from_millis(250))
        );
        assert_eq!(
            verdict(503, &none, b"garbage"),
            Verdict::Retry(DEFAULT_RETRY)
        );
        let in_use =
            br#"{"error":{"message":"m","type":"t","param":null,"code":"idempotency_key_in_use"}}"#;
        assert_eq!(verdict(409, &none, in_use), Verdict::Retry(DEFAULT_RETRY));
        assert_eq!(
            verdict(404, &none, br#"{"error":{"message":"no model","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#),
            Verdict::Failed { code: "model_not_found".into(), message: "no model".into() }
        );
        assert_eq!(
            verdict(502, &none, b"<html>"),
            Verdict::Failed {
                code: "http_502".into(),
                message: "The data plane answered HTTP 502.".into()
            }
        );
    }

    #[test]
    fn waits_come_from_the_headers_and_are_capped() {
        let reset = headers(&[
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(retry_after(&reset), Some(MAX_WAIT));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn headroom_keeps_a_share_of_the_limits_free() {
        let plenty = headers(&[
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "50"),
            ("x-ratelimit-reset-requests", "30s"),
        ]);
        assert_eq!(headroom_wait(&plenty, 20), None);
        let low = headers(&[
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "19"),
            ("x-ratelimit-reset-requests", "30s"),
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "900"),
        ]);
        assert_eq!(headroom_wait(&low, 20), Some(Duration::from_secs(30)));
        assert_eq!(headroom_wait(&low, 0), None);
        // No limit (0) never waits.
        let unlimited = headers(&[
            ("x-ratelimit-limit-requests", "0"),
            ("x-ratelimit-remaining-requests", "0"),
        ]);
        assert_eq!(headroom_wait(&unlimited, 50), None);
    }

    #[test]
    fn usage_of_openai_and_anthropic_answers() {
        assert_eq!(usage_of(b"{}"), Tokens::default());
        let embeddings = br#"{"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(
            usage_of(embeddings),
            Tokens {
                input: 4,
                ..Tokens::default()
            }
        );
        let messages =
            br#"{"usage":{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":3}}"#;
        assert_eq!(
            usage_of(messages),
            Tokens {
                input: 8,
                cached: 3,
                output: 2,
                reasoning: 0
            }
        );
    }
}
