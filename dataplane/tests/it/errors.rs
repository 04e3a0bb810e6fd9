//! Every refusal in OpenAI's shape with the right status; no secrets in any answer.

use serde_json::{json, Value};

use crate::harness::*;

async fn expect_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
    param: Option<&str>,
) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "expected {status} {code}"
    );
    assert!(
        !request_id(&response).is_empty(),
        "x-request-id on errors too"
    );
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(
            error.as_object().unwrap().contains_key(field),
            "`{field}` missing in {body}"
        );
    }
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["param"].as_str(), param, "{body}");
    assert!(!error["message"].as_str().unwrap().contains(UPSTREAM_KEY));
    body
}

#[tokio::test]
async fn authentication_errors() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let url = format!("{}/v1/chat/completions", gateway.base);
    let body = chat("mock-chat", false);
    let none = gateway.client.post(&url).json(&body).send().await.unwrap();
    expect_error(none, 401, "invalid_api_key", None).await;
    let wrong = gateway
        .client
        .post(&url)
        .bearer_auth("sk-demo.not-the-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(wrong, 401, "invalid_api_key", None).await;
    let garbage = gateway
        .client
        .post(&url)
        .bearer_auth("' OR 1=1 --")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(garbage, 401, "invalid_api_key", None).await;
    let suspended = gateway
        .client
        .post(&url)
        .bearer_auth("sk-frozen.my-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(suspended, 403, "tenant_suspended", None).await;
}

#[tokio::test]
async fn request_errors_name_the_param() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let bad_json = gateway
        .post("/v1/chat/completions")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    expect_error(bad_json, 400, "invalid_json", None).await;
    let no_model = gateway
        .post("/v1/chat/completions")
        .json(&json!({"messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    expect_error(no_model, 400, "missing_required_parameter", Some("model")).await;
    let no_messages = gateway
        .post("/v1/chat/completions")
        .json(&json!({"model": "mock-chat"}))
        .send()
        .await
        .unwrap();
    expect_error(
        no_messages,
        400,
        "missing_required_parameter",
        Some("messages"),
    )
    .await;
    let unknown = gateway
        .post("/v1/chat/completions")
        .json(&chat("no-such-model", false))
        .send()
        .await
        .unwrap();
    let body = expect_error(unknown, 404, "model_not_found", Some("model")).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-model"));
    let forbidden = gateway
        .post("/v1/chat/completions")
        .json(&chat("secret-model", false))
        .send()
        .await
        .unwrap();
    expect_error(forbidden, 403, "model_not_allowed", Some("model")).await;
    let wrong_type = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "mock-chat", "input": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(wrong_type, 400, "operation_unsupported", Some("model")).await;
    let unknown_url = gateway
        .post("/v1/nothing-here")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(unknown_url, 404, "unknown_url", None).await;
    let wrong_method = gateway
        .client
        .get(format!("{}/v1/chat/completions", gateway.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    expect_error(wrong_method, 405, "method_not_allowed", None).await;
    assert_eq!(
        upstream.request_count(),
        0,
        "nothing invalid reaches the upstream"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "  body_limit_mb: 1")).await;
    let big = "x".repeat(1024 * 1024 + 10);
    let body = json!({"model": "gpt-up", "messages": [{"role": "user", "content": big}]});
    let response = gateway
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "request_too_large", None).await;
    // Just under the limit is fine, whatever the size: the body is replayed upstream whole.
    let fits = "y".repeat(900 * 1024);
    let response = gateway
        .post("/v1/chat/completions")
        .json(&json!({"model": "gpt-up", "messages": [{"role": "user", "content": fits}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.requests().last().unwrap().json().unwrap()["messages"][0]["content"]
            .as_str()
            .map(str::len),
        Some(900 * 1024)
    );
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504_with_usage() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "  provider_timeout: 1s")).await;
    let failed = gateway
        .post("/v1/chat/completions")
        .json(&chat("up-fail-500", false))
        .send()
        .await
        .unwrap();
    let id = request_id(&failed);
    expect_error(failed, 502, "upstream_error", None).await;
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 502);
    assert_eq!(record["error_code"], "upstream_error");
    assert_eq!(record["cost_micro_usd"], 0);

    let slow = gateway
        .post("/v1/chat/completions")
        .json(&chat("up-slow", false))
        .send()
        .await
        .unwrap();
    let id = request_id(&slow);
    expect_error(slow, 504, "upstream_timeout", None).await;
    assert_eq!(gateway.usage_of(&id).await["status"], 504);

    // A client mistake caught upstream keeps its status and OpenAI body.
    let rejected = gateway
        .post("/v1/chat/completions")
        .json(&chat("up-fail-400", false))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 400);
    assert!(
        !gateway.log().contains(UPSTREAM_KEY),
        "the provider key never reaches the logs"
    );
}
