//! `translate_response`: goldens, usage, finish reasons, blocked prompts.

use omg_shared::error::ErrorCode;

use super::{fixture, golden_json};
use crate::providers::vertex::translate_response;
use crate::providers::Usage;

const CREATED: i64 = 1_750_000_000;

#[test]
fn text_answers_drop_thoughts_and_bill_thinking_as_output() {
    let (body, usage) = translate_response(
        &fixture("response_text.json"),
        "gemini-fast",
        "req-1",
        CREATED,
    )
    .unwrap();
    golden_json("response_text.openai.json", &body);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 10,
            cached_tokens: 8,
            cache_write_tokens: 0,
            images: 0,
        }
    );
}

#[test]
fn function_calls_become_tool_calls_with_signatures_in_their_ids() {
    let (body, usage) = translate_response(
        &fixture("response_tools.json"),
        "gemini-fast",
        "req-2",
        CREATED,
    )
    .unwrap();
    golden_json("response_tools.openai.json", &body);
    assert_eq!(usage.completion_tokens, 9);
}

#[test]
fn safety_stops_are_content_filter_and_blocked_prompts_a_400() {
    let (body, _) =
        translate_response(&fixture("response_safety.json"), "m", "req-3", CREATED).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(body["id"], "chatcmpl-req-3");
    let error =
        translate_response(&fixture("response_blocked.json"), "m", "req-4", CREATED).unwrap_err();
    assert_eq!(error.code, ErrorCode::ContentFilter);
    assert_eq!(error.code.status(), 400);
    assert!(
        error.message.contains("PROHIBITED_CONTENT"),
        "{}",
        error.message
    );
    let error = translate_response(b"{\"candidates\": []}", "m", "r", CREATED).unwrap_err();
    assert_eq!(error.code, ErrorCode::UpstreamError);
    let error = translate_response(b"[1]", "m", "r", CREATED).unwrap_err();
    assert_eq!(error.code, ErrorCode::UpstreamError);
}
