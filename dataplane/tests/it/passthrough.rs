//! Bodies, headers and usage through the gateway to an OpenAI-compatible upstream.

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn chat_json_is_forwarded_rewritten_and_metered() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let mut body = chat("gpt-up", false);
    body["temperature"] = json!(0.25);
    body["user"] = json!("end-user-7");
    let response = gateway
        .post("/v1/chat/completions")
        .header("x-request-id", "it-json-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(request_id(&response), "it-json-1");
    assert_eq!(
        response.headers().get("x-omg-deployment").unwrap(),
        "gpt-up#0"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        answer["model"], "gpt-test",
        "the upstream's answer passes through unchanged"
    );

    let requests = upstream.requests();
    let seen = requests.last().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str()),
        "the client's key is replaced by the provider's"
    );
    let sent = seen.json().unwrap();
    assert_eq!(
        sent["model"], "gpt-test",
        "alias rewritten to the provider model"
    );
    assert_eq!(sent["temperature"], 0.25);
    assert_eq!(sent["user"], "end-user-7");
    assert_eq!(sent["messages"], body["messages"]);
    assert!(sent.get("stream_options").is_none());

    let record = gateway.usage_of("it-json-1").await;
    assert_eq!(record["status"], 200);
    assert_eq!(record["alias"], "gpt-up");
    assert_eq!(record["provider"], "openai-compatible");
    assert_eq!(record["endpoint"], "chat.completions");
    assert_eq!(record["stream"], false);
    assert_eq!(record["usage_estimated"], false);
    assert_eq!(record["prompt_tokens"], answer["usage"]["prompt_tokens"]);
    assert_eq!(
        record["completion_tokens"],
        answer["usage"]["completion_tokens"]
    );
    let expected_cost = record["prompt_tokens"].as_u64().unwrap()
        + 2 * record["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        record["cost_micro_usd"].as_u64().unwrap(),
        expected_cost,
        "$0.001/1K in, $0.002/1K out"
    );
}

#[tokio::test]
async fn completions_and_embeddings_pass_through() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let response = gateway
        .post("/v1/completions")
        .json(&json!({"model": "gpt-up", "prompt": "Say hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(gateway.usage_of(&id).await["endpoint"], "completions");

    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "embed-up", "input": ["a b", "c"], "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert!(answer["data"][0]["embedding"].is_string());
    let sent = upstream.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["model"], "text-embedding-test");
    assert_eq!(sent["encoding_format"], "base64");
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["endpoint"], "embeddings");
    assert_eq!(record["prompt_tokens"], answer["usage"]["prompt_tokens"]);
}

#[tokio::test]
async fn models_are_listed_per_tenant() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let list: Value = gateway
        .client
        .get(format!("{}/v1/models", gateway.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .filter(|id| !id.starts_with("up-"))
        .collect();
    assert_eq!(
        ids,
        ["embed-up", "gpt-up", "mock-chat", "mock-embed", "mock-slow"]
    );
    assert_eq!(list["object"], "list");
    let one = gateway
        .client
        .get(format!("{}/v1/models/mock-chat", gateway.base))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let hidden = gateway
        .client
        .get(format!("{}/v1/models/secret-model", gateway.base))
        .header("api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 403);
}

#[tokio::test]
async fn mock_provider_answers_every_operation() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("mock-chat", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], 4);
    assert!(!answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    let again: Value = gateway
        .post("/v1/chat/completions")
        .json(&chat("mock-chat", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["choices"][0]["message"]["content"], answer["choices"][0]["message"]["content"],
        "deterministic"
    );
    let embeddings: Value = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "mock-embed", "input": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        embeddings["data"][0]["embedding"].as_array().map(Vec::len),
        Some(8)
    );
    assert_eq!(
        upstream.request_count(),
        0,
        "the mock provider never calls out"
    );
}
