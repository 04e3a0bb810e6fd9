//! The `bedrock` provider through the data plane binary, against the mock upstream's Bedrock
//! Runtime routes, which verify SigV4 (recomputed independently from what they receive, with
//! the known test secret) or a Bedrock API key, and Converse's body rules.

use omg_mock_upstream::{MockConfig, MockUpstream, BEDROCK_ACCESS_KEY_ID};
use serde_json::{json, Value};

use crate::harness::*;

mod images;

const CHAT: &str = "/v1/chat/completions";
const MODEL: &str = "anthropic.claude-test-v1:0";
const CONVERSE: &str = "/model/anthropic.claude-test-v1%3A0/converse";

/// A SigV4-signed entry: the harness's `api_key` is the secret of the mock's access key.
fn signed(alias: &str, upstream: &MockUpstream, model: &str) -> Entry {
    Entry::new(alias, &upstream.origin(), model)
        .provider("bedrock")
        .with("region", "us-east-1")
        .with(
            "metadata",
            &format!("{{aws_access_key_id: {BEDROCK_ACCESS_KEY_ID}}}"),
        )
}

/// An entry authenticating with the harness's `api_key` as a Bedrock API key.
fn bearer(alias: &str, upstream: &MockUpstream, model: &str) -> Entry {
    Entry::new(alias, &upstream.origin(), model)
        .provider("bedrock")
        .with("region", "us-east-1")
}

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
        }
    }])
}

fn chunks_of(text: &str) -> Vec<Value> {
    let events = sse_data(text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[tokio::test]
async fn chat_is_signed_translated_and_metered() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[
            signed("claude", &upstream, MODEL)
                .with("price_input", "0.003")
                .with("price_output", "0.015"),
            bearer("claude-key", &upstream, MODEL),
        ],
        "",
        "",
    ))
    .await;
    let body = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway"}
        ],
        "temperature": 0.5,
        "max_tokens": 100
    });
    let response = gateway
        .post(CHAT)
        .header("x-request-id", "it-bedrock-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "claude");
    assert_eq!(answer["id"], "chatcmpl-it-bedrock-1");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(!answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());

    let seen = upstream.requests_to(CONVERSE);
    assert_eq!(seen.len(), 1, "the model id is encoded once in the path");
    let authorization = seen[0].header("authorization").unwrap();
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={BEDROCK_ACCESS_KEY_ID}/"
        )) && authorization.contains("/us-east-1/bedrock/aws4_request"),
        "{authorization}"
    );
    assert!(seen[0].header("x-amz-date").is_some());
    let sent = seen[0].json().unwrap();
    assert_eq!(sent["system"], json!([{"text": "You are terse."}]));
    assert_eq!(
        sent["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.5})
    );
    let record = gateway.usage_of("it-bedrock-1").await;
    assert_eq!(record["provider"], "bedrock");
    assert_eq!(record["prompt_tokens"], answer["usage"]["prompt_tokens"]);
    assert_eq!(
        record["completion_tokens"],
        answer["usage"]["completion_tokens"]
    );
    assert!(
        record["cost_micro_usd"].as_u64().unwrap_or(0) > 0,
        "{record}"
    );

    // A Bedrock API key: a bearer header, nothing signed.
    let response = gateway
        .post(CHAT)
        .json(&chat("claude-key", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let seen = upstream.requests_to(CONVERSE);
    let last = seen.last().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(last.header("x-amz-date").is_none());
}

#[tokio::test]
async fn streams_become_openai_chunks_with_usage_after_the_metadata() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[signed("claude", &upstream, &format!("{MODEL}+chunks-5"))],
        "",
        "",
    ))
    .await;
    let mut body = chat("claude", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = gateway
        .post(CHAT)
        .header("x-request-id", "it-bedrock-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let chunks = chunks_of(&text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "claude"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "w0 w1 w2 w3 w4.");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{text}");

    let seen =
        upstream.requests_to("/model/anthropic.claude-test-v1%3A0%2Bchunks-5/converse-stream");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    let record = gateway.usage_of("it-bedrock-stream").await;
    assert_eq!(record["stream"], true);
    assert_eq!(record["completion_tokens"], 5);
    assert_eq!(record["prompt_tokens"], usage["prompt_tokens"]);
    assert!(record["ttft_ms"].is_number(), "{record}");
}

