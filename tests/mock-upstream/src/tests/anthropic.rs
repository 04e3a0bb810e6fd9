//! `POST /v1/messages`: Anthropic's checks, answers, streams and error shapes.

use super::*;

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn message(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Say hello to the gateway"}]
    })
}

/// A weather question with one tool.
fn weather(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [{"name": "get_weather", "description": "Weather of a city", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    })
}

impl Client {
    /// `POST /v1/messages` with the key and version headers (plus `extra`).
    async fn messages(&mut self, body: &Value, extra: &[(&str, &str)]) {
        let mut headers = vec![
            ("x-api-key", KEY),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.send("POST", "/v1/messages", &headers, &body.to_string())
            .await;
    }
}

/// `{"type":"error","error":{"type":…,"message":…}}`: the error's type and message.
pub(super) fn anthropic_error(reply: &Reply) -> (String, String) {
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    let error = body["error"].as_object().unwrap();
    assert_eq!(error.len(), 2, "{body}");
    (
        error["type"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

/// The `(event, data)` pairs of an Anthropic SSE body.
fn named_events(text: &str) -> Vec<(String, String)> {
    assert!(
        text.ends_with("\n\n"),
        "events end with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (event, data) = e.split_once('\n').unwrap();
            (
                event.strip_prefix("event: ").unwrap().to_owned(),
                data.strip_prefix("data: ").unwrap().to_owned(),
            )
        })
        .collect()
}

fn parsed(events: &[(String, String)]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|(name, data)| {
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name.as_str(), "{data}");
            (name.clone(), data)
        })
        .collect()
}

/// Every event until the connection ends, and whether the terminating chunk came.
async fn stream_until_end(client: &mut Client) -> (Vec<(String, String)>, bool) {
    let mut text = String::new();
    let terminated = loop {
        match client.chunk().await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8(chunk).unwrap()),
            Ok(None) => break true,
            Err(()) => break false,
        }
    };
    (named_events(&text), terminated)
}

#[tokio::test]
async fn auth_is_x_api_key_only() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let body = message("claude-test").to_string();
    let version = ("anthropic-version", "2023-06-01");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[version], "x-api-key header is required"),
        (
            &[version, ("authorization", "Bearer test-key")],
            "x-api-key header is required",
        ),
        (&[version, ("x-api-key", "wrong")], "invalid x-api-key"),
    ];
    for (headers, message) in cases {
        client.send("POST", "/v1/messages", headers, &body).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 401, "{headers:?}");
        assert_eq!(reply.head.header("content-type"), Some("application/json"));
        assert_eq!(
            anthropic_error(&reply),
            ("authentication_error".to_owned(), message.to_owned())
        );
    }
    // The version header is required and must be a date.
    for headers in [
        &[("x-api-key", KEY)][..],
        &[("x-api-key", KEY), ("anthropic-version", "v1")],
    ] {
        client.send("POST", "/v1/messages", headers, &body).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 400);
        let (kind, message) = anthropic_error(&reply);
        assert_eq!(kind, "invalid_request_error");
        assert!(message.contains("anthropic-version"), "{message}");
    }
    client.messages(&message("claude-test"), &[]).await;
    assert_eq!(client.reply().await.head.status, 200);
    client
        .send("GET", "/v1/messages", &[("x-api-key", KEY), version], "")
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 404);
    assert_eq!(anthropic_error(&reply).0, "not_found_error");
    client
        .send(
            "POST",
            "/v1/messages/batches",
            &[("x-api-key", KEY), version],
            &body,
        )
        .await;
    assert_eq!(client.reply().await.head.status, 404);
    assert_eq!(upstream.requests_to("/v1/messages").len(), 7);
    assert_eq!(upstream.request_count(), 8);
}

