//! Tests of the Anthropic ingress: requests translated in, answers, streams and errors translated out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn openai(request: Value) -> Value {
    let translated = to_openai(request.to_string().as_bytes(), false).unwrap();
    serde_json::from_slice(&translated.body).unwrap()
}

#[test]
fn a_conversation_with_tools_becomes_a_chat_request() {
    let body = openai(json!({
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "metadata": {"user_id": "u-1"},
        "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ]
    }));
    assert_eq!(
        body,
        json!({
            "model": "claude",
            "max_tokens": 100,
            "temperature": 0.5,
            "stop": ["END"],
            "user": "u-1",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
            ]
        })
    );
}

#[test]
fn streams_ask_for_usage() {
    let translated = to_openai(
        br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        false,
    )
    .unwrap();
    assert!(translated.stream);
    let body: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[test]
fn client_mistakes_name_the_field() {
    let cases = [
        (json!({"model": "m", "messages": []}), "max_tokens"),
        (json!({"max_tokens": 1, "messages": []}), "model"),
        (
            json!({"model": "m", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tools": [{"type": "web_search_20250305", "name": "web_search"}], "messages": [{"role": "user", "content": "x"}]}),
            "tools",
        ),
        (
            json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tool_choice": {"type": "tool"}, "messages": [{"role": "user", "content": "x"}]}),
            "tool_choice",
        ),
    ];
    for (request, param) in cases {
        let error = to_openai(request.to_string().as_bytes(), false).unwrap_err();
        assert_eq!(error.param, Some(param), "{request}: {}", error.message);
        assert_eq!(error.code.status(), 400);
    }
    assert_eq!(to_openai(b"[1]", false).unwrap_err().code.status(), 400);
    assert_eq!(to_openai(b"{", false).unwrap_err().code.status(), 400);
    // count_tokens has no max_tokens, and never streams.
    assert!(to_openai(
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        true
    )
    .is_ok());
    let counted = to_openai(
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        true,
    )
    .unwrap();
    assert!(!counted.stream);
    assert!(!String::from_utf8_lossy(&counted.body).contains("stream"));
}

#[test]
fn a_chat_completion_becomes_a_message() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]
        }}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 5}}
    });
    let answer: Value = serde_json::from_slice(
        &from_openai(completion.to_string().as_bytes(), "claude", "req-1").unwrap(),
    )
    .unwrap();
    assert_eq!(
        answer,
        json!({
            "id": "msg_req1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 15, "output_tokens": 7, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0}
        })
    );
    assert!(from_openai(b"{}", "claude", "r").is_none());
}

#[test]
fn errors_take_anthropic_types() {
    let body: Value = serde_json::from_slice(&error_body(429, "slow down")).unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
    let rewritten: Value = serde_json::from_slice(&from_openai_error(
        401,
        br#"{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    ))
    .unwrap();
    assert_eq!(
        rewritten["error"],
        json!({"type": "authentication_error", "message": "bad key"})
    );
}

const CHUNKS: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n",
    "data: [DONE]\n\n",
);

fn events(out: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let mut lines = event.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn convert(pieces: &[&[u8]]) -> BytesMut {
    let mut converter = EventConverter::translating("claude", "req-1");
    let mut out = BytesMut::new();
    for piece in pieces {
        converter.push(piece, &mut out);
    }
    out
}

#[test]
fn chunks_become_message_events() {
    let out = convert(&[CHUNKS.as_bytes()]);
    let events = events(&out);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].1["message"]["model"], "claude");
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "text_delta", "text": "Hel"})
    );
    assert_eq!(
        events[5].1["content_block"],
        json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {}})
    );
    assert_eq!(events[6].1["index"], 1);
    assert_eq!(events[6].1["delta"]["partial_json"], "{\"city\":");
    assert_eq!(events[9].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[9].1["usage"]["output_tokens"], 4);
    assert_eq!(events[9].1["usage"]["input_tokens"], 9);
}

#[test]
fn gateway_errors_become_error_events_in_both_modes() {
    let error = b"data: {\"error\":{\"message\":\"The upstream stream stalled.\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_timeout\"}}\n\n";
    for mut converter in [
        EventConverter::translating("m", "r"),
        EventConverter::native("m", "r"),
    ] {
        let mut out = BytesMut::new();
        converter.push(error, &mut out);
        let events = events(&out);
        assert_eq!(events[0].0, "error");
        assert_eq!(events[0].1["error"]["type"], "timeout_error");
    }
    // Anthropic's own events pass through a native converter untouched.
    let native = b"event: ping\ndata: {\"type\":\"ping\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n";
    let mut converter = EventConverter::native("m", "r");
    let mut out = BytesMut::new();
    converter.push(native, &mut out);
    assert_eq!(&out[..], &native[..]);
}

proptest! {
    #[test]
    fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0..CHUNKS.len(), 0..12)) {
        let whole = convert(&[CHUNKS.as_bytes()]);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let bytes = CHUNKS.as_bytes();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts {
            pieces.push(&bytes[from..cut.max(from)]);
            from = cut.max(from);
        }
        pieces.push(&bytes[from..]);
        prop_assert_eq!(convert(&pieces), whole);
    }
}

#[test]
fn a_native_reading_leaves_out_what_only_anthropic_reads() {
    let request = json!({
        "model": "claude",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "Be exact."}, {"type": "search_result", "source": "s", "title": "t", "content": []}],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search"},
            {"name": "lookup", "input_schema": {"type": "object"}}
        ],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "terms"}},
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
            {"type": "text", "text": "Summarize"}
        ]}]
    });
    let raw = request.to_string();
    assert!(
        to_openai(raw.as_bytes(), false).is_err(),
        "other providers cannot take it"
    );
    let read = to_openai_for_native(raw.as_bytes(), false).unwrap();
    let body: Value = serde_json::from_slice(&read.body).unwrap();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": [
                {"type": "text", "text": "terms"},
                {"type": "image_url", "image_url": {"url": ""}},
                {"type": "text", "text": "Summarize"}
            ]}
        ])
    );
    // A base64 document is counted as an inline file, so its reservation covers it.
    let pdf = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
    ]}]});
    let read = to_openai_for_native(pdf.to_string().as_bytes(), false).unwrap();
    let pdf_body: Value = serde_json::from_slice(&read.body).unwrap();
    assert_eq!(
        pdf_body["messages"][0]["content"],
        json!([{"type": "file", "file": {"file_data": "JVBERi0x"}}])
    );
    assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(model_of(raw.as_bytes()).as_deref(), Some("claude"));
    // Malformed requests are refused either way.
    let bad = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "robot", "content": "x"}]});
    assert!(to_openai_for_native(bad.to_string().as_bytes(), false).is_err());
}
