//! Anthropic errors → the gateway's OpenAI-shaped errors.
//!
//! Anthropic answers `{"type":"error","error":{"type","message"},"request_id"}` with an HTTP
//! status, and sends the same `error` object as an in-band stream event. Only mistakes in the
//! client's request keep Anthropic's message (cleaned and shortened); everything about the
//! gateway's own account (credentials, permissions, billing, unknown model) becomes a generic
//! upstream failure, so nothing of it reaches clients.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::providers::chat::error::{
    by_status, credentials_refused, error_object, rate_limited, timed_out, with_message,
};

/// Maps an Anthropic error answer (any non-200 status, with its body) to the error for the
/// client. The error `type` decides when the body has one, else the status. `retry-after` is
/// a header, so the glue copies it into [`ApiError::retry_after`].
pub fn map_error(status: u16, body: &[u8]) -> ApiError {
    classify(Some(status), &error_object(body))
}

/// The `error` object of an error body or stream event.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorDetail<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// The client's error for an Anthropic error type and/or HTTP status (`None` in a stream).
pub(super) fn classify(status: Option<u16>, detail: &ErrorDetail<'_>) -> ApiError {
    let upstream = |code: ErrorCode, message: &str| ApiError::new(code, message.to_owned());
    let too_large = || {
        client_error(
            ErrorCode::RequestTooLarge,
            detail,
            "The request is too large for the upstream.",
        )
    };
    match detail.kind.as_deref() {
        Some("invalid_request_error") if status == Some(413) => too_large(),
        Some("invalid_request_error") => client_error(
            ErrorCode::InvalidParameter,
            detail,
            "The upstream rejected the request.",
        ),
        Some("request_too_large") => too_large(),
        Some("authentication_error" | "permission_error") => credentials_refused(),
        Some("not_found_error") => upstream(
            ErrorCode::UpstreamError,
            "The upstream does not know the deployment's model or endpoint.",
        ),
        Some("billing_error") => upstream(
            ErrorCode::UpstreamError,
            "The upstream refused the gateway's account (billing).",
        ),
        Some("rate_limit_error") => rate_limited(),
        Some("timeout_error") => timed_out(),
        Some("overloaded_error") => upstream(
            ErrorCode::UpstreamError,
            "The upstream is overloaded; retry later.",
        ),
        Some("api_error") => upstream(
            ErrorCode::UpstreamError,
            "The upstream failed with an internal error.",
        ),
        _ => match status {
            Some(413) => too_large(),
            Some(status @ (400 | 422)) => upstream(
                ErrorCode::InvalidParameter,
                &format!("The upstream rejected the request with HTTP {status}."),
            ),
            status => by_status(status),
        },
    }
}

/// A mistake in the client's request: Anthropic's message, cleaned, else `fallback`.
fn client_error(code: ErrorCode, detail: &ErrorDetail<'_>, fallback: &str) -> ApiError {
    let mut error = with_message(code, detail.message.as_deref(), fallback);
    // OpenAI names `messages` for context overflows; clients match on it.
    if error.message.starts_with("prompt is too long") {
        error = error.with_param("messages");
    }
    error
}
