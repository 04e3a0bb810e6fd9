//! The pieces of error mapping the adapters share: a provider's message passed on (cleaned,
//! shortened), and the errors told by the HTTP status alone.

use omg_shared::error::ErrorCode;
use serde::Deserialize;

use crate::error::{truncate, ApiError};

/// The `error` object of an error body `{"error": {…}}` (its default when the body has
/// none or is not JSON).
pub(crate) fn error_object<'a, T: Deserialize<'a> + Default>(body: &'a [u8]) -> T {
    #[derive(Deserialize)]
    #[serde(bound(deserialize = "T: Deserialize<'de>"))]
    struct Envelope<T> {
        #[serde(default)]
        error: Option<T>,
    }
    serde_json::from_slice::<Envelope<T>>(body)
        .ok()
        .and_then(|envelope| envelope.error)
        .unwrap_or_default()
}

/// Longest provider message passed on, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 500;

/// One line of printable text, at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn sanitize(message: &str) -> String {
    let line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(line.trim(), MAX_MESSAGE_CHARS)
}

/// A mistake in the client's request: the provider's `message`, cleaned, else `fallback`.
pub(crate) fn with_message(code: ErrorCode, message: Option<&str>, fallback: &str) -> ApiError {
    let message = message.map(sanitize).unwrap_or_default();
    if message.is_empty() {
        ApiError::new(code, fallback.to_owned())
    } else {
        ApiError::new(code, message)
    }
}

/// The provider refused the gateway's credentials (nothing of its answer is passed on).
pub(crate) fn credentials_refused() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamError,
        "The upstream refused the gateway's credentials.",
    )
}

/// The provider is rate limiting.
pub(crate) fn rate_limited() -> ApiError {
    ApiError::new(
        ErrorCode::RequestRateLimited,
        "The upstream is rate limiting; retry later.",
    )
}

/// The provider did not answer in time.
pub(crate) fn timed_out() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamTimeout,
        "The upstream did not answer in time.",
    )
}

/// The error told by the HTTP status alone (`None`: in a stream), for the statuses whose
/// reading every provider shares: 401/403, 429, 408/504 and the rest.
pub(crate) fn by_status(status: Option<u16>) -> ApiError {
    match status {
        Some(401 | 403) => credentials_refused(),
        Some(429) => rate_limited(),
        Some(408 | 504) => timed_out(),
        Some(status) => ApiError::new(
            ErrorCode::UpstreamError,
            format!("The upstream failed with HTTP {status}."),
        ),
        None => ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream failed while streaming.",
        ),
    }
}