#[tokio::test]
async fn bodies_are_checked_like_anthropic() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let base = message("claude-test");
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let user = |content: Value| json!([{"role": "user", "content": content}]);
    let tool_use = json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}});
    let tool_result = json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"});
    let cases: Vec<(Value, &str)> = vec![
        (json!([1]), "not valid JSON"),
        (without("model"), "model: Field required"),
        (without("max_tokens"), "max_tokens: Field required"),
        (with("max_tokens", json!(0)), "max_tokens: Input should be greater than or equal to 1"),
        (with("max_tokens", json!(1.5)), "max_tokens: Input should be a valid integer"),
        (without("messages"), "messages: Field required"),
        (with("messages", json!([])), "messages: at least one message is required"),
        (with("n", json!(1)), "n: Extra inputs are not permitted"),
        (with("stream_options", json!({"include_usage": true})), "stream_options: Extra inputs are not permitted"),
        (with("frequency_penalty", json!(0)), "frequency_penalty: Extra inputs are not permitted"),
        (with("messages", json!([{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hi"}])), "Unexpected role \"system\""),
        (with("messages", json!([{"role": "tool", "content": "x"}])), "messages.0.role: Input should be 'user' or 'assistant'"),
        (with("messages", json!([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hi"}])), "first message must use the \"user\" role"),
        (with("messages", json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": []}])), "messages.1.tool_calls: Extra inputs are not permitted"),
        (with("messages", user(json!(""))), "messages.0: all messages must have non-empty content"),
        (with("messages", user(json!([{"type": "text", "text": ""}]))), "messages.0.content.0.text: text content blocks must be non-empty"),
        (with("messages", user(json!([{"type": "image_url", "image_url": {"url": "https://x"}}]))), "messages.0.content.0: Input tag 'image_url'"),
        (with("messages", user(json!([{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "Qk0="}}]))), "source.base64.media_type: Input should be"),
        (with("messages", user(json!([{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}}]))), "does not appear to be a valid jpeg image"),
        (with("messages", user(json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": format!("data:image/png;base64,{PNG}")}}]))), "source.base64.data: invalid base64 data"),
        (with("messages", json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure. "}])), "final assistant content cannot end with trailing whitespace"),
        (with("messages", user(json!([tool_result]))), "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1"),
        (with("messages", json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [tool_use]}, {"role": "user", "content": "and?"}])), "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"),
        (with("messages", user(json!([tool_use]))), "messages.0.content.0: `tool_use` blocks can only be in `assistant` messages"),
        (with("system", json!([{"type": "image"}])), "system.0.type: Input should be 'text'"),
        (with("tools", json!([{"type": "function", "function": {"name": "f", "parameters": {}}}])), "tools.0.type: Input should be 'custom'"),
        (with("tools", json!([{"name": "f", "parameters": {"type": "object"}}])), "tools.0.parameters: Extra inputs are not permitted"),
        (with("tools", json!([{"name": "f"}])), "tools.0.input_schema: Field required"),
        (with("tools", json!([{"name": "f", "input_schema": {"properties": {}}}])), "tools.0.input_schema.type: Field required"),
        (with("tools", json!([{"name": "f.g", "input_schema": {"type": "object"}}])), "tools.0.name: String should match pattern"),
        (with("tools", json!([{"name": "f", "input_schema": {"type": "object"}}, {"name": "f", "input_schema": {"type": "object"}}])), "tools: Tool names must be unique."),
        (with("tool_choice", json!("auto")), "tool_choice: Input should be a valid dictionary"),
        (with("tool_choice", json!({"type": "required"})), "tool_choice: Input tag 'required'"),
        (with("tool_choice", json!({"type": "auto", "name": "f"})), "tool_choice.auto.name: Extra inputs are not permitted"),
        (with("stop_sequences", json!("END")), "stop_sequences: Input should be a valid list"),
        (with("stop_sequences", json!([" \n"])), "stop_sequences: each stop sequence must contain non-whitespace"),
        (with("temperature", json!(1.5)), "temperature: Input should be less than or equal to 1"),
        (with("top_p", json!(-0.1)), "top_p: Input should be greater than or equal to 0"),
        (with("stream", json!("yes")), "stream: Input should be a valid boolean"),
        (with("metadata", json!({"user_id": 5})), "metadata.user_id: Input should be a valid string"),
        (with("metadata", json!({"user": "u"})), "metadata.user: Extra inputs are not permitted"),
    ];
    for (body, expected) in cases {
        client.messages(&body, &[]).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 400, "{body}");
        let (kind, message) = anthropic_error(&reply);
        assert_eq!(kind, "invalid_request_error", "{body}");
        assert!(
            message.contains(expected),
            "{message:?} lacks {expected:?} ({body})"
        );
    }

    // Everything Anthropic accepts at once.
    let body = json!({
        "model": "claude-test",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, tool_use]},
            {"role": "user", "content": [tool_result, {"type": "text", "text": "thanks"}]},
            {"role": "user", "content": "merged with the previous turn"},
            {"role": "assistant", "content": "Prefilled"}
        ],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "stop_sequences": ["STOP"],
        "temperature": 1,
        "top_p": 0.9,
        "top_k": 5,
        "stream": false,
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "disabled"},
        "service_tier": "auto"
    });
    client.messages(&body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(
        reply.head.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[tokio::test]
async fn json_answer_is_a_message() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = message("claude-test");
    body["system"] = json!("Be brief");
    client.messages(&body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.head.header("content-type"), Some("application/json"));
    assert_eq!(reply.head.header("x-request-id"), Some("mock-1"));
    assert_eq!(
        reply.json(),
        json!({
            "id": "msg_mock_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "w0 w1 w2 w3 w4."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 7, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        })
    );
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"id":"msg_mock_1","type":"message","role":"assistant","#),
        "{text}"
    );

    // max_tokens cuts the answer short.
    let mut body = message("claude-test+chunks-6");
    body["max_tokens"] = json!(2);
    client.messages(&body, &[]).await;
    let answer = client.reply().await.json();
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "w0 w1 "}])
    );
    assert_eq!(answer["stop_reason"], "max_tokens");
    assert_eq!(answer["usage"]["output_tokens"], 2);

    // A stop sequence ends it before the sequence.
    let mut body = message("claude-test");
    body["stop_sequences"] = json!(["w3", "w2"]);
    client.messages(&body, &[]).await;
    let answer = client.reply().await.json();
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "w0 w1 "}])
    );
    assert_eq!(
        (
            answer["stop_reason"].as_str(),
            answer["stop_sequence"].as_str()
        ),
        (Some("stop_sequence"), Some("w2"))
    );

    let recorded = upstream.requests_to("/v1/messages");
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].header("x-api-key"), Some(KEY));
    assert_eq!(recorded[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(recorded[0].json().unwrap()["system"], "Be brief");
}

#[tokio::test]
async fn tool_use_answers() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    // The weather is asked for: some text, then the call.
    client.messages(&weather("claude-test+chunks-2"), &[]).await;
    let answer = client.reply().await.json();
    assert_eq!(
        answer["content"],
        json!([
            {"type": "text", "text": "w0 w1."},
            {"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {"location": "Paris"}}
        ])
    );
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(answer["usage"]["output_tokens"], 5);

    // A forced tool: the call alone, to the named tool.
    let mut body = message("claude-test");
    body["tools"] = json!([
        {"name": "lookup", "input_schema": {"type": "object"}},
        {"name": "get_weather", "input_schema": {"type": "object"}}
    ]);
    for (choice, name) in [
        (json!({"type": "any"}), "lookup"),
        (
            json!({"type": "tool", "name": "get_weather"}),
            "get_weather",
        ),
    ] {
        body["tool_choice"] = choice;
        client.messages(&body, &[]).await;
        let answer = client.reply().await.json();
        let content = answer["content"].as_array().unwrap();
        assert_eq!(content.len(), 1, "{answer}");
        assert_eq!(
            (content[0]["type"].as_str(), content[0]["name"].as_str()),
            (Some("tool_use"), Some(name))
        );
        assert_eq!(answer["stop_reason"], "tool_use");
    }
    body["tool_choice"] = json!({"type": "tool", "name": "missing"});
    client.messages(&body, &[]).await;
    assert_eq!(client.reply().await.head.status, 400);

    // `none`, or no weather: text only.
    let mut body = weather("claude-test");
    body["tool_choice"] = json!({"type": "none"});
    client.messages(&body, &[]).await;
    assert_eq!(client.reply().await.json()["stop_reason"], "end_turn");
    client.messages(&message("claude-test"), &[]).await;
    assert_eq!(client.reply().await.json()["stop_reason"], "end_turn");
}

#[tokio::test]
async fn streams_are_anthropic_events() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = weather("claude-test+chunks-3");
    body["stream"] = json!(true);
    client.messages(&body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.head.header("content-type"), Some("text/event-stream"));
    let events = parsed(&named_events(&String::from_utf8(reply.body).unwrap()));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[0].1["message"],
        json!({"id": "msg_mock_1", "type": "message", "role": "assistant", "model": "claude-test+chunks-3", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 5, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
    );
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let text: String = events[3..6]
        .iter()
        .map(|(_, e)| {
            assert_eq!(
                (e["index"].as_u64(), e["delta"]["type"].as_str()),
                (Some(0), Some("text_delta"))
            );
            e["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "w0 w1 w2.");
    assert_eq!(
        events[7].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {}})
    );
    let json_text: String = events[8..12]
        .iter()
        .map(|(_, e)| {
            assert_eq!(
                (e["index"].as_u64(), e["delta"]["type"].as_str()),
                (Some(1), Some("input_json_delta"))
            );
            e["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"location": "Paris"})
    );
    assert_eq!(
        events[13].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 6}})
    );

    // Paced text, the connection reused.
    let mut body = message("claude-test+chunks-2+chunk-delay-30");
    body["stream"] = json!(true);
    let started = Instant::now();
    client.messages(&body, &[]).await;
    let events = parsed(&named_events(
        &String::from_utf8(client.reply().await.body).unwrap(),
    ));
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(events.len(), 8);
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn stream_faults() {
    let upstream = server().await;
    // cut-after: two deltas, then the connection drops, no message_stop.
    let mut client = Client::connect(&upstream).await;
    let mut body = message("claude-test+cut-after-2");
    body["stream"] = json!(true);
    client.messages(&body, &[]).await;
    assert_eq!(client.head().await.status, 200);
    let (events, terminated) = stream_until_end(&mut client).await;
    assert!(!terminated, "the stream is cut");
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta"
        ]
    );

    // stream-error: an error event after the first delta, then the stream ends in order (it
    // comes before the cut here).
    let mut client = Client::connect(&upstream).await;
    client
        .messages(&body, &[("x-mock-behaviour", "stream-error")])
        .await;
    client.head().await;
    let (events, terminated) = stream_until_end(&mut client).await;
    assert!(terminated);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&events[4].1).unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    let mut body = message("claude-test+stream-error");
    body["stream"] = json!(true);
    client.messages(&body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(
        named_events(&String::from_utf8(reply.body).unwrap())
            .last()
            .unwrap()
            .0,
        "error"
    );

    // malformed: the second event's data is not JSON.
    let mut body = message("claude-test+malformed");
    body["stream"] = json!(true);
    client.messages(&body, &[]).await;
    let events = named_events(&String::from_utf8(client.reply().await.body).unwrap());
    assert_eq!(events[0].0, "message_start");
    assert_eq!(events[1].1, "{not json");
    assert_eq!(events.last().unwrap().0, "message_stop");
    client
        .messages(&message("claude-test+malformed"), &[])
        .await;
    assert_eq!(client.reply().await.body, b"{not json");
}

