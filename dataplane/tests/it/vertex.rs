//! Vertex AI and the Gemini API through the real binary, against the mock upstream's Google
//! routes: a service-account token minted from the mock's token endpoint (the JWT verified
//! there) and refreshed in the background, chat and streams translated both ways, tools with
//! thought signatures carried back, usage records, the Gemini API-key mode, embeddings,
//! error mapping, and a bad key refused at start-up.

use std::time::{Duration, Instant};

use omg_mock_upstream::{test_service_account, MockUpstream, RecordedRequest};
use serde_json::{json, Value};

use crate::harness::*;

mod images;

const VERTEX_PREFIX: &str =
    "/v1/projects/omg-test-project/locations/europe-west4/publishers/google/models";

/// One `vertex` catalog entry (`extra`: more keys at the entry's indentation).
fn entry(alias: &str, model: &str, endpoint: &str, credential: &str, extra: &str) -> String {
    format!(
        "  - alias: {alias}\n    provider: vertex\n    provider_model: \"{model}\"\n    endpoint: \"{endpoint}\"\n    api_key: '{credential}'\n    health_check: false\n    price_input: 0.001\n    price_output: 0.002\n{extra}"
    )
}

/// The gateway config for `entries` (YAML catalog items), every alias allowed to [`KEY`].
fn config(entries: &[String], aliases: &[&str]) -> String {
    format!(
        r#"
server:
  listen_addr: "127.0.0.1:{{PORT}}"
  admin_listen_addr: "127.0.0.1:{{ADMIN}}"
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 20s
  threads: 2
usage:
  jsonl_path: "{{DIR}}/usage.jsonl"
rate_limits:
  default_requests_per_minute: 100000
  default_tokens_per_minute: 100000000
model_catalog:
{}bootstrap:
  tenants:
    - name: demo
      allowed_models: [{}]
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
"#,
        entries.concat(),
        aliases.join(", ")
    )
}

const ALIASES: [&str; 8] = [
    "gem",
    "gem-think",
    "gem-safety",
    "gem-block",
    "gem-broken",
    "gem-embed",
    "studio",
    "studio-embed",
];

/// One gateway with every alias the tests use; the mock's tokens live `token_lifetime`.
async fn start(upstream: &MockUpstream) -> Gateway {
    let origin = upstream.origin();
    let sa = test_service_account(&origin);
    let location = "    region: europe-west4\n";
    let entries = vec![
        entry("gem", "gemini-test", &origin, &sa, location),
        entry("gem-think", "gemini-test+thinking", &origin, &sa, location),
        entry(
            "gem-safety",
            "gemini-test+safety-block+chunks-4",
            &origin,
            &sa,
            location,
        ),
        entry(
            "gem-block",
            "gemini-test+prompt-block",
            &origin,
            &sa,
            location,
        ),
        entry(
            "gem-broken",
            "gemini-test+stream-error",
            &origin,
            &sa,
            location,
        ),
        entry(
            "gem-embed",
            "text-embedding-test",
            &origin,
            &sa,
            "    region: europe-west4\n    model_type: embedding\n",
        ),
        entry(
            "studio",
            "gemini-test",
            &origin,
            UPSTREAM_KEY,
            "    metadata: {vertex_api: gemini}\n",
        ),
        entry(
            "studio-embed",
            "text-embedding-test",
            &origin,
            UPSTREAM_KEY,
            "    model_type: embedding\n    metadata: {vertex_api: gemini}\n",
        ),
    ];
    Gateway::start(&config(&entries, &ALIASES)).await
}

fn last_to(upstream: &MockUpstream, path: &str) -> RecordedRequest {
    upstream
        .requests_to(path)
        .pop()
        .unwrap_or_else(|| panic!("no request to {path}"))
}

