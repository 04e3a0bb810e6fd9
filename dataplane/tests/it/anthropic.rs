//! The `anthropic` provider through the data plane binary, against the mock upstream's
//! Messages API (which checks `x-api-key`, `anthropic-version` and Anthropic's body rules).

use serde_json::{json, Value};

use crate::harness::*;

const CHAT: &str = "/v1/chat/completions";

fn claude(upstream: &omg_mock_upstream::MockUpstream, model: &str) -> Entry {
    Entry::new("claude", &upstream.origin(), model).provider("anthropic")
}

async fn gateway_for(entries: &[Entry]) -> Gateway {
    Gateway::start(&custom_config(entries, "", "")).await
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

#[tokio::test]
async fn chat_is_translated_both_ways_and_metered() {
    let upstream = upstream().await;
    let gateway = gateway_for(&[claude(&upstream, "claude-test")]).await;
    let body = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway"}
        ],
        "temperature": 0.5,
        "stop": ["END"]
    });
    let response = gateway
        .post(CHAT)
        .header("x-request-id", "it-claude-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        answer["model"], "claude",
        "the alias, as OpenAI echoes the model asked for"
    );
    assert!(answer["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["role"], "assistant");
    assert!(!message["content"].as_str().unwrap().is_empty());
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    let seen = upstream.requests_to("/v1/messages");
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "Anthropic takes x-api-key only"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let sent = seen.json().unwrap();
    assert_eq!(sent["model"], "claude-test");
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "You are terse."}]),
        "system hoisted"
    );
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    assert_eq!(sent["messages"][0]["role"], "user");
    assert!(sent["messages"][0]
        .to_string()
        .contains("Say hello to the gateway"));
    assert_eq!(sent["max_tokens"], 4096, "Anthropic requires max_tokens");
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["temperature"], 0.5);

    let record = gateway.usage_of("it-claude-1").await;
    assert_eq!(record["status"], 200);
    assert_eq!(record["provider"], "anthropic");
    assert_eq!(record["usage_estimated"], false);
    assert_eq!(record["prompt_tokens"], answer["usage"]["prompt_tokens"]);
    assert_eq!(
        record["completion_tokens"],
        answer["usage"]["completion_tokens"]
    );
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn streams_become_openai_chunks_with_usage() {
    let upstream = upstream().await;
    let gateway = gateway_for(&[claude(&upstream, "claude-test+chunks-5")]).await;
    let mut body = chat("claude", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = gateway
        .post(CHAT)
        .header("x-request-id", "it-claude-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "claude"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.is_empty());
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{text}");

    let sent = upstream.requests_to("/v1/messages")[0].json().unwrap();
    assert_eq!(sent["stream"], true);
    assert!(
        sent.get("stream_options").is_none(),
        "not an Anthropic field"
    );
    let record = gateway.usage_of("it-claude-stream").await;
    assert_eq!(record["stream"], true);
    assert_eq!(record["completion_tokens"], usage["completion_tokens"]);
    assert_eq!(record["prompt_tokens"], usage["prompt_tokens"]);
    assert!(record["ttft_ms"].is_number(), "{record}");
}

#[tokio::test]
async fn tool_calls_go_both_ways_json_and_streamed() {
    let upstream = upstream().await;
    let gateway = gateway_for(&[claude(&upstream, "claude-test")]).await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": weather_tools(),
        "tool_choice": "auto"
    });
    let answer: Value = gateway
        .post(CHAT)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "Paris"}));
    let sent = upstream.requests_to("/v1/messages")[0].json().unwrap();
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    // The tool's answer goes back as a tool_result block.
    let follow_up = json!({
        "model": "claude",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 °C"}
        ],
        "tools": weather_tools()
    });
    let response = gateway.post(CHAT).json(&follow_up).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let sent = upstream.requests_to("/v1/messages")[1].json().unwrap();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], call["id"]);

    // Streamed: the arguments arrive in pieces and add up to the same object.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = gateway
        .post(CHAT)
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut arguments = String::new();
    let mut name = None;
    let mut finish = None;
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        let choice = &chunk["choices"][0];
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for call in calls {
                assert_eq!(call["index"], 0);
                if let Some(n) = call["function"]["name"].as_str() {
                    name = Some(n.to_owned());
                }
                arguments.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"location": "Paris"})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn anthropic_errors_are_mapped_and_failures_fail_over() {
    let upstream = upstream().await;
    let entries = [
        claude(&upstream, "claude-test+fail-400"),
        Entry::new("overloaded", &upstream.origin(), "claude-test+fail-529").provider("anthropic"),
        Entry::new("overloaded", &upstream.origin(), "claude-test")
            .provider("anthropic")
            .priority(1),
        Entry::new(
            "limited",
            &upstream.origin(),
            "claude-test+fail-429+retry-after-9",
        )
        .provider("anthropic"),
    ];
    // Under `/v1/messages/`: the mock checks the key, then answers 404 `not_found_error`.
    let misrouted = format!("{}/v1/messages/x", upstream.origin());
    let mut entries = entries.to_vec();
    entries.push(Entry::new("misrouted", &misrouted, "claude-test").provider("anthropic"));
    entries.push(
        Entry::new("misrouted", &upstream.origin(), "claude-test")
            .provider("anthropic")
            .priority(1),
    );
    entries.push(Entry::new("lost", &misrouted, "claude-test").provider("anthropic"));
    let gateway = gateway_for(&entries).await;

    // A 404 is the catalog entry's fault, not the client's: the next deployment answers, and
    // with none left the client gets a 502 that says so.
    let response = gateway
        .post(CHAT)
        .json(&chat("misrouted", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-omg-attempts"], "2");
    let response = gateway
        .post(CHAT)
        .json(&chat("lost", false))
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
            .contains("catalog entry"),
        "{body}"
    );

    // A client error Anthropic caught: its status, OpenAI's shape, no failover.
    let response = gateway
        .post(CHAT)
        .json(&chat("claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "invalid_value", "{body}");
    assert!(
        body["error"].get("param").is_some(),
        "all four keys: {body}"
    );

    // 529 overloaded: the next deployment answers.
    let response = gateway
        .post(CHAT)
        .json(&chat("overloaded", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-omg-attempts"], "2");

    // 429 with retry-after: passed on in OpenAI's shape.
    let response = gateway
        .post(CHAT)
        .json(&chat("limited", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "9");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(!body.to_string().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_it_with_an_in_band_error_and_is_billed() {
    let upstream = upstream().await;
    let gateway = gateway_for(&[claude(&upstream, "claude-test+chunks-4+stream-error")]).await;
    let response = gateway
        .post(CHAT)
        .header("x-request-id", "it-claude-error")
        .json(&chat("claude", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert!(!events.contains(&"[DONE]".to_owned()), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    assert_eq!(
        text.matches("\"error\"").count(),
        1,
        "one error event: {text}"
    );
    let record = gateway.usage_of("it-claude-error").await;
    assert_eq!(record["error_code"], "upstream_stream_error");
    assert!(record["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(
        record["completion_tokens"].as_u64().unwrap() > 0,
        "{record}"
    );
}

#[tokio::test]
async fn what_anthropic_cannot_do_is_refused_before_any_upstream_call() {
    let upstream = upstream().await;
    let gateway = gateway_for(&[claude(&upstream, "claude-test")]).await;
    let response = gateway
        .post("/v1/completions")
        .json(&json!({"model": "claude", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "operation_unsupported", "{body}");
    assert_eq!(body["error"]["param"], "model");

    // `/v1/models` says what the model can do.
    let model: Value = gateway
        .client
        .get(format!("{}/v1/models/claude", gateway.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(model["capabilities"], json!(["chat", "stream"]), "{model}");
    assert_eq!(model["owned_by"], "anthropic");

    let mut two = chat("claude", false);
    two["n"] = json!(2);
    let response = gateway.post(CHAT).json(&two).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "n", "{body}");
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn metadata_sets_the_version_and_max_tokens() {
    let upstream = upstream().await;
    let entry = claude(&upstream, "claude-test")
        .with("metadata", "{anthropic_version: \"2024-01-01\", anthropic_max_tokens: \"256\", anthropic_beta: \"tools-2024-04-04\"}");
    let gateway = gateway_for(&[entry]).await;
    let response = gateway
        .post(CHAT)
        .json(&chat("claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = &upstream.requests_to("/v1/messages")[0];
    assert_eq!(seen.header("anthropic-version"), Some("2024-01-01"));
    assert_eq!(seen.header("anthropic-beta"), Some("tools-2024-04-04"));
    assert_eq!(seen.json().unwrap()["max_tokens"], 256);
}

#[test]
fn bad_anthropic_metadata_is_refused_at_start_up() {
    let entry = Entry::new("claude", "http://127.0.0.1:9", "claude-test")
        .provider("anthropic")
        .with("metadata", "{anthropic_max_tokens: \"lots\"}");
    let log = refused_config_log(&custom_config(&[entry], "", ""));
    assert!(log.contains("anthropic_max_tokens"), "{log}");
}

/// Cost in micro-USD, rounded up once, at Claude Sonnet's prices: $3/M input, $0.30/M cache
/// reads, $3.75/M cache writes, $15/M output.
fn sonnet_cost(record: &Value) -> i64 {
    let n = |field: &str| u128::from(record[field].as_u64().unwrap_or(0));
    let (read, write) = (n("cached_tokens"), n("cache_write_tokens"));
    let uncached = n("prompt_tokens") - read - write;
    let nano_times_1k = uncached * 3_000_000
        + read * 300_000
        + write * 3_750_000
        + n("completion_tokens") * 15_000_000;
    i64::try_from(nano_times_1k.div_ceil(1_000_000)).unwrap()
}

#[tokio::test]
async fn prompt_cache_writes_and_reads_are_billed_at_their_own_prices() {
    let upstream = upstream().await;
    let entry = claude(&upstream, "claude-test")
        .with("price_input", "0.003")
        .with("price_output", "0.015")
        .with("price_cache_read", "0.0003")
        .with("price_cache_write", "0.00375");
    let gateway = gateway_for(&[entry]).await;
    let long_context = "clause ".repeat(400);
    let body = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": long_context, "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "user", "content": "Summarize the contract"}
        ]
    });
    let mut records = Vec::new();
    for id in ["it-cache-write", "it-cache-read"] {
        let response = gateway
            .post(CHAT)
            .header("x-request-id", id)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.log());
        let answer: Value = response.json().await.unwrap();
        records.push((answer, gateway.usage_of(id).await));
    }
    let sent = upstream.requests_to("/v1/messages");
    assert_eq!(
        sent[0].json().unwrap()["system"][0]["cache_control"],
        json!({"type": "ephemeral"}),
        "the marker reaches Anthropic"
    );

    let (first, write) = &records[0];
    assert_eq!(write["cache_write_tokens"], 400, "{write}");
    assert_eq!(write["cached_tokens"], 0);
    assert_eq!(first["usage"]["prompt_tokens"], write["prompt_tokens"]);
    assert_eq!(write["cost_micro_usd"], sonnet_cost(write));

    let (second, read) = &records[1];
    assert_eq!(read["cached_tokens"], 400, "{read}");
    assert!(
        read.get("cache_write_tokens").is_none(),
        "written when non-zero"
    );
    assert_eq!(
        second["usage"]["prompt_tokens_details"]["cached_tokens"],
        400
    );
    assert_eq!(read["cost_micro_usd"], sonnet_cost(read));
    // Same prompt, same answer size: the write costs 1.25× the input price, the read 0.1×.
    assert_eq!(read["prompt_tokens"], write["prompt_tokens"]);
    let saved =
        write["cost_micro_usd"].as_i64().unwrap() - read["cost_micro_usd"].as_i64().unwrap();
    assert_eq!(saved, (400 * (3_750_000 - 300_000_i64)) / 1_000_000);
}
