//! Typed attempt outcomes: why an attempt at one deployment failed, how a relayed stream
//! ended, and what each means for the deployment's breaker and the metric labels.

use omg_shared::error::ErrorCode;

use super::Failure;
use crate::error::ApiError;
use crate::providers::StreamFault;
use crate::routing::Outcome;

/// How an attempt failed in a way worth trying the next deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The adapter is not ready (a credential minted in the background is not there yet):
    /// nothing was sent.
    Credentials,
    /// The upstream host did not resolve.
    Dns,
    /// The connection failed.
    Connect,
    /// The connection was not made in time.
    ConnectTimeout,
    /// The upstream did not answer (or finish answering) in time.
    Timeout,
    /// The upstream broke the exchange (closed, cut, or answered something unreadable).
    Protocol,
    /// The upstream answered 429.
    RateLimited,
    /// The upstream answered 5xx.
    ServerError,
    /// The upstream refused the gateway's credentials (401, 403).
    Auth,
    /// The upstream does not know the configured model, deployment or path (404).
    NotFound,
    /// The stream ended (or broke) before its first bytes.
    EmptyStream,
}

impl Fault {
    /// The metric label (`omg_upstream_errors_total`, `omg_upstream_attempts_total`).
    pub fn label(self) -> &'static str {
        match self {
            Fault::Credentials => "credentials",
            Fault::Dns => "dns",
            Fault::Connect => "connect",
            Fault::ConnectTimeout => "connect_timeout",
            Fault::Timeout => "timeout",
            Fault::Protocol => "protocol",
            Fault::RateLimited => "status_429",
            Fault::ServerError => "status_5xx",
            Fault::Auth => "auth",
            Fault::NotFound => "not_found",
            Fault::EmptyStream => "stream_interrupted",
        }
    }
}

/// An attempt that failed for the deployment's reasons: the next may be tried.
#[derive(Debug)]
pub struct Retryable {
    /// How it failed.
    pub fault: Fault,
    /// What the client gets if no other attempt succeeds.
    pub error: ApiError,
}

impl Retryable {
    /// A failure of `fault`, answered with `error` if it is the last.
    pub fn new(fault: Fault, error: ApiError) -> Self {
        Self { fault, error }
    }

    /// What the deployment's breaker hears; `None` when nothing was sent (no verdict on
    /// the upstream, so a slow start trips no breaker).
    pub fn breaker_outcome(&self) -> Option<Outcome> {
        match self.fault {
            Fault::Credentials => None,
            Fault::RateLimited => Some(Outcome::RateLimited(
                self.error.retry_after.map(|s| s.saturating_mul(1000)),
            )),
            fault => Some(Outcome::Failure(fault.label())),
        }
    }
}

/// Why one attempt did not produce a response for the client.
#[derive(Debug)]
pub enum AttemptError {
    /// Worth trying the next deployment.
    Retryable(Retryable),
    /// Final (a client error from the upstream, or the client left).
    Final(Failure),
}

impl AttemptError {
    /// A retryable failure.
    pub fn retry(fault: Fault, error: ApiError) -> Self {
        AttemptError::Retryable(Retryable::new(fault, error))
    }
}

impl From<Failure> for AttemptError {
    fn from(failure: Failure) -> Self {
        AttemptError::Final(failure)
    }
}

/// How a stream that reached the client ended broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamBreak {
    /// The provider sent an error event (its translator passed it on in-band).
    UpstreamError,
    /// The provider's stream could not be read (the translator's fault).
    Unreadable(StreamFault),
    /// The upstream stalled past the idle timeout.
    IdleTimeout,
    /// The upstream connection broke.
    Interrupted,
    /// The upstream ended its stream cleanly, but before the answer was complete.
    Incomplete,
    /// The stream outlived `server.stream_max_duration`.
    MaxDuration,
}

impl StreamBreak {
    /// The request's error code (usage record, access log) and metric label.
    pub fn label(self) -> &'static str {
        match self {
            StreamBreak::UpstreamError => "upstream_stream_error",
            StreamBreak::Unreadable(fault) => fault.kind,
            StreamBreak::IdleTimeout => "stream_idle_timeout",
            StreamBreak::Interrupted | StreamBreak::Incomplete => "stream_interrupted",
            StreamBreak::MaxDuration => "stream_max_duration",
        }
    }

    /// The in-band error event the gateway ends the stream with; `None` when the provider's
    /// own error event was already passed on.
    pub fn in_band(self) -> Option<StreamFault> {
        let fault = |kind, code, message| StreamFault {
            kind,
            code,
            message,
        };
        let label = self.label();
        match self {
            StreamBreak::UpstreamError => None,
            StreamBreak::Unreadable(fault) => Some(fault),
            StreamBreak::IdleTimeout => Some(fault(
                label,
                ErrorCode::UpstreamTimeout,
                "The upstream stream stalled and was cut by the gateway.",
            )),
            StreamBreak::Interrupted => Some(fault(
                label,
                ErrorCode::UpstreamError,
                "The upstream stream was interrupted.",
            )),
            StreamBreak::Incomplete => Some(fault(
                label,
                ErrorCode::UpstreamError,
                "The upstream stream ended before it was complete.",
            )),
            StreamBreak::MaxDuration => Some(fault(
                label,
                ErrorCode::UpstreamTimeout,
                "The stream exceeded the gateway's maximum duration.",
            )),
        }
    }

    /// What the deployment's breaker hears: a stream cut for its length is the gateway's
    /// doing, not the deployment's failure.
    pub fn breaker_outcome(self) -> Outcome {
        match self {
            StreamBreak::MaxDuration => Outcome::Success,
            broken => Outcome::Failure(broken.label()),
        }
    }
}

/// An attempt that answered the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A complete answer (or the provider's client error, passed on).
    Answered,
    /// A stream that reached the client and then broke.
    Broken(StreamBreak),
}

impl Served {
    /// What the deployment's breaker hears.
    pub fn breaker_outcome(self) -> Outcome {
        match self {
            Served::Answered => Outcome::Success,
            Served::Broken(broken) => broken.breaker_outcome(),
        }
    }

    /// The attempt's metric label.
    pub fn label(self) -> &'static str {
        match self.breaker_outcome() {
            Outcome::Failure(label) => label,
            _ => "ok",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_verdicts_are_the_metric_contract() {
        let retry = |fault| Retryable::new(fault, ApiError::new(ErrorCode::UpstreamError, "x"));
        assert_eq!(retry(Fault::Credentials).breaker_outcome(), None);
        assert_eq!(
            retry(Fault::ServerError).breaker_outcome(),
            Some(Outcome::Failure("status_5xx"))
        );
        let mut limited = retry(Fault::RateLimited);
        limited.error.retry_after = Some(3);
        assert_eq!(
            limited.breaker_outcome(),
            Some(Outcome::RateLimited(Some(3000)))
        );
        assert_eq!(Served::Answered.label(), "ok");
        assert_eq!(Served::Broken(StreamBreak::MaxDuration).label(), "ok");
        assert_eq!(
            Served::Broken(StreamBreak::IdleTimeout).breaker_outcome(),
            Outcome::Failure("stream_idle_timeout")
        );
        assert_eq!(
            Served::Broken(StreamBreak::UpstreamError).label(),
            "upstream_stream_error"
        );
        assert_eq!(
            Served::Broken(StreamBreak::Unreadable(StreamFault::MALFORMED)).label(),
            "upstream_protocol"
        );
    }
}
