//! Scripted behaviour: `+`-separated directives read from the request's `model` string and the
//! `x-mock-behaviour` header (same syntax, applied after the model's so it wins).
//!
//! Unknown directives are ignored, so ordinary model names such as `gpt-4o-mini` behave
//! normally.

use std::time::Duration;

/// A scripted failure answered instead of the normal response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// `fail-500`: 500 `server_error`.
    Internal,
    /// `fail-429`: 429 `rate_limit_exceeded` with `retry-after: 1`.
    RateLimited,
    /// `fail-400`: 400 `invalid_request_error`.
    BadRequest,
}

/// Everything the directives of one request ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Behaviour {
    pub fail: Option<Fail>,
    /// Sleep before the response headers.
    pub slow: Duration,
    /// Number of content chunks (`None`: the configured default).
    pub chunks: Option<usize>,
    /// Delay before each content chunk of a stream.
    pub chunk_delay: Duration,
    /// Abort a stream after this many content chunks.
    pub cut_after: Option<usize>,
    /// Never answer.
    pub hang: bool,
    /// The second stream event is not JSON.
    pub malformed: bool,
    /// Never send usage in streams.
    pub no_usage: bool,
}

impl Behaviour {
    /// Applies every directive of `spec` (later ones override earlier ones).
    pub(crate) fn apply(&mut self, spec: &str) {
        for directive in spec.split('+').map(str::trim) {
            self.apply_one(directive);
        }
    }

    fn apply_one(&mut self, directive: &str) {
        match directive {
            "fail-500" => self.fail = Some(Fail::Internal),
            "fail-429" => self.fail = Some(Fail::RateLimited),
            "fail-400" => self.fail = Some(Fail::BadRequest),
            "hang" => self.hang = true,
            "malformed" => self.malformed = true,
            "no-usage" => self.no_usage = true,
            _ => {
                if let Some(ms) = number(directive, "slow-") {
                    self.slow = Duration::from_millis(ms);
                } else if let Some(n) = number(directive, "chunks-") {
                    self.chunks = usize::try_from(n).ok();
                } else if let Some(ms) = number(directive, "chunk-delay-") {
                    self.chunk_delay = Duration::from_millis(ms);
                } else if let Some(n) = number(directive, "cut-after-") {
                    self.cut_after = usize::try_from(n).ok();
                }
            }
        }
    }
}

/// The number after `prefix`, if the directive is exactly `prefix<digits>`.
fn number(directive: &str, prefix: &str) -> Option<u64> {
    let digits = directive.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Behaviour {
        let mut behaviour = Behaviour::default();
        behaviour.apply(spec);
        behaviour
    }

    #[test]
    fn ordinary_model_names_script_nothing() {
        assert_eq!(parse("gpt-4o-mini"), Behaviour::default());
        assert_eq!(parse("slow-model"), Behaviour::default());
        assert_eq!(parse(""), Behaviour::default());
    }

    #[test]
    fn directives_combine() {
        let b = parse("gpt-test+chunk-delay-50+cut-after-3+chunks-7+slow-20+no-usage+malformed");
        assert_eq!(b.chunk_delay, Duration::from_millis(50));
        assert_eq!(b.cut_after, Some(3));
        assert_eq!(b.chunks, Some(7));
        assert_eq!(b.slow, Duration::from_millis(20));
        assert!(b.no_usage && b.malformed && !b.hang);
        assert_eq!(parse("x+fail-429").fail, Some(Fail::RateLimited));
        assert_eq!(parse("fail-500+fail-400").fail, Some(Fail::BadRequest));
        assert_eq!(parse("chunks-+chunks-x1").chunks, None);
    }
}
