//! Errors in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.

use serde_json::json;

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An error body for a status and message.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message},
    }))
    .unwrap_or_default()
}

/// An OpenAI error body (`{"error":{"message",...}}`) rewritten in Anthropic's shape; a body
/// that is not one keeps a generic message.
pub fn from_openai_error(status: u16, body: &[u8]) -> Vec<u8> {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "The request failed.".to_owned());
    error_body(status, &message)
}

/// An in-stream `error` event.
pub fn error_event(status: u16, message: &str) -> Vec<u8> {
    let mut out = b"event: error\ndata: ".to_vec();
    out.extend_from_slice(&error_body(status, message));
    out.extend_from_slice(b"\n\n");
    out
}
