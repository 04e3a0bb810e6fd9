//! `translate_response`: goldens and the odd shapes around them.

use omg_shared::error::ErrorCode;
use serde_json::json;

use super::{fixture, fixture_json};
use crate::providers::anthropic::translate_response;
use crate::providers::Usage;

const CREATED: i64 = 1_750_000_000;

#[test]
fn golden_responses() {
    for (name, usage) in [
        (
            "response_text",
            Usage {
                prompt_tokens: 12,
                completion_tokens: 17,
                cached_tokens: 0,
                cache_write_tokens: 0,
                images: 0,
            },
        ),
        (
            "response_tool_use",
            Usage {
                prompt_tokens: 472,
                completion_tokens: 91,
                cached_tokens: 0,
                cache_write_tokens: 0,
                images: 0,
            },
        ),
        (
            "response_cache",
            Usage {
                prompt_tokens: 21 + 188 + 2048,
                completion_tokens: 10,
                cached_tokens: 2048,
                cache_write_tokens: 188,
                images: 0,
            },
        ),
    ] {
        let translated = translate_response(
            &fixture(&format!("{name}.json")),
            "claude-fast",
            "req-1",
            CREATED,
        );
        let Ok((body, got)) = translated else {
            panic!("{name}: {translated:?}")
        };
        assert_eq!(
            super::json(&body),
            fixture_json(&format!("{name}.openai.json")),
            "{name}"
        );
        assert_eq!(got, usage, "{name}");
    }
}

#[test]
fn tool_only_answers_have_null_content_and_refusals_filter() {
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, {"b": "c d"}]}}
    ], "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}});
    let out = translate_response(body.to_string().as_bytes(), "m", "r", 1)
        .map(|(b, _)| super::json(&b))
        .ok();
    let message = out.as_ref().map(|o| o["choices"][0]["message"].clone());
    assert_eq!(
        message,
        Some(
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":[1,{\"b\":\"c d\"}]}"}}
            ]})
        )
    );

    let body = json!({"id": "msg_2", "type": "message", "content": [], "stop_reason": "refusal",
        "usage": {"input_tokens": 3, "output_tokens": 0}});
    let out = translate_response(body.to_string().as_bytes(), "m", "r", 1)
        .map(|(b, _)| super::json(&b))
        .ok();
    let choice = out.map(|o| o["choices"][0].clone());
    assert_eq!(
        choice.as_ref().map(|c| c["finish_reason"].clone()),
        Some(json!("content_filter"))
    );
    assert_eq!(
        choice.map(|c| c["message"]["content"].clone()),
        Some(json!(""))
    );

    for (reason, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ] {
        let body = json!({"id": "m", "type": "message", "content": [{"type": "text", "text": "x"}], "stop_reason": reason});
        let out = translate_response(body.to_string().as_bytes(), "m", "r", 1)
            .map(|(b, _)| super::json(&b)["choices"][0]["finish_reason"].clone())
            .ok();
        assert_eq!(out, Some(json!(finish)), "{reason}");
    }
}

#[test]
fn missing_id_uses_the_request_id() {
    let body =
        br#"{"type":"message","content":[{"type":"text","text":"x"}],"stop_reason":"end_turn"}"#;
    let out =
        translate_response(body, "m", "req-9", 1).map(|(b, u)| (super::json(&b)["id"].clone(), u));
    assert_eq!(out.ok(), Some((json!("chatcmpl-req-9"), Usage::default())));
}

#[test]
fn bodies_that_are_not_messages_are_upstream_errors() {
    for body in [
        &b"<html>bad gateway</html>"[..],
        b"[]",
        br#"{"type":"completion","completion":"x"}"#,
        br#"{"type":"message","content":[{"type":"tool_use","input":{}}]}"#,
    ] {
        let error = translate_response(body, "m", "r", 1).err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::UpstreamError));
    }
    let overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let error = translate_response(overloaded, "m", "r", 1).err();
    assert_eq!(
        error.map(|e| (e.code, e.message)),
        Some((
            ErrorCode::UpstreamError,
            "The upstream is overloaded; retry later.".to_owned()
        ))
    );
}

#[test]
fn compact_keeps_strings_order_and_numbers() {
    let raw = serde_json::from_str::<Box<serde_json::value::RawValue>>(
        "{ \"z\" : [ 1.50 , -2e3 ],\n\t\"a\": \"say \\\"hi\\\" \\\\ { x : y }\", \"é\": null }",
    );
    let compacted = raw.map(|raw| crate::providers::anthropic::response::compact(&raw));
    assert_eq!(
        compacted.ok().as_deref(),
        Some("{\"z\":[1.50,-2e3],\"a\":\"say \\\"hi\\\" \\\\ { x : y }\",\"é\":null}")
    );
}
