//! `map_error`: Google's statuses to the gateway's codes; only client mistakes keep Google's
//! message.

use omg_shared::error::ErrorCode;

use crate::providers::vertex::map_error;

fn body(code: u16, status: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"error": {"code": code, "message": message, "status": status}})
        .to_string()
        .into_bytes()
}

#[test]
fn statuses_map_to_codes() {
    let error = map_error(
        400,
        &body(400, "INVALID_ARGUMENT", "Bad\nvalue at 'contents'"),
    );
    assert_eq!(error.code, ErrorCode::InvalidParameter);
    assert_eq!(error.message, "Bad value at 'contents'");
    for (status, name, code) in [
        (403, "PERMISSION_DENIED", ErrorCode::UpstreamError),
        (404, "NOT_FOUND", ErrorCode::UpstreamError),
        (400, "FAILED_PRECONDITION", ErrorCode::UpstreamError),
        (429, "RESOURCE_EXHAUSTED", ErrorCode::RequestRateLimited),
        (503, "UNAVAILABLE", ErrorCode::UpstreamError),
        (504, "DEADLINE_EXCEEDED", ErrorCode::UpstreamTimeout),
        (413, "INVALID_ARGUMENT", ErrorCode::RequestTooLarge),
    ] {
        let error = map_error(status, &body(status, name, "project 1234 secret detail"));
        assert_eq!(error.code, code, "{name}");
        if code != ErrorCode::RequestTooLarge {
            assert!(!error.message.contains("1234"), "{name}: {}", error.message);
        }
    }
    assert_eq!(map_error(422, b"not json").code, ErrorCode::UpstreamError);
    let error = map_error(400, b"<html>");
    assert_eq!(error.code, ErrorCode::InvalidParameter);
    assert_eq!(error.message, "The upstream rejected the request.");
}
