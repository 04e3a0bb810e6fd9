//! `client_error`: Azure's error bodies in OpenAI's shape; nothing else of them reaches the
//! client.

use serde_json::Value;

use super::{adapter, deployment, fixture, golden_json};
use crate::providers::azure::map_error;
use crate::providers::ProviderAdapter;

fn mapped(status: u16, body: &str) -> (u16, Value) {
    let error = map_error(status, body.as_bytes());
    (error.status, serde_json::to_value(error.body).unwrap())
}

#[test]
fn golden_errors() {
    let d = deployment("https://r", serde_json::json!({}));
    for (name, status, client_status) in [
        // The prompt tripped the content filter (chat, completions).
        ("error_content_filter", 400, 400),
        // The same on image generation, as Azure names it there (OpenAI's code for it too).
        ("error_content_policy_violation", 400, 400),
        // OpenAI's own shape: every field kept.
        ("error_context_length", 400, 400),
        // The glue treats 404 and 429 as the deployment's failures (failover, `retry-after`)
        // before asking the adapter; asked, it still says what they are.
        ("error_deployment_not_found", 404, 404),
        ("error_rate_limit", 429, 429),
    ] {
        let body = fixture(&format!("{name}.json"));
        let error = adapter(&d).client_error(status, &body);
        assert_eq!(error.status, client_status, "{name}");
        let json = serde_json::to_value(&error.body).unwrap();
        golden_json(&format!("{name}.openai.json"), &json);
        let text = json.to_string();
        for private in [
            "innererror",
            "inner_error",
            "severity",
            "revised_prompt",
            "ResponsibleAI",
        ] {
            assert!(!text.contains(private), "{name}: {text}");
        }
    }
}

#[test]
fn long_messages_are_cut() {
    let body = String::from_utf8(fixture("error_content_filter.json")).unwrap();
    let long = body.replace("Please modify", &"x".repeat(2000));
    let (_, error) = mapped(400, &long);
    assert_eq!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .count(),
        501
    );
}

#[test]
fn azure_error_bodies_keep_their_status_and_say_what_to_fix() {
    let (status, error) = mapped(
        404,
        r#"{"error":{"code":"404","message":"Resource not found"}}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], Value::Null);
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Resource not found") && message.contains("`api_version`"),
        "{message}"
    );

    let (status, error) = mapped(
        400,
        r#"{"error":{"code":"OperationNotSupported","message":"The embeddings operation does not work with the specified model, gpt-4o. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993."}}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "OperationNotSupported");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], Value::Null);

    let (status, error) = mapped(
        400,
        r#"{"error":{"code":400,"message":"Unrecognized request argument supplied: stream_options"}}"#,
    );
    assert_eq!((status, error["error"]["code"].clone()), (400, Value::Null));
    assert_eq!(
        error["error"]["message"],
        "Unrecognized request argument supplied: stream_options"
    );

    let (status, error) = mapped(422, "<html>oops</html>");
    assert_eq!(status, 422);
    assert_eq!(
        error["error"]["message"],
        "The upstream rejected the request with HTTP 422."
    );

    let (status, error) = mapped(429, "{}");
    assert_eq!(status, 429);
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    let (status, error) = mapped(302, r#"{"error":{"code":"Moved","message":"elsewhere"}}"#);
    assert_eq!(status, 502);
    assert_eq!(error["error"]["code"], "upstream_error");
}