#[tokio::test]
async fn chat_uses_a_minted_token_that_is_refreshed_in_the_background() {
    let upstream = upstream().await;
    upstream.set_token_lifetime(Duration::from_secs(2));
    let gateway = start(&upstream).await;
    let body = json!({
        "model": "gem",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the gateway"}
        ],
        "max_tokens": 100,
    });
    let response = first_answer(&gateway, &body).await;
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "gem");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "w0 w1 w2 w3 w4."
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 7);
    assert_eq!(answer["usage"]["completion_tokens"], 5);

    let path = format!("{VERTEX_PREFIX}/gemini-test:generateContent");
    let seen = last_to(&upstream, &path);
    let first_token = seen.header("authorization").unwrap().to_owned();
    assert!(
        first_token.starts_with("Bearer ya29.mock-token-"),
        "{first_token}"
    );
    let sent = seen.json().unwrap();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(sent["contents"][0]["role"], "user");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 100);

    let token_request = &upstream.requests_to("/token")[0];
    let form = String::from_utf8_lossy(&token_request.body).into_owned();
    assert!(
        form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
        "{form}"
    );
    assert!(!gateway.log().contains("ya29."), "a token reached the log");
    assert!(
        !gateway.log().contains("PRIVATE KEY"),
        "the key reached the log"
    );

    let record = gateway.usage_of(&id).await;
    assert_eq!(record["provider"], "vertex", "{record}");
    assert_eq!(record["prompt_tokens"], 7);
    assert_eq!(record["completion_tokens"], 5);
    assert_eq!(record["usage_estimated"], false);

    // The 2 s token is renewed at half its life, without any request asking.
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream.requests_to("/token").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no background refresh; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The refresh was requested; its token is in use once the gateway has read the answer.
    loop {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
        let renewed = last_to(&upstream, &path);
        if renewed.header("authorization").unwrap() != first_token {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refreshed token is never used; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn streams_end_with_finish_usage_and_done_when_gemini_closes() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let body = json!({
        "model": "gem", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello to the gateway"}]
    });
    let response = first_answer(&gateway, &body).await;
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let id = request_id(&response);
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "w0 w1 w2 w3 w4.");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{text}");
    assert!(upstream.requests()[upstream.requests().len() - 1]
        .path
        .ends_with(":streamGenerateContent?alt=sse"));
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["completion_tokens"], 5, "{record}");
    assert_eq!(record["usage_estimated"], false, "{record}");
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "additionalProperties": false,
            "properties": {"location": {"type": "string"}}, "required": ["location"]}
    }})
}

#[tokio::test]
async fn tool_calls_round_trip_with_their_thought_signatures() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "gem-think", "messages": [question], "tools": [weather_tool()], "tool_choice": "required"});
    let response = first_answer(&gateway, &body).await;
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"location":"Paris"}"#);
    let call_id = call["id"].as_str().unwrap();
    assert!(call_id.starts_with("call_0:ts:"), "{call_id}");
    assert_eq!(
        answer["usage"]["completion_tokens"], 5,
        "3 + 2 thinking tokens"
    );

    let sent = upstream.requests().pop().unwrap().json().unwrap();
    assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
    assert!(sent["tools"][0]["functionDeclarations"][0]["parameters"]
        .get("additionalProperties")
        .is_none());

    let follow_up = json!({"model": "gem-think", "tools": [weather_tool()], "messages": [
        question, choice["message"].clone(),
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 °C"}
    ]});
    let response = gateway
        .post("/v1/chat/completions")
        .json(&follow_up)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let sent = upstream.requests().pop().unwrap().json().unwrap();
    assert_eq!(sent["contents"][1]["role"], "model");
    assert!(sent["contents"][1]["parts"][0]["thoughtSignature"].is_string());
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"result": "Sunny, 21 °C"}})
    );

    // Without the signature, the mock refuses like Gemini: the client's 400.
    let mut stripped = follow_up.clone();
    stripped["messages"][1]["tool_calls"][0]["id"] = json!("call_0");
    stripped["messages"][2]["tool_call_id"] = json!("call_0");
    let response = gateway
        .post("/v1/chat/completions")
        .json(&stripped)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("thought_signature"),
        "{error}"
    );
}

