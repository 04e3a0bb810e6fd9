//! `translate_response`, embeddings and the error table.

use omg_shared::error::ErrorCode;
use serde_json::json;

use super::{fixture, fixture_json, json};
use crate::providers::bedrock::{
    build_titan, map_error, map_exception, translate_response, translate_titan,
};
use crate::providers::Usage;
use omg_shared::bedrock::BedrockSettings;

const CREATED: i64 = 1_750_000_000;

#[test]
fn text_answer_golden() {
    let (body, usage) = translate_response(
        &fixture("response_text.json"),
        "claude-on-bedrock",
        "req-1",
        CREATED,
    )
    .unwrap();
    assert_eq!(json(&body), fixture_json("response_text.openai.json"));
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 9,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
        }
    );
}

#[test]
fn tool_use_answer_golden_with_cache_usage() {
    let (body, usage) = translate_response(
        &fixture("response_tool_use.json"),
        "claude-on-bedrock",
        "req-1",
        CREATED,
    )
    .unwrap();
    assert_eq!(json(&body), fixture_json("response_tool_use.openai.json"));
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens
        ),
        (1500, 1000, 200)
    );
}

#[test]
fn stop_reasons_and_broken_answers() {
    for (reason, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": reason});
        let (out, _) =
            translate_response(&serde_json::to_vec(&body).unwrap(), "m", "r", CREATED).unwrap();
        assert_eq!(
            json(&out)["choices"][0]["finish_reason"],
            finish,
            "{reason}"
        );
    }
    for bad in [&b"{not json"[..], b"[]", br#"{"message":"x"}"#] {
        let error = translate_response(bad, "m", "r", CREATED).unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamError);
    }
}

#[test]
fn titan_embeddings_in_and_out() {
    let settings = BedrockSettings {
        embed_dims: Some(256),
        embed_normalize: Some(true),
        ..BedrockSettings::default()
    };
    let body = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let built = build_titan(&body(json!({"model": "e", "input": "hello"})), &settings).unwrap();
    assert_eq!(
        json(&built),
        json!({"inputText": "hello", "dimensions": 256, "normalize": true})
    );
    let built = build_titan(
        &body(json!({"model": "e", "input": ["hello"], "dimensions": 512})),
        &BedrockSettings::default(),
    )
    .unwrap();
    assert_eq!(
        json(&built),
        json!({"inputText": "hello", "dimensions": 512})
    );
    let error = build_titan(&body(json!({"input": ["a", "b"]})), &settings).unwrap_err();
    assert_eq!(error.param, Some("input"));
    assert!(
        error.message.contains("one text per request"),
        "{}",
        error.message
    );
    assert!(build_titan(&body(json!({"input": [1, 2, 3]})), &settings).is_err());

    let answer = br#"{"embedding":[0.5,-1.0,0.25],"inputTextTokenCount":3}"#;
    let (out, usage) = translate_titan(answer, "embed-alias", false).unwrap();
    assert_eq!(
        json(&out),
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0, 0.25]}],
               "model": "embed-alias", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    );
    assert_eq!(usage.prompt_tokens, 3);
    let (out, _) = translate_titan(answer, "embed-alias", true).unwrap();
    // 0.5, -1.0, 0.25 as little-endian float32.
    assert_eq!(json(&out)["data"][0]["embedding"], "AAAAPwAAgL8AAIA+");
}

#[test]
fn errors_map_to_openai_codes() {
    let error = map_error(
        400,
        br#"{"message":"Malformed input request: extraneous key [foo]"}"#,
    );
    assert_eq!(error.code, ErrorCode::InvalidParameter);
    assert!(error.message.contains("extraneous key"));
    let error = map_error(
        400,
        br#"{"message":"Input is too long for requested model."}"#,
    );
    assert_eq!(error.param, Some("messages"));
    assert_eq!(map_error(408, b"{}").code, ErrorCode::UpstreamTimeout);
    assert_eq!(
        map_error(424, br#"{"message":"x"}"#).code,
        ErrorCode::UpstreamError
    );
    let error = map_error(
        400,
        br#"{"__type":"com.amazon#ServiceQuotaExceededException","message":"quota"}"#,
    );
    assert_eq!(error.code, ErrorCode::RequestRateLimited);
    let error = map_exception("throttlingException", br#"{"message":"Too many requests"}"#);
    assert_eq!(error.code, ErrorCode::RequestRateLimited);
    let error = map_exception("validationException", br#"{"message":"bad input"}"#);
    assert_eq!(
        (error.code, error.message.as_str()),
        (ErrorCode::InvalidParameter, "bad input")
    );
    assert_eq!(
        map_exception("modelStreamErrorException", b"{}").code,
        ErrorCode::UpstreamError
    );
}
