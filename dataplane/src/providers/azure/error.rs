//! Azure OpenAI error answers → OpenAI's error shape.
//!
//! Azure answers `{"error":{"code","message"}}` where `code` is a name
//! (`DeploymentNotFound`, `OperationNotSupported`, `content_filter`, …) or an HTTP status as a
//! string (`"404"`), and for request mistakes often OpenAI's own
//! `{"error":{"message","type","param","code"}}`. Only the message (one line, at most
//! [`MAX_MESSAGE_CHARS`](crate::providers::chat::error::MAX_MESSAGE_CHARS) characters),
//! `type`, `param` and a named `code` are kept; nothing else of the body (`innererror`,
//! filter results) reaches the client.

use omg_shared::error::{ErrorCode, OpenAiError, OpenAiErrorBody};
use serde::Deserialize;
use serde_json::Value;

use crate::error::truncate;
use crate::providers::adapter::ClientError;
use crate::providers::chat::error::sanitize;

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    error: Option<Detail>,
}

#[derive(Default, Deserialize)]
struct Detail {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(rename = "type", default)]
    kind: Option<Value>,
    #[serde(default)]
    param: Option<Value>,
}

/// A string value, trimmed and non-empty; numbers as their text.
fn text(value: &Option<Value>) -> Option<String> {
    let text = match value {
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(Value::Number(number)) => number.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn body(
    message: String,
    kind: &str,
    param: Option<String>,
    code: Option<String>,
) -> OpenAiErrorBody {
    OpenAiErrorBody {
        error: OpenAiError {
            message,
            error_type: kind.to_owned(),
            param,
            code,
        },
    }
}

/// Maps an Azure error answer (a status the glue leaves to the client: a 4xx other than 401,
/// 403, 404 and 429, or an unexpected one) to the client's error.
///
/// - `code: "content_filter"` (the prompt tripped Azure's content filter), or
///   `content_policy_violation` (the same on image generation, OpenAI's code there too): 400,
///   `invalid_request_error`, `param: "prompt"`, Azure's code and message.
/// - `code: "DeploymentNotFound"`: 404 with that code and a message for the operator (the
///   catalog entry's `deployment` names no deployment of the resource).
/// - 404 without a named code (`Resource not found`: the endpoint path or the `api-version`
///   is wrong): 404 with a message for the operator, `code: null`.
/// - 429 (the deployment's rate or token quota): 429 `rate_limit_exceeded`, Azure's message
///   (it says when to retry).
/// - Any other 4xx: its status, Azure's message, `type` (default `invalid_request_error`),
///   `param`, and `code` when it is a name (a bare status number becomes `null`).
/// - Anything else: 502 `upstream_error`.
pub fn map_error(status: u16, bytes: &[u8]) -> ClientError {
    let detail = serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .and_then(|envelope| envelope.error);
    if status == 429 {
        return rate_limited(detail.as_ref());
    }
    match detail {
        Some(detail) => detailed(status, &detail),
        None => unreadable(status),
    }
}

/// A 429: `rate_limit_exceeded` with Azure's message (it says when to retry).
fn rate_limited(detail: Option<&Detail>) -> ClientError {
    let message = detail
        .and_then(|detail| text(&detail.message))
        .map(|message| sanitize(&message))
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| "The upstream is rate limiting; retry later.".to_owned());
    ClientError {
        status: 429,
        body: OpenAiErrorBody::new(ErrorCode::RequestRateLimited, message, None),
    }
}

/// An error answer without a readable `error` object.
fn unreadable(status: u16) -> ClientError {
    let code = if (400..500).contains(&status) {
        ErrorCode::InvalidParameter
    } else {
        ErrorCode::UpstreamError
    };
    ClientError {
        status: if (400..500).contains(&status) {
            status
        } else {
            code.status()
        },
        body: OpenAiErrorBody::new(
            code,
            format!("The upstream rejected the request with HTTP {status}."),
            None,
        ),
    }
}

/// An error answer with Azure's `error` object (status other than 429).
fn detailed(status: u16, detail: &Detail) -> ClientError {
    let code = text(&detail.code);
    let message = text(&detail.message)
        .map(|m| sanitize(&m))
        .unwrap_or_default();
    let or = |fallback: &str| {
        if message.is_empty() {
            fallback.to_owned()
        } else {
            message.clone()
        }
    };
    // `content_policy_violation`: the same filter, as Azure names it on image generation.
    if matches!(
        code.as_deref(),
        Some("content_filter" | "content_policy_violation")
    ) {
        return ClientError {
            status: 400,
            body: body(
                or("The prompt was filtered by the upstream's content management policy."),
                "invalid_request_error",
                Some("prompt".to_owned()),
                code,
            ),
        };
    }
    if !(400..500).contains(&status) {
        return ClientError {
            status: 502,
            body: OpenAiErrorBody::new(
                ErrorCode::UpstreamError,
                format!("The upstream failed with HTTP {status}."),
                None,
            ),
        };
    }
    let named = code.filter(|c| !c.bytes().all(|b| b.is_ascii_digit()));
    if named.as_deref() == Some("DeploymentNotFound") {
        return ClientError {
            status: 404,
            body: body(
                "The model's Azure OpenAI deployment does not exist at the upstream resource: the gateway's operator must fix the catalog entry's `deployment` name (or `provider_model`).".to_owned(),
                "invalid_request_error",
                None,
                named,
            ),
        };
    }
    if status == 404 && named.is_none() {
        return ClientError {
            status: 404,
            body: body(
                format!(
                    "The Azure OpenAI resource answered 404 ({}): the gateway's operator must check the catalog entry's `endpoint` (the resource URL) and `api_version`.",
                    truncate(&or("Resource not found"), 100)
                ),
                "invalid_request_error",
                None,
                None,
            ),
        };
    }
    let kind = text(&detail.kind).unwrap_or_else(|| "invalid_request_error".to_owned());
    ClientError {
        status,
        body: body(
            or(&format!(
                "The upstream rejected the request with HTTP {status}."
            )),
            &sanitize(&kind),
            text(&detail.param).map(|p| sanitize(&p)),
            named.map(|c| sanitize(&c)),
        ),
    }
}