#[tokio::test]
async fn scripted_failures_in_anthropic_shapes() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    for (spec, status, kind) in [
        ("fail-500", 500, "api_error"),
        ("fail-502", 502, "api_error"),
        ("fail-503", 503, "api_error"),
        ("fail-529", 529, "overloaded_error"),
        ("fail-400", 400, "invalid_request_error"),
        ("fail-429+retry-after-7", 429, "rate_limit_error"),
    ] {
        client
            .messages(&message(&format!("claude-test+{spec}")), &[])
            .await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, status, "{spec}");
        assert_eq!(anthropic_error(&reply).0, kind, "{spec}");
        let retry_after = (status == 429).then_some("7");
        assert_eq!(reply.head.header("retry-after"), retry_after, "{spec}");
    }
    // From the header and the instance default too; streams fail before any event.
    let mut body = message("claude-test");
    body["stream"] = json!(true);
    upstream.set_behaviour("fail-529");
    client.messages(&body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 529);
    assert_eq!(reply.head.header("content-type"), Some("application/json"));
    upstream.set_behaviour("");
    client
        .messages(&body, &[("x-mock-behaviour", "fail-429")])
        .await;
    assert_eq!(client.reply().await.head.header("retry-after"), Some("1"));

    // The body is checked before the scripted behaviour is played.
    let mut bad = message("claude-test+fail-503");
    bad["n"] = json!(1);
    client.messages(&bad, &[]).await;
    assert_eq!(client.reply().await.head.status, 400);

    let started = Instant::now();
    client.messages(&message("claude-test+slow-50"), &[]).await;
    assert_eq!(client.reply().await.head.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));

    let mut client = Client::connect(&upstream).await;
    client
        .messages(&body, &[("x-mock-behaviour", "reset-after-headers")])
        .await;
    let head = client.head().await;
    assert_eq!(
        (head.status, head.header("content-type")),
        (200, Some("text/event-stream"))
    );
    let (rest, end) = client.until_end().await;
    assert!(rest.is_empty());
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );

    let mut hanging = Client::connect(&upstream).await;
    hanging.messages(&message("claude-test+hang"), &[]).await;
    let waited = tokio::time::timeout(Duration::from_millis(150), hanging.fill()).await;
    assert!(waited.is_err(), "a hanging request gets nothing");
}
