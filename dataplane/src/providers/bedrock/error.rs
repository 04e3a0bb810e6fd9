//! Bedrock errors → the gateway's OpenAI-shaped errors.
//!
//! Bedrock answers errors with an HTTP status, an `x-amzn-ErrorType` header and a body
//! `{"message": "…"}` (some services write `Message`, or add `__type`). The glue handles 401,
//! 403, 404, 429 and 5xx as the deployment's failures (next deployment, operator log); what
//! reaches [`map_error`] is the rest: 400 `ValidationException` (a mistake in the client's
//! request: Bedrock's message is kept, cleaned and shortened), 408 `ModelTimeoutException`,
//! 424 `ModelErrorException`, 413. In-stream exceptions are mapped by [`map_exception`].

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::providers::chat::error::{
    by_status, credentials_refused, rate_limited, sanitize, with_message,
};

/// Maps a Bedrock error answer (status and body) to the error for the client.
pub fn map_error(status: u16, body: &[u8]) -> ApiError {
    let detail = serde_json::from_slice::<Detail<'_>>(body).unwrap_or_default();
    let kind = detail
        .kind
        .as_deref()
        .map(|kind| kind.rsplit('#').next().unwrap_or(kind))
        .map(|kind| kind.split(':').next().unwrap_or(kind));
    classify(kind, Some(status), detail.text())
}

/// Maps an in-stream exception (`:exception-type`, its payload) to the in-band error.
pub fn map_exception(kind: &str, payload: &[u8]) -> ApiError {
    let detail = serde_json::from_slice::<Detail<'_>>(payload).unwrap_or_default();
    classify(Some(kind), None, detail.text())
}

#[derive(Default, Deserialize)]
struct Detail<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message_upper: Option<Cow<'a, str>>,
    #[serde(rename = "__type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

impl Detail<'_> {
    fn text(&self) -> Option<&str> {
        self.message.as_deref().or(self.message_upper.as_deref())
    }
}

/// The client's error for a Bedrock error type (header, `__type` or `:exception-type`, any
/// case) and/or HTTP status (`None` in a stream).
fn classify(kind: Option<&str>, status: Option<u16>, message: Option<&str>) -> ApiError {
    let upstream = |code: ErrorCode, text: &str| ApiError::new(code, text.to_owned());
    let kind = kind.map(str::to_ascii_lowercase);
    match kind.as_deref() {
        Some("validationexception") if is_content_filter(message) => content_filter(message),
        Some("validationexception") => client(ErrorCode::InvalidParameter, message),
        Some("throttlingexception" | "modelnotreadyexception") => rate_limited(),
        Some("servicequotaexceededexception") => upstream(
            ErrorCode::RequestRateLimited,
            "The upstream's service quota is exhausted; retry later.",
        ),
        Some("modeltimeoutexception") => model_timed_out(),
        Some("accessdeniedexception" | "unrecognizedclientexception") => credentials_refused(),
        Some("resourcenotfoundexception") => upstream(
            ErrorCode::UpstreamError,
            "The upstream does not know the deployment's model.",
        ),
        Some("serviceunavailableexception") => upstream(
            ErrorCode::UpstreamError,
            "The upstream is unavailable; retry later.",
        ),
        Some("internalserverexception" | "modelerrorexception" | "modelstreamerrorexception") => {
            upstream(
                ErrorCode::UpstreamError,
                "The upstream model failed with an internal error.",
            )
        }
        _ => match status {
            Some(400) if is_content_filter(message) => content_filter(message),
            Some(400 | 422) => client(ErrorCode::InvalidParameter, message),
            Some(413) => client(ErrorCode::RequestTooLarge, message),
            Some(408 | 504) => model_timed_out(),
            status => by_status(status),
        },
    }
}

fn model_timed_out() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamTimeout,
        "The upstream model did not answer in time.",
    )
}

/// A mistake in the client's request: Bedrock's message, cleaned, else a generic one.
fn client(code: ErrorCode, message: Option<&str>) -> ApiError {
    let mut error = with_message(code, message, "The upstream rejected the request.");
    // OpenAI names `messages` for context overflows; clients match on it.
    let lower = error.message.to_ascii_lowercase();
    if lower.contains("too long") || lower.contains("context length") {
        error = error.with_param("messages");
    }
    error
}

/// Whether a validation message is a moderation refusal (image models: "This request has
/// been blocked by our content filters…", "The generated image has been blocked by our
/// content filters…").
fn is_content_filter(message: Option<&str>) -> bool {
    message.is_some_and(|m| {
        m.to_ascii_lowercase()
            .contains("blocked by our content filters")
    })
}

/// A moderation refusal: 400 `content_filter` naming `prompt`, with Bedrock's message.
fn content_filter(message: Option<&str>) -> ApiError {
    ApiError::new(
        ErrorCode::ContentFilter,
        message.map(sanitize).unwrap_or_default(),
    )
    .with_param("prompt")
}