#[tokio::test]
async fn gemini_api_mode_sends_the_key_and_embeds_in_one_call() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("studio", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let seen = last_to(&upstream, "/v1beta/models/gemini-test:generateContent");
    assert_eq!(seen.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen.header("authorization"), None);

    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "studio-embed", "input": ["one two", "three"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer["data"][1]["index"], 1);
    assert_eq!(answer["data"][0]["embedding"][0], 0.01);
    assert_eq!(
        upstream
            .requests_to("/v1beta/models/text-embedding-test:batchEmbedContents")
            .len(),
        1
    );
}

#[tokio::test]
async fn vertex_embeddings_answer_base64_float32_with_vertex_token_counts() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let body = json!({"model": "gem-embed", "input": ["one two three", "four"], "encoding_format": "base64", "dimensions": 4});
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        let response = gateway
            .post("/v1/embeddings")
            .json(&body)
            .send()
            .await
            .unwrap();
        if response.status() != 502 || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    let encoded = answer["data"][1]["embedding"].as_str().unwrap();
    let bytes = decode_base64(encoded);
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(floats, vec![0.05, 0.06, 0.07, 0.08]);
    assert_eq!(answer["usage"]["prompt_tokens"], 4);
    let sent = last_to(
        &upstream,
        &format!("{VERTEX_PREFIX}/text-embedding-test:predict"),
    )
    .json()
    .unwrap();
    assert_eq!(sent["instances"][0]["content"], "one two three");
    assert_eq!(sent["parameters"]["outputDimensionality"], 4);
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["prompt_tokens"], 4, "{record}");
}

#[tokio::test]
async fn safety_blocks_and_stream_errors_are_mapped() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    // A blocked prompt: 400 content_filter.
    let response = first_answer(&gateway, &chat("gem-block", false)).await;
    assert_eq!(response.status(), 400, "log:\n{}", gateway.log());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "content_filter");
    assert_eq!(error["error"]["param"], "messages");
    // A blocked prompt in a stream: an in-band error.
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("gem-block", true))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        text.contains("content_filter") && !text.contains("[DONE]"),
        "{text}"
    );
    // An answer stopped by the safety filters: finish_reason content_filter.
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("gem-safety", false))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(answer["choices"][0]["message"]["content"], "w0 w1 ");
    // An error in the stream: content, then the in-band error, no [DONE].
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("gem-broken", true))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert!(events.iter().any(|e| e.contains("w0")), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    // A client mistake Gemini catches: 400 with its message.
    let bad = json!({"model": "gem", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "bad name!", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}]});
    let response = gateway
        .post("/v1/chat/completions")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_value");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid function name"),
        "{error}"
    );
    // A `$ref` in a tool schema is refused before any upstream call, naming the tool.
    let refs = json!({"model": "gem", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}}}]});
    let before = upstream.request_count();
    let response = gateway
        .post("/v1/chat/completions")
        .json(&refs)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "tools");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lookup"),
        "{error}"
    );
    assert_eq!(upstream.request_count(), before);
}

#[tokio::test]
async fn a_bad_service_account_key_is_refused_at_start_up() {
    let upstream = upstream().await;
    let mut key: Value = serde_json::from_str(&test_service_account(&upstream.origin())).unwrap();
    key["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nnot-a-key-SECRETMARK\n-----END PRIVATE KEY-----\n");
    let entries = vec![entry(
        "gem",
        "gemini-test",
        &upstream.origin(),
        &key.to_string(),
        "",
    )];
    let log = refused_config_log(&config(&entries, &["gem"]));
    assert!(log.contains("model_catalog[0].api_key"), "{log}");
    assert!(log.contains("PKCS#8"), "{log}");
    assert!(!log.contains("SECRETMARK"), "{log}");
}
