//! The request flow as typed stages, each a plain function testable without a Pingora
//! `Session`: the request is authenticated (`crate::auth`), read in the OpenAI form
//! ([`ingress`]), then admitted ([`order`]: the deployments to try; [`admit`]: the estimate
//! a limit or budget takes), then attempted (an attempt ends in an [`outcome`]:
//! [`Served`](outcome::Served) or an [`AttemptError`](outcome::AttemptError), each with its
//! breaker verdict and metric label), then metered ([`meter`]: every metering decision, and
//! the request's closing state). `crate::proxy` runs these stages inside Pingora's phases
//! and does the session's reads and writes.

pub mod admit;
pub mod ingress;
pub mod meter;
pub mod order;
pub mod outcome;

use crate::error::ApiError;

/// Why handling stopped before a normal end.
#[derive(Debug)]
pub enum Failure {
    /// Answer this error (if no response has started).
    Api(ApiError),
    /// The client disconnected; nothing more can be sent.
    ClientGone,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Api(error)
    }
}
