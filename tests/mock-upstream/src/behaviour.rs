//! Scripted behaviour: `+`-separated directives read from the instance's default behaviour
//! ([`MockUpstream::set_behaviour`](crate::MockUpstream::set_behaviour)), then (Azure routes)
//! the deployment name, then the request's `model` string, then the `x-mock-behaviour` header
//! (same syntax; later sources win).
//!
//! Unknown directives are ignored, so ordinary model names such as `gpt-4o-mini` behave
//! normally.

use std::time::Duration;

/// A scripted failure answered instead of the normal response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// `fail-500`: 500 `server_error`.
    Internal,
    /// `fail-502`: 502 `server_error` (a proxy in front of the model failed).
    BadGateway,
    /// `fail-503`: 503 `server_error` (overloaded).
    Unavailable,
    /// `fail-429`: 429 `rate_limit_exceeded` with `retry-after` (1 s unless
    /// `retry-after-<s>`).
    RateLimited,
    /// `fail-400`: 400 `invalid_request_error`.
    BadRequest,
    /// `fail-529`: 529, Anthropic's `overloaded_error` (a `server_error` on OpenAI routes).
    Overloaded,
}

/// Everything the directives of one request ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Behaviour {
    pub fail: Option<Fail>,
    /// `retry-after` of a `fail-429` answer, in seconds (`None`: 1).
    pub retry_after: Option<u64>,
    /// Sleep before the response headers.
    pub slow: Duration,
    /// Number of content chunks (`None`: the configured default).
    pub chunks: Option<usize>,
    /// Delay before each content chunk of a stream (each piece of a JSON answer).
    pub chunk_delay: Duration,
    /// Abort a stream after this many content chunks (a JSON answer after this many pieces).
    pub cut_after: Option<usize>,
    /// `gated`: an OpenAI-shaped stream sends each content chunk only once the test let it
    /// (`crate::open_gate`), so a test proves chunks are forwarded one by one, in lockstep,
    /// without measuring time.
    pub gated: bool,
    /// Never answer.
    pub hang: bool,
    /// The second stream event is not JSON.
    pub malformed: bool,
    /// Never send usage in streams.
    pub no_usage: bool,
    /// OpenAI chat route: answer as Text Generation Inference does.
    pub tgi: bool,
    /// Send the 200 response head, then drop the connection with a TCP reset.
    pub reset_after_headers: bool,
    /// `close-reused`: a request arriving on a kept-alive connection that already answered
    /// one is read, recorded and not answered: the connection is closed, as a server whose
    /// idle timeout fires just as the request arrives.
    pub close_reused: bool,
    /// `stream-error`: an Anthropic stream sends an `error` event after its first delta and
    /// ends.
    pub stream_error: bool,
    /// `corrupt-crc` (Bedrock): the second delta frame of a stream has a wrong CRC.
    pub corrupt_crc: bool,
    /// `content-filter`: Azure refuses the prompt (400 `content_filter`); Bedrock and Vertex
    /// image models filter every image, each in its own shape.
    pub content_filter: bool,
    /// `content-filter-completion`: the answer is cut short with `finish_reason:
    /// "content_filter"`.
    pub content_filter_completion: bool,
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
            "fail-502" => self.fail = Some(Fail::BadGateway),
            "fail-503" => self.fail = Some(Fail::Unavailable),
            "fail-429" => self.fail = Some(Fail::RateLimited),
            "fail-400" => self.fail = Some(Fail::BadRequest),
            "fail-529" => self.fail = Some(Fail::Overloaded),
            "stream-error" => self.stream_error = true,
            "corrupt-crc" => self.corrupt_crc = true,
            "content-filter" => self.content_filter = true,
            "content-filter-completion" => self.content_filter_completion = true,
            "hang" => self.hang = true,
            "malformed" => self.malformed = true,
            "no-usage" => self.no_usage = true,
            "tgi" => self.tgi = true,
            "reset-after-headers" => self.reset_after_headers = true,
            "close-reused" => self.close_reused = true,
            "gated" => self.gated = true,
            _ => {
                if let Some(ms) = number(directive, "slow-") {
                    self.slow = Duration::from_millis(ms);
                } else if let Some(n) = number(directive, "chunks-") {
                    self.chunks = usize::try_from(n).ok();
                } else if let Some(ms) = number(directive, "chunk-delay-") {
                    self.chunk_delay = Duration::from_millis(ms);
                } else if let Some(n) = number(directive, "cut-after-") {
                    self.cut_after = usize::try_from(n).ok();
                } else if let Some(seconds) = number(directive, "retry-after-") {
                    self.retry_after = Some(seconds);
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

    #[test]
    fn failures_retry_after_and_reset() {
        assert_eq!(parse("m+fail-502").fail, Some(Fail::BadGateway));
        assert_eq!(parse("m+fail-503").fail, Some(Fail::Unavailable));
        assert_eq!(parse("fail-503+fail-500").fail, Some(Fail::Internal));
        let b = parse("m+fail-429+retry-after-17");
        assert_eq!((b.fail, b.retry_after), (Some(Fail::RateLimited), Some(17)));
        assert_eq!(parse("fail-429").retry_after, None);
        assert_eq!(parse("retry-after-").retry_after, None);
        assert!(parse("m+reset-after-headers").reset_after_headers);
        assert!(!parse("m+reset-after-header").reset_after_headers);
        assert!(parse("m+close-reused").close_reused);
        assert_eq!(parse("m+fail-529").fail, Some(Fail::Overloaded));
    }

    #[test]
    fn provider_directives() {
        let b = parse("claude+stream-error+content-filter");
        assert!(b.stream_error && b.content_filter && !b.content_filter_completion);
        let b = parse("content-filter-completion");
        assert!(b.content_filter_completion && !b.content_filter);
    }

    #[test]
    fn later_sources_override_earlier_ones() {
        // The instance default, then the model, then the header.
        let mut b = Behaviour::default();
        for spec in ["fail-500+chunks-3", "gpt-test+chunks-4", "fail-503"] {
            b.apply(spec);
        }
        assert_eq!((b.fail, b.chunks), (Some(Fail::Unavailable), Some(4)));
    }
}
