//! `build_chat`: the golden request, refusals, tool choice and images.

use serde_json::{json, Value};

use super::{fixture, golden_json, json};
use crate::providers::vertex::build_chat;

fn build(body: Value) -> Result<Value, crate::error::ApiError> {
    build_chat(body.to_string().as_bytes()).map(|bytes| json(&bytes))
}

fn refusal(body: Value) -> (String, Option<&'static str>) {
    let error = build(body).expect_err("refused");
    (error.message, error.param)
}

#[test]
fn the_full_request_translates_to_the_golden_body() {
    let body = build_chat(&fixture("request_full.openai.json")).unwrap();
    golden_json("request_full.gemini.json", &body);
    let body = json(&body);
    // The thought signature carried in the tool call's id is back on its functionCall part.
    assert_eq!(
        body["contents"][1]["parts"][1]["thoughtSignature"],
        "sig-abc"
    );
    assert!(body["contents"][1]["parts"][2]
        .get("thoughtSignature")
        .is_none());
}

#[test]
fn minimal_requests_have_no_empty_sections() {
    let body =
        build(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(
        body,
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
}

#[test]
fn unsupported_parameters_are_refused_naming_them() {
    let base = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (extra, param) in [
        (json!({"logprobs": true}), "logprobs"),
        (json!({"reasoning_effort": "high"}), "reasoning_effort"),
        (json!({"functions": []}), "functions"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"n": 0}), "n"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (
            json!({"response_format": {"type": "grammar"}}),
            "response_format",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (json!({"tools": [{"type": "web_search"}]}), "tools"),
    ] {
        let (_, got) = refusal(base(extra.clone()));
        assert_eq!(got, Some(param), "{extra}");
    }
    // No-op values pass.
    assert!(build(base(
        json!({"logprobs": false, "tool_choice": "none", "n": 1})
    ))
    .is_ok());
}

#[test]
fn schema_references_are_refused_naming_the_tool() {
    let (message, param) = refusal(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "$defs": {}, "properties": {}}}}]}),
    );
    assert_eq!(param, Some("tools"));
    assert!(
        message.contains("lookup") && message.contains("$defs"),
        "{message}"
    );
}

#[test]
fn tool_results_need_an_earlier_call_and_images_a_known_type() {
    let (message, _) = refusal(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_9", "content": "x"}]}));
    assert!(message.contains("call_9"), "{message}");
    let (message, param) = refusal(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/picture"}}]}]}),
    );
    assert_eq!(param, Some("messages"));
    assert!(message.contains("extension"), "{message}");
    let (_, param) = refusal(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
    );
    assert_eq!(param, Some("messages"));
}

#[test]
fn tool_choice_modes() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}]);
    for (choice, mode) in [
        (json!("auto"), "AUTO"),
        (json!("none"), "NONE"),
        (json!("required"), "ANY"),
    ] {
        let body = build(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice})).unwrap();
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"],
            json!({"mode": mode})
        );
    }
    let body = build(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}),
    )
    .unwrap();
    assert!(body.get("toolConfig").is_none());
    assert_eq!(body["tools"][0]["functionDeclarations"][0]["name"], "f");
}

#[test]
fn json_schema_response_formats_are_sanitized() {
    let body = build(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
            "schema": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "integer"}}}}}})).unwrap();
    assert_eq!(
        body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        body["generationConfig"]["responseSchema"],
        json!({"type": "object", "properties": {"a": {"type": "integer"}}})
    );
}
