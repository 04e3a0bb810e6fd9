//! `client_error`: TEI's, TGI's and the Inference API's error bodies in OpenAI's shape.

use super::{adapter, deployment, fixture, golden_json, tgi};
use crate::providers::ProviderAdapter;

#[test]
fn golden_errors() {
    let tei = deployment("http://tei.internal:8080", &[]);
    let inference = deployment("https://router.huggingface.co/v1", &[]);
    for (name, d, status, client_status) in [
        // Validation errors are the client's: their status and the server's message.
        ("error_validation", tgi(), 422, 422),
        ("error_tei_batch", tei.clone(), 422, 422),
        ("error_tei_empty", tei.clone(), 400, 400),
        // A generation failure (424) is the server's: 502, its internals not passed on.
        ("error_generation", tgi(), 424, 502),
        // The glue treats 429 and 5xx as the deployment's failures (failover) before asking
        // the adapter; asked, it still says what they are.
        ("error_overloaded", tgi(), 429, 429),
        ("error_loading", inference, 503, 502),
    ] {
        let error = adapter(&d).client_error(status, &fixture(&format!("{name}.json")));
        assert_eq!(error.status, client_status, "{name}");
        let json = serde_json::to_value(&error.body).unwrap();
        golden_json(&format!("{name}.openai.json"), &json);
    }
}

#[test]
fn payloads_too_large_keep_their_status() {
    let d = deployment("http://tei:80", &[]);
    let mapped = adapter(&d).client_error(
        413,
        br#"{"error":"batch size 40 > maximum allowed batch size 32","error_type":"Validation"}"#,
    );
    assert_eq!(mapped.status, 413);
    assert_eq!(mapped.body.error.code.as_deref(), Some("request_too_large"));
    assert!(mapped
        .body
        .error
        .message
        .contains("maximum allowed batch size"));
}

#[test]
fn messages_are_one_short_line_and_openai_errors_pass() {
    let long = format!(
        r#"{{"error":"line one\nline two {}","error_type":"validation"}}"#,
        "x".repeat(1000)
    );
    let mapped = adapter(&tgi()).client_error(422, long.as_bytes());
    let message = mapped.body.error.message;
    assert!(
        message.contains("line one line two") && !message.contains('\n'),
        "{message}"
    );
    assert!(message.chars().count() < 400, "{message}");
    // The router answers OpenAI's shape: kept as it is.
    let router = br#"{"error":{"message":"Model not supported by provider.","type":"invalid_request_error","param":"model","code":"model_not_supported"}}"#;
    let mapped = adapter(&tgi()).client_error(400, router);
    assert_eq!(mapped.status, 400);
    assert_eq!(mapped.body.error.param.as_deref(), Some("model"));
    assert_eq!(
        mapped.body.error.code.as_deref(),
        Some("model_not_supported")
    );
}