#[tokio::test]
async fn tool_calls_go_both_ways_json_and_streamed() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[signed("claude", &upstream, MODEL)],
        "",
        "",
    ))
    .await;
    let question = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let response = gateway
        .post(CHAT)
        .json(&json!({"model": "claude", "messages": question, "tools": weather_tools()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "Paris"}));

    // The result goes back (the mock checks it answers the call's id); the model answers.
    let mut messages = question.as_array().unwrap().clone();
    messages.push(choice["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 °C"}));
    let response = gateway
        .post(CHAT)
        .json(&json!({"model": "claude", "messages": messages, "tools": weather_tools()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let sent = upstream
        .requests_to(CONVERSE)
        .last()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"]["toolUseId"],
        call["id"]
    );

    // Streamed, forced: the arguments arrive in pieces.
    let response = gateway
        .post(CHAT)
        .json(&json!({"model": "claude", "messages": question, "tools": weather_tools(), "tool_choice": "required", "stream": true}))
        .send()
        .await
        .unwrap();
    let chunks = chunks_of(&response.text().await.unwrap());
    let mut arguments = String::new();
    let mut name = None;
    for chunk in &chunks {
        for piece in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(piece["index"], 0);
            name = piece["function"]["name"]
                .as_str()
                .map(str::to_owned)
                .or(name);
            arguments.push_str(piece["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"location": "Paris"})
    );
    let sent = upstream.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"any": {}}));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_signature_check_and_reported_to_the_operator() {
    let upstream = MockUpstream::start(MockConfig {
        api_key: Some("another-secret".to_owned()),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let gateway = Gateway::start(&custom_config(
        &[signed("claude", &upstream, MODEL)],
        "",
        "",
    ))
    .await;
    let response = gateway
        .post(CHAT)
        .json(&chat("claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{body}"
    );
    assert!(!body.to_string().contains(UPSTREAM_KEY));
    let log = gateway.log();
    assert!(log.contains("refused the gateway's credentials"), "{log}");
    assert!(!log.contains(UPSTREAM_KEY), "the secret reached the log");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn embeddings_use_titan_and_answer_base64_when_asked() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[bearer("titan", &upstream, "amazon.titan-embed-text-v2:0")
            .with("model_type", "embedding")
            .with(
                "metadata",
                &format!(
                    "{{aws_access_key_id: {BEDROCK_ACCESS_KEY_ID}, bedrock_embed_dims: \"256\"}}"
                ),
            )],
        "",
        "",
    ))
    .await;
    let response = gateway
        .post("/v1/embeddings")
        .header("x-request-id", "it-bedrock-embed")
        .json(&json!({"model": "titan", "input": "three words here", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "titan");
    let encoded = answer["data"][0]["embedding"].as_str().unwrap();
    let bytes = decode_base64(encoded);
    assert_eq!(bytes.len(), 256 * 4, "256 float32 values");
    let norm: f32 = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .map(|v| v * v)
        .sum();
    assert!((norm - 1.0).abs() < 0.01, "a unit vector: {norm}");
    assert_eq!(answer["usage"]["prompt_tokens"], 3);
    let sent = upstream.requests_to("/model/amazon.titan-embed-text-v2%3A0/invoke")[0]
        .json()
        .unwrap();
    assert_eq!(
        sent,
        json!({"inputText": "three words here", "dimensions": 256})
    );
    let record = gateway.usage_of("it-bedrock-embed").await;
    assert_eq!(record["prompt_tokens"], 3);

    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "titan", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");
    assert_eq!(
        upstream.requests().len(),
        1,
        "refused before any upstream call"
    );
}

#[tokio::test]
async fn errors_are_mapped_and_stream_faults_end_in_band() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[
            signed("bad", &upstream, &format!("{MODEL}+fail-400")),
            signed("limited", &upstream, &format!("{MODEL}+fail-429")),
            signed(
                "throttled",
                &upstream,
                &format!("{MODEL}+chunks-4+stream-error"),
            ),
            signed(
                "corrupt",
                &upstream,
                &format!("{MODEL}+chunks-4+corrupt-crc"),
            ),
            signed("down", &upstream, &format!("{MODEL}+fail-503")),
            signed("down", &upstream, MODEL).priority(1),
        ],
        "",
        "",
    ))
    .await;
    let response = gateway
        .post(CHAT)
        .json(&chat("bad", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_value");
    assert_eq!(body["error"]["message"], "mock bad request (fail-400)");

    let response = gateway
        .post(CHAT)
        .json(&chat("limited", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);

    let response = gateway
        .post(CHAT)
        .json(&chat("down", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "fails over to the next deployment");
    assert_eq!(response.headers()["x-omg-attempts"], "2");

    for (alias, code, request_id) in [
        ("throttled", "upstream_stream_error", "it-bedrock-throttled"),
        ("corrupt", "upstream_protocol", "it-bedrock-corrupt"),
    ] {
        let response = gateway
            .post(CHAT)
            .header("x-request-id", request_id)
            .json(&chat(alias, true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let events = sse_data(&text);
        assert!(!events.contains(&"[DONE]".to_owned()), "{text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{text}");
        let record = gateway.usage_of(request_id).await;
        assert_eq!(record["error_code"], code, "{record}");
        assert!(record["prompt_tokens"].as_u64().unwrap() > 0, "{record}");
    }
}

#[test]
fn a_bedrock_entry_without_a_region_is_refused_at_start_up() {
    let entry = Entry::new("claude", "http://127.0.0.1:9", MODEL).provider("bedrock");
    let log = refused_config_log(&custom_config(&[entry], "", ""));
    assert!(log.contains("model_catalog[0].region"), "{log}");
}
