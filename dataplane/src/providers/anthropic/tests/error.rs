//! `map_error`: the table, and what never reaches clients.

use omg_shared::error::ErrorCode;

use crate::providers::anthropic::map_error;

fn body(kind: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    .to_string()
    .into_bytes()
}

#[test]
fn error_table() {
    use ErrorCode::*;
    // (status, type, provider message, code, client status, whether the provider's message is kept)
    let table = [
        (
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            InvalidParameter,
            400,
            true,
        ),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            RequestTooLarge,
            413,
            true,
        ),
        (
            413,
            "invalid_request_error",
            "Request too large",
            RequestTooLarge,
            413,
            true,
        ),
        (
            401,
            "authentication_error",
            "invalid x-api-key",
            UpstreamError,
            502,
            false,
        ),
        (
            403,
            "permission_error",
            "Your API key does not have permission",
            UpstreamError,
            502,
            false,
        ),
        (
            404,
            "not_found_error",
            "model: claude-secret-internal",
            UpstreamError,
            502,
            false,
        ),
        (
            402,
            "billing_error",
            "Your credit balance is too low",
            UpstreamError,
            502,
            false,
        ),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit (org 1234)",
            RequestRateLimited,
            429,
            false,
        ),
        (
            500,
            "api_error",
            "Internal server error",
            UpstreamError,
            502,
            false,
        ),
        (
            504,
            "timeout_error",
            "Request timed out",
            UpstreamTimeout,
            504,
            false,
        ),
        (
            529,
            "overloaded_error",
            "Overloaded",
            UpstreamError,
            502,
            false,
        ),
    ];
    for (status, kind, message, code, client_status, kept) in table {
        let error = map_error(status, &body(kind, message));
        assert_eq!(error.code, code, "{kind}");
        assert_eq!(error.code.status(), client_status, "{kind}");
        assert_eq!(
            error.message == message,
            kept,
            "{kind}: {:?}",
            error.message
        );
        assert!(!error.message.contains("req_011"), "{kind}");
        assert_eq!(error.param, None, "{kind}");
    }
}

#[test]
fn unknown_or_missing_types_fall_back_to_the_status() {
    use ErrorCode::*;
    for (status, payload, code) in [
        (400, &b"not json"[..], InvalidParameter),
        (422, b"{}", InvalidParameter),
        (413, b"", RequestTooLarge),
        (401, b"", UpstreamError),
        (403, b"<html>forbidden</html>", UpstreamError),
        (404, b"", UpstreamError),
        (408, b"", UpstreamTimeout),
        (429, b"", RequestRateLimited),
        (500, b"", UpstreamError),
        (502, b"", UpstreamError),
        (504, b"", UpstreamTimeout),
        (529, b"", UpstreamError),
        (
            409,
            br#"{"type":"error","error":{"type":"brand_new_error","message":"secret details"}}"#,
            UpstreamError,
        ),
    ] {
        let error = map_error(status, payload);
        assert_eq!(error.code, code, "{status}");
        assert!(
            !error.message.contains("secret") && !error.message.contains("html"),
            "{status}"
        );
    }
}

#[test]
fn provider_messages_are_cleaned_and_shortened() {
    let long = format!("line one\nline\ttwo\u{7}{}", "x".repeat(2000));
    let error = map_error(400, &body("invalid_request_error", &long));
    assert!(
        error.message.starts_with("line one line two "),
        "{:?}",
        error.message
    );
    assert!(!error.message.chars().any(char::is_control));
    assert_eq!(
        error.message.chars().count(),
        501,
        "500 characters and an ellipsis"
    );

    let empty = map_error(400, &body("invalid_request_error", "  "));
    assert_eq!(empty.message, "The upstream rejected the request.");

    let overflow = map_error(
        400,
        &body(
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
    );
    assert_eq!(overflow.param, Some("messages"));
    assert_eq!(overflow.code, ErrorCode::InvalidParameter);
}
