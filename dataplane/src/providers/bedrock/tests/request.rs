//! `build_converse`: goldens and refusals.

use omg_shared::bedrock::BedrockSettings;
use omg_shared::error::ErrorCode;
use serde_json::{json, Value};

use super::{fixture, fixture_json, json};
use crate::providers::bedrock::build_converse;

fn build(body: &Value) -> Result<Value, crate::error::ApiError> {
    build_converse(
        &serde_json::to_vec(body).unwrap(),
        &BedrockSettings::default(),
    )
    .map(|bytes| json(&bytes))
}

fn refused(body: Value) -> crate::error::ApiError {
    match build(&body) {
        Ok(built) => panic!("accepted: {built}"),
        Err(error) => error,
    }
}

#[test]
fn full_request_golden() {
    let built = build_converse(
        &fixture("request_full.openai.json"),
        &BedrockSettings::default(),
    )
    .unwrap();
    assert_eq!(json(&built), fixture_json("request_full.converse.json"));
}

#[test]
fn minimal_request_golden_and_default_max_tokens() {
    let body = fixture("request_minimal.openai.json");
    let built = build_converse(&body, &BedrockSettings::default()).unwrap();
    assert_eq!(json(&built), fixture_json("request_minimal.converse.json"));
    let settings = BedrockSettings {
        default_max_tokens: Some(321),
        ..BedrockSettings::default()
    };
    let built = json(&build_converse(&body, &settings).unwrap());
    assert_eq!(built["inferenceConfig"], json!({"maxTokens": 321}));
}

#[test]
fn tool_choices() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let with = |choice: Value| {
        build(&json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice}))
            .unwrap()
    };
    assert_eq!(
        with(json!("auto"))["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    assert_eq!(
        with(json!("required"))["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert!(with(json!("none")).get("toolConfig").is_none());
    let built =
        build(&json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools})).unwrap();
    assert!(built["toolConfig"].get("toolChoice").is_none());
    assert_eq!(built["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");
}

#[test]
fn what_converse_cannot_express_is_refused_naming_the_parameter() {
    let user = json!({"role": "user", "content": "hi"});
    let image = |url: &str| json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]});
    let call = json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    let result = json!({"role": "tool", "tool_call_id": "c1", "content": "ok"});
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let cases = [
        (json!({"messages": [user], "n": 2}), "n"),
        (
            json!({"messages": [user], "temperature": 1.5}),
            "temperature",
        ),
        (
            json!({"messages": [user], "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [image("https://example.com/cat.png")]}),
            "messages",
        ),
        (
            json!({"messages": [image("data:image/bmp;base64,AAAA")]}),
            "messages",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": "hello"}, user]}),
            "messages",
        ),
        (json!({"messages": [user, call, result]}), "tools"),
        (
            json!({"messages": [user, call, result], "tools": tools, "tool_choice": "none"}),
            "tool_choice",
        ),
        (json!({"messages": [user], "max_tokens": 0}), "max_tokens"),
        (
            json!({"messages": [user], "tool_choice": "required"}),
            "tool_choice",
        ),
    ];
    for (body, param) in cases {
        let error = refused(body.clone());
        assert_eq!(error.param, Some(param), "{body}: {}", error.message);
        assert_eq!(error.code, ErrorCode::InvalidParameter, "{body}");
    }
    let error = refused(json!({"messages": [image("https://example.com/cat.png")]}));
    assert!(
        error.message.contains("does not fetch"),
        "{}",
        error.message
    );
}

#[test]
fn tool_messages_merge_into_one_user_turn_with_results_first() {
    let built = build(&json!({
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "a", "content": ""},
            {"role": "tool", "tool_call_id": "b", "content": "done"}
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}]
    }))
    .unwrap();
    assert_eq!(built["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        built["messages"][1]["content"][1],
        json!({"toolUse": {"toolUseId": "a", "name": "f", "input": {}}})
    );
    assert_eq!(
        built["messages"][2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "a", "content": [{"json": {}}]}},
            {"toolResult": {"toolUseId": "b", "content": [{"text": "done"}]}}
        ]})
    );
}
