//! Google API errors → the gateway's OpenAI-shaped errors.
//!
//! Google answers `{"error":{"code":400,"message":"…","status":"INVALID_ARGUMENT","details":[…]}}`
//! with an HTTP status, and a stream may carry the same `error` object as an event. Only
//! mistakes in the client's request (`INVALID_ARGUMENT`, `OUT_OF_RANGE`) keep Google's
//! message (cleaned and shortened); everything about the gateway's own account (credentials,
//! permissions, quota, project state, unknown model) becomes a generic upstream failure.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::providers::chat::error::{
    by_status, credentials_refused, error_object, rate_limited, timed_out, with_message,
};

/// Maps a Google error answer (any non-200 status, with its body) to the client's error.
pub fn map_error(status: u16, body: &[u8]) -> ApiError {
    classify(Some(status), &error_object(body))
}

/// The `error` object of an error body or stream event.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorDetail<'a> {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub status: Option<Cow<'a, str>>,
}

/// The client's error for a Google status name and/or HTTP status (`None` in a stream,
/// where the event's own `code` is used).
pub(super) fn classify(status: Option<u16>, detail: &ErrorDetail<'_>) -> ApiError {
    let upstream = |code: ErrorCode, message: &str| ApiError::new(code, message.to_owned());
    let status = status.or(detail.code);
    match detail.status.as_deref() {
        Some("INVALID_ARGUMENT" | "OUT_OF_RANGE") if status == Some(413) => too_large(detail),
        Some("INVALID_ARGUMENT" | "OUT_OF_RANGE") => client_error(detail),
        Some("UNAUTHENTICATED" | "PERMISSION_DENIED") => credentials_refused(),
        Some("NOT_FOUND") => upstream(
            ErrorCode::UpstreamError,
            "The upstream does not know the deployment's model, project or location.",
        ),
        Some("FAILED_PRECONDITION") => upstream(
            ErrorCode::UpstreamError,
            "The upstream refused the request because of the gateway's account or project state.",
        ),
        Some("RESOURCE_EXHAUSTED") => rate_limited(),
        Some("DEADLINE_EXCEEDED") => timed_out(),
        Some("UNAVAILABLE") => upstream(
            ErrorCode::UpstreamError,
            "The upstream is unavailable; retry later.",
        ),
        Some("INTERNAL" | "UNKNOWN") => upstream(
            ErrorCode::UpstreamError,
            "The upstream failed with an internal error.",
        ),
        _ => match status {
            Some(413) => too_large(detail),
            Some(400) => client_error(detail),
            status => by_status(status),
        },
    }
}

fn too_large(detail: &ErrorDetail<'_>) -> ApiError {
    with_message(
        ErrorCode::RequestTooLarge,
        detail.message.as_deref(),
        "The request is too large for the upstream.",
    )
}

/// A mistake in the client's request: Google's message, cleaned, else a generic one. A
/// prompt Imagen refuses ("… violate Google's Responsible AI practices …") is a 400
/// `content_filter` naming `prompt`.
fn client_error(detail: &ErrorDetail<'_>) -> ApiError {
    if detail
        .message
        .as_deref()
        .is_some_and(|m| m.contains("Responsible AI practices"))
    {
        return with_message(
            ErrorCode::ContentFilter,
            detail.message.as_deref(),
            "Google's safety filters refused the prompt.",
        )
        .with_param("prompt");
    }
    with_message(
        ErrorCode::InvalidParameter,
        detail.message.as_deref(),
        "The upstream rejected the request.",
    )
}
