//! Native Anthropic ingress (`POST /v1/messages`) through the data plane binary: passed
//! through to an Anthropic deployment, translated for other providers, errors in Anthropic's
//! shape, usage metered like chat. `count_tokens` is in `count_tokens.rs`.

use serde_json::{json, Value};

use crate::harness::*;

const MESSAGES: &str = "/v1/messages";

fn messages_request(gateway: &Gateway, request_id: &str) -> reqwest::RequestBuilder {
    // Anthropic's SDKs send the key as `x-api-key`.
    gateway
        .client
        .post(format!("{}{MESSAGES}", gateway.base))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-request-id", request_id)
}

/// `event:` names and data of an Anthropic stream.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(rest) = line.strip_prefix("event: ") {
                    name = Some(rest.to_owned());
                }
                if let Some(rest) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(rest).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

#[tokio::test]
async fn an_anthropic_deployment_gets_the_request_as_written() {
    let upstream = upstream().await;
    let entries = [Entry::new("claude", &upstream.origin(), "claude-test").provider("anthropic")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let body = json!({
        "model": "claude",
        "max_tokens": 64,
        "top_k": 5,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Say hello"}]
    });
    let response = messages_request(&gateway, "it-msg-native")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    assert_eq!(
        response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok()),
        Some("it-msg-native")
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["model"], "claude", "the alias is echoed");
    assert_eq!(answer["content"][0]["type"], "text");

    let seen = upstream.requests_to("/v1/messages");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(
        seen[0].header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    let mut expected = body.clone();
    expected["model"] = json!("claude-test");
    assert_eq!(
        seen[0].json().unwrap(),
        expected,
        "only the model is replaced: cache_control and top_k reach Anthropic"
    );

    let record = gateway.usage_of("it-msg-native").await;
    assert_eq!(record["endpoint"], "messages");
    assert_eq!(record["provider"], "anthropic");
    // Every input token is a prompt token; the marked system prompt was written to the cache.
    let usage = &answer["usage"];
    assert_eq!(usage["cache_creation_input_tokens"], 3, "{usage}");
    assert_eq!(
        record["prompt_tokens"].as_u64(),
        Some(usage["input_tokens"].as_u64().unwrap() + 3)
    );
    assert_eq!(record["cache_write_tokens"], 3);
    assert_eq!(
        record["completion_tokens"],
        answer["usage"]["output_tokens"]
    );
    assert_eq!(record["usage_estimated"], false);
}

#[tokio::test]
async fn an_anthropic_stream_passes_through_and_is_metered() {
    let upstream = upstream().await;
    let entries = [Entry::new("claude", &upstream.origin(), "claude-test").provider("anthropic")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = messages_request(&gateway, "it-msg-native-stream")
        .json(&json!({
            "model": "claude",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "Stream a greeting"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let text = response.text().await.unwrap();
    let events = events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert!(names.contains(&"content_block_delta"), "{text}");
    assert!(!text.contains("[DONE]"), "no OpenAI framing: {text}");

    let record = gateway.usage_of("it-msg-native-stream").await;
    assert_eq!(record["endpoint"], "messages");
    assert_eq!(record["stream"], true);
    assert_eq!(record["usage_estimated"], false);
    let delta = events
        .iter()
        .rev()
        .find(|(n, _)| n == "message_delta")
        .unwrap();
    assert_eq!(
        record["completion_tokens"],
        delta.1["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn other_providers_are_translated_both_ways() {
    let upstream = upstream().await;
    let entries = [Entry::new("gpt", &upstream.base_url(), "gpt-test")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = messages_request(&gateway, "it-msg-translated")
        .json(&json!({
            "model": "gpt",
            "max_tokens": 50,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["model"], "gpt");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert!(!answer["content"][0]["text"].as_str().unwrap().is_empty());
    let sent = upstream.requests_to("/v1/chat/completions")[0]
        .json()
        .unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["max_tokens"], 50);
    let record = gateway.usage_of("it-msg-translated").await;
    assert_eq!(record["endpoint"], "messages");
    assert_eq!(record["prompt_tokens"], answer["usage"]["input_tokens"]);

    // Streams are translated event by event.
    let response = messages_request(&gateway, "it-msg-translated-stream")
        .json(&json!({
            "model": "gpt",
            "max_tokens": 50,
            "stream": true,
            "messages": [{"role": "user", "content": "Stream please"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let text = response.text().await.unwrap();
    let events = events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start", "{text}");
    assert_eq!(names[1], "content_block_start", "{text}");
    assert_eq!(
        &names[names.len() - 2..],
        ["message_delta", "message_stop"],
        "{text}"
    );
    let delta = &events[events.len() - 2].1;
    let record = gateway.usage_of("it-msg-translated-stream").await;
    assert_eq!(record["completion_tokens"], delta["usage"]["output_tokens"]);
    assert!(record["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_builtin_mock_answers_anthropic_clients_too() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let response = messages_request(&gateway, "it-msg-mock")
        .json(&json!({"model": "mock-chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "message", "{answer}");
    assert!(answer["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn errors_are_in_anthropic_shape() {
    let upstream = upstream().await;
    let entries = [Entry::new("gpt", &upstream.base_url(), "gpt-test")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;

    let response = gateway
        .client
        .post(format!("{}{MESSAGES}", gateway.base))
        .header("x-api-key", "sk-demo.wrong")
        .json(&json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    for (request, status, kind) in [
        (
            json!({"model": "gpt", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
        ),
    ] {
        let response = messages_request(&gateway, "it-msg-error")
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{request}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert!(upstream.requests_to("/v1/chat/completions").is_empty());
}

#[tokio::test]
async fn what_only_anthropic_reads_passes_to_anthropic_and_is_refused_for_others() {
    let upstream = upstream().await;
    let entries = [
        Entry::new("claude", &upstream.origin(), "claude-test").provider("anthropic"),
        Entry::new("mixed", &upstream.origin(), "claude-test").provider("anthropic"),
        Entry::new("mixed", &upstream.base_url(), "gpt-test"),
    ];
    // No budget: server tools are billed per use, which a budget's reservation cannot bound
    // (refused under a budget, see `limits_bounds.rs`).
    let no_budget = "budgets:\n  default_usd: 0\n";
    let gateway = Gateway::start(&custom_config(&entries, "", no_budget)).await;
    // A PDF document, a server tool and a system block list with a citation-ready document:
    // Anthropic-only features the OpenAI form cannot carry.
    let pdf = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK";
    let body = json!({
        "model": "claude",
        "max_tokens": 64,
        "system": "Answer from the contract.",
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
             "title": "contract.pdf", "citations": {"enabled": true}},
            {"type": "text", "text": "What is the notice period?"}
        ]}]
    });
    let response = messages_request(&gateway, "it-msg-document")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let seen = upstream.requests_to("/v1/messages");
    let mut expected = body.clone();
    expected["model"] = json!("claude-test");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].json().unwrap(),
        expected,
        "passed through as written"
    );
    let record = gateway.usage_of("it-msg-document").await;
    assert_eq!(
        (record["status"].as_u64(), record["provider"].as_str()),
        (Some(200), Some("anthropic"))
    );

    // count_tokens reads it the same way (only Anthropic deployments count).
    let mut count = body.clone();
    count.as_object_mut().unwrap().remove("max_tokens");
    let response = gateway
        .client
        .post(format!("{}{MESSAGES}/count_tokens", gateway.base))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&count)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());

    // An alias that may fail over to another provider cannot take it: refused up front,
    // naming the block, before any upstream call.
    let mut mixed = body.clone();
    mixed["model"] = json!("mixed");
    let response = messages_request(&gateway, "it-msg-mixed")
        .json(&mixed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`document`"),
        "{error}"
    );
    assert_eq!(upstream.requests_to("/v1/messages").len(), 1);
    assert!(upstream.requests_to("/v1/chat/completions").is_empty());
}
