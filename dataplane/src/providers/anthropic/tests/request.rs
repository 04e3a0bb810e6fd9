//! `build_request`: goldens, tool choice, defaults, and refusals that name the parameter.

use std::collections::BTreeMap;

use omg_shared::error::ErrorCode;
use serde_json::{json, Value};

use super::{fixture, fixture_json};
use crate::error::ApiError;
use crate::providers::anthropic::{
    auth_header, build_request, AnthropicDefaults, AnthropicRequest, MESSAGES_PATH,
};

const MODEL: &str = "claude-sonnet-4-20250514";

fn build(body: &Value) -> Result<AnthropicRequest, ApiError> {
    build_request(
        body.to_string().as_bytes(),
        MODEL,
        &AnthropicDefaults::default(),
    )
}

/// The Messages body for an OpenAI body.
fn translate(body: Value) -> Value {
    match build(&body) {
        Ok(request) => super::json(&request.body),
        Err(error) => panic!("refused: {error:?}"),
    }
}

/// The refusal for an OpenAI body.
fn refuse(body: Value) -> ApiError {
    match build(&body) {
        Ok(request) => panic!(
            "accepted: {}",
            String::from_utf8_lossy(&request.body)
                .chars()
                .take(300)
                .collect::<String>()
        ),
        Err(error) => error,
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn with_tools(extra: Value) -> Value {
    let mut body = json!({
        "model": "a",
        "messages": [user("hi")],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[test]
fn golden_full_request() {
    let request = build_request(
        &fixture("request_full.openai.json"),
        MODEL,
        &AnthropicDefaults::default(),
    );
    let request = request.unwrap_or_else(|error| panic!("{error:?}"));
    assert_eq!(request.path, MESSAGES_PATH);
    assert_eq!(
        request.headers,
        vec![("anthropic-version", "2023-06-01".to_owned()),]
    );
    assert_eq!(
        super::json(&request.body),
        fixture_json("request_full.anthropic.json")
    );
}

#[test]
fn golden_minimal_request_gets_default_max_tokens() {
    let request = build_request(
        &fixture("request_minimal.openai.json"),
        MODEL,
        &AnthropicDefaults::default(),
    );
    let body = request.map(|r| super::json(&r.body)).ok();
    assert_eq!(body, Some(fixture_json("request_minimal.anthropic.json")));
}

#[test]
fn deployment_defaults_come_from_metadata() {
    let metadata: BTreeMap<String, String> = [
        ("anthropic_version", "2024-01-01"),
        ("anthropic_max_tokens", " 1024 "),
        ("anthropic_beta", "prompt-caching-2024-07-31"),
        ("other", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let defaults = AnthropicDefaults::from_metadata(&metadata);
    assert_eq!(
        defaults,
        Ok(AnthropicDefaults {
            version: "2024-01-01".to_owned(),
            max_tokens: 1024,
            beta: Some("prompt-caching-2024-07-31".to_owned()),
        })
    );
    let Ok(defaults) = defaults else { return };
    let body = json!({"model": "a", "messages": [user("hi")]});
    let request = build_request(body.to_string().as_bytes(), MODEL, &defaults);
    let Ok(request) = request else {
        panic!("{request:?}")
    };
    assert_eq!(super::json(&request.body)["max_tokens"], 1024);
    assert!(request
        .headers
        .contains(&("anthropic-version", "2024-01-01".to_owned())));
    assert!(request
        .headers
        .contains(&("anthropic-beta", "prompt-caching-2024-07-31".to_owned())));

    assert_eq!(
        AnthropicDefaults::from_metadata(&BTreeMap::new()),
        Ok(AnthropicDefaults::default())
    );
    for (key, value) in [
        ("anthropic_max_tokens", "0"),
        ("anthropic_max_tokens", "many"),
        ("anthropic_version", ""),
        ("anthropic_beta", "a\r\nx-evil: 1"),
    ] {
        let metadata = BTreeMap::from([(key.to_owned(), value.to_owned())]);
        let error = AnthropicDefaults::from_metadata(&metadata).err();
        assert!(error.is_some_and(|e| e.contains(key)), "{key}={value:?}");
    }
}

#[test]
fn auth_header_is_x_api_key() {
    assert_eq!(
        auth_header("sk-ant-123"),
        ("x-api-key", "sk-ant-123".to_owned())
    );
}

#[test]
fn tool_choice_variants() {
    let choice = |extra: Value| translate(with_tools(extra))["tool_choice"].clone();
    assert_eq!(
        choice(json!({"tool_choice": "auto"})),
        json!({"type": "auto"})
    );
    assert_eq!(
        choice(json!({"tool_choice": "required"})),
        json!({"type": "any"})
    );
    assert_eq!(
        choice(json!({"tool_choice": "none"})),
        json!({"type": "none"})
    );
    assert_eq!(
        choice(json!({"tool_choice": {"type": "function", "function": {"name": "f"}}})),
        json!({"type": "tool", "name": "f"})
    );
    assert_eq!(choice(json!({})), Value::Null, "Anthropic defaults to auto");
    assert_eq!(
        choice(json!({"parallel_tool_calls": false})),
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        choice(json!({"tool_choice": "required", "parallel_tool_calls": false})),
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        choice(json!({"tool_choice": "none", "parallel_tool_calls": false})),
        json!({"type": "none"})
    );
    assert_eq!(choice(json!({"parallel_tool_calls": true})), Value::Null);

    // Without tools: `none` is harmless, anything else is refused as OpenAI does.
    let plain = json!({"model": "a", "messages": [user("hi")], "tool_choice": "none", "parallel_tool_calls": false});
    let body = translate(plain);
    assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
    let error = refuse(json!({"model": "a", "messages": [user("hi")], "tool_choice": "auto"}));
    assert_eq!(error.param, Some("tool_choice"));
    for bad in [
        json!("sometimes"),
        json!({"type": "function"}),
        json!({"type": "allowed_tools"}),
    ] {
        let error = refuse(with_tools(json!({ "tool_choice": bad })));
        assert_eq!(error.param, Some("tool_choice"), "{bad}");
    }
}

#[test]
fn stop_and_token_limits() {
    let body = |extra: Value| {
        let mut body = json!({"model": "a", "messages": [user("hi")]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    assert_eq!(
        translate(body(json!({"stop": ["a", "b"]})))["stop_sequences"],
        json!(["a", "b"])
    );
    assert_eq!(
        translate(body(json!({"stop": "x"})))["stop_sequences"],
        json!(["x"])
    );
    assert!(translate(body(json!({"stop": null})))
        .get("stop_sequences")
        .is_none());
    assert!(translate(body(json!({"stop": []})))
        .get("stop_sequences")
        .is_none());
    assert_eq!(translate(body(json!({"max_tokens": 77})))["max_tokens"], 77);
    assert_eq!(
        translate(body(json!({"max_tokens": 77, "max_completion_tokens": 88})))["max_tokens"],
        88
    );
    assert_eq!(
        translate(body(json!({"temperature": 1})))["temperature"],
        1.0
    );
    assert!(translate(body(json!({"stream": false})))
        .get("stream")
        .is_none());
    assert_eq!(
        translate(body(json!({"user": "u", "safety_identifier": "s"})))["metadata"],
        json!({"user_id": "s"})
    );
    for (extra, param) in [
        (json!({"max_tokens": 0}), "max_tokens"),
        (
            json!({"max_completion_tokens": -1}),
            "max_completion_tokens",
        ),
        (json!({"max_tokens": "10"}), "max_tokens"),
        (json!({"temperature": 1.5}), "temperature"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"top_p": 2}), "top_p"),
        (json!({"stop": 3}), "stop"),
        (json!({"stream": "yes"}), "stream"),
        (json!({"user": 5}), "user"),
    ] {
        let error = refuse(body(extra.clone()));
        assert_eq!(error.code, ErrorCode::InvalidParameter, "{extra}");
        assert_eq!(error.param, Some(param), "{extra}");
    }
}

#[test]
fn unsupported_parameters_are_refused_by_name() {
    for (extra, param) in [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"audio": {"voice": "alloy", "format": "wav"}}),
            "audio",
        ),
        (json!({"modalities": ["text", "audio"]}), "modalities"),
        (json!({"presence_penalty": 0.5}), "presence_penalty"),
        (json!({"frequency_penalty": -1}), "frequency_penalty"),
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (
            json!({"prediction": {"type": "content", "content": "x"}}),
            "prediction",
        ),
        (json!({"reasoning_effort": "high"}), "reasoning_effort"),
        (json!({"web_search_options": {}}), "web_search_options"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
        (json!({"function_call": "auto"}), "function_call"),
        (
            json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            "tools",
        ),
        (json!({"tools": [{"type": "function"}]}), "tools"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}),
            "tools",
        ),
    ] {
        let mut body = json!({"model": "a", "messages": [user("hi")]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let error = refuse(body);
        assert_eq!(error.code, ErrorCode::InvalidParameter, "{extra}");
        assert_eq!(error.param, Some(param), "{extra}");
    }
    // No-op values of the same parameters are accepted.
    let body = json!({"model": "a", "messages": [user("hi")], "n": 1, "logprobs": false,
        "response_format": {"type": "text"}, "modalities": ["text"], "presence_penalty": 0,
        "frequency_penalty": 0.0, "logit_bias": {}, "seed": 1, "service_tier": "auto",
        "metadata": {"k": "v"}, "store": true, "stream_options": {"include_usage": true},
        "top_logprobs": null, "audio": null});
    assert!(build(&body).is_ok());
}

#[test]
fn message_errors_name_messages() {
    let cases = [
        (
            json!({"model": "a"}),
            ErrorCode::MissingParameter,
            "messages",
        ),
        (
            json!({"model": "a", "messages": "hi"}),
            ErrorCode::InvalidParameter,
            "`messages`",
        ),
        (
            json!({"model": "a", "messages": [{"role": "system", "content": "only"}]}),
            ErrorCode::InvalidParameter,
            "at least one",
        ),
        (
            json!({"model": "a", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            ErrorCode::InvalidParameter,
            "messages[0]: role `function`",
        ),
        (
            json!({"model": "a", "messages": [user("hi"), {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]}]}),
            ErrorCode::InvalidParameter,
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"model": "a", "messages": [{"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
            ErrorCode::InvalidParameter,
            "must be a JSON object",
        ),
        (
            json!({"model": "a", "messages": [{"role": "tool", "content": "x"}]}),
            ErrorCode::InvalidParameter,
            "tool_call_id",
        ),
        (
            json!({"model": "a", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]}),
            ErrorCode::InvalidParameter,
            "image/bmp",
        ),
        (
            json!({"model": "a", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}]}),
            ErrorCode::InvalidParameter,
            "base64",
        ),
        (
            json!({"model": "a", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.png"}}]}]}),
            ErrorCode::InvalidParameter,
            "http(s) URL",
        ),
        (
            json!({"model": "a", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}),
            ErrorCode::InvalidParameter,
            "messages[0].content[0]: content parts of type `input_audio`",
        ),
        (
            json!({"model": "a", "messages": [{"role": "system", "content": [
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}, user("hi")]}),
            ErrorCode::InvalidParameter,
            "`image_url`",
        ),
        (
            json!({"model": "a", "messages": [{"role": "user", "content": 42}]}),
            ErrorCode::InvalidParameter,
            "messages[0].content",
        ),
        (
            json!({"model": "a", "messages": [{"role": "assistant", "content": null,
                "function_call": {"name": "f", "arguments": "{}"}}]}),
            ErrorCode::InvalidParameter,
            "function_call",
        ),
    ];
    for (body, code, needle) in cases {
        let error = refuse(body.clone());
        assert_eq!(error.code, code, "{body}");
        assert_eq!(error.param, Some("messages"), "{body}");
        assert!(
            error.message.contains(needle),
            "{needle:?} in {:?}",
            error.message
        );
    }
    for body in [&b"{\"model\": "[..], b"[]", b"\"text\""] {
        let error = build_request(body, MODEL, &AnthropicDefaults::default()).err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::InvalidJson));
    }
}

#[test]
fn content_details() {
    let body = translate(json!({"model": "a", "messages": [
        {"role": "user", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "image_url",
            "image_url": {"url": "data:image/JPEG;base64,/9j/4AAQ"}}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}],
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
                {"id": "c3", "function": {"name": "g", "arguments": " {\"a\": [1]}\n"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]}));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "image", "source":
                {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I can't help with that."},
                {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                {"type": "tool_use", "id": "c3", "name": "g", "input": {"a": [1]}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "c1"},
                {"type": "tool_result", "tool_use_id": "c2", "content": [
                    {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]},
        ])
    );
    // Escaped slashes (`\/`) make serde copy the URL; the data is the same.
    let escaped = br#"{"model":"a","messages":[{"role":"user","content":[{"type":"image_url",
        "image_url":{"url":"data:image\/webp;base64,UklG\/Rg=="}}]}]}"#;
    let request = build_request(escaped, MODEL, &AnthropicDefaults::default());
    let body = request.map(|r| super::json(&r.body)).ok();
    assert_eq!(
        body.map(|b| b["messages"][0]["content"][0]["source"].clone()),
        Some(json!({"type": "base64", "media_type": "image/webp", "data": "UklG/Rg=="}))
    );
    // A user message sent before the tool results still leaves them first in the turn.
    let body = translate(json!({"model": "a", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        user("by the way"),
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]}));
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "c1", "content": "done"},
            {"type": "text", "text": "by the way"},
        ])
    );
}
