//! `ConverseStream`: event-stream transcripts, in-stream exceptions, corrupted frames and
//! random chunk boundaries.

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::Value;

use super::{fixture, fixture_json};
use crate::providers::bedrock::eventstream::encode;
use crate::providers::bedrock::{ConverseStream, CORRUPT};
use crate::providers::StreamTranslator;
use crate::providers::{StreamFault, Usage};

const CREATED: i64 = 1_750_000_000;

/// Everything observable after feeding a stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    result: Result<(), StreamFault>,
    usage: Option<Usage>,
    done: bool,
    failed: bool,
    saw_content: bool,
}

fn feed(pieces: &[&[u8]], include_usage: bool) -> Outcome {
    let mut translator = ConverseStream::new("claude-on-bedrock", "req-1", CREATED, include_usage);
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for piece in pieces {
        result = translator.push(piece, &mut out);
        if result.is_err() {
            break;
        }
    }
    Outcome {
        out: out.to_vec(),
        result,
        usage: translator.reported_usage(),
        done: translator.is_done(),
        failed: translator.upstream_failed(),
        saw_content: translator.saw_content(),
    }
}

fn event(kind: &str, payload: &Value) -> Vec<u8> {
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        &serde_json::to_vec(payload).unwrap(),
    )
}

/// The binary stream of a fixture of `[event-type, payload]` pairs.
fn transcript(name: &str) -> Vec<u8> {
    let events = fixture_json(name);
    let mut bytes = Vec::new();
    for pair in events.as_array().unwrap() {
        bytes.extend(event(pair[0].as_str().unwrap(), &pair[1]));
    }
    bytes
}

fn text_stream(with_metadata: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(event(
        "messageStart",
        &serde_json::json!({"role": "assistant"}),
    ));
    for piece in ["Hel", "lo", " there"] {
        bytes.extend(event(
            "contentBlockDelta",
            &serde_json::json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
        ));
    }
    bytes.extend(event(
        "contentBlockStop",
        &serde_json::json!({"contentBlockIndex": 0}),
    ));
    bytes.extend(event(
        "messageStop",
        &serde_json::json!({"stopReason": "end_turn"}),
    ));
    if with_metadata {
        bytes.extend(event(
            "metadata",
            &serde_json::json!({"usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}}),
        ));
    }
    bytes
}

#[test]
fn tool_use_transcript_golden() {
    let outcome = feed(&[&transcript("stream_tool_use.events.json")], true);
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(
        String::from_utf8(outcome.out).unwrap(),
        String::from_utf8(fixture("stream_tool_use.openai.sse")).unwrap()
    );
    assert!(outcome.done && !outcome.failed && outcome.saw_content);
    assert_eq!(
        outcome.usage,
        Some(Usage {
            prompt_tokens: 40,
            completion_tokens: 25,
            cached_tokens: 10,
            cache_write_tokens: 0,
            images: 0,
        })
    );
}

#[test]
fn done_waits_for_the_metadata_after_message_stop() {
    let outcome = feed(&[&text_stream(false)], true);
    let text = String::from_utf8(outcome.out).unwrap();
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    assert!(!text.contains("[DONE]") && !outcome.done, "{text}");
    assert_eq!(outcome.usage, None);

    let outcome = feed(&[&text_stream(true)], false);
    let text = String::from_utf8(outcome.out).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n") && outcome.done, "{text}");
    // Without include_usage: no usage chunk, no `usage` key.
    assert!(!text.contains("usage"), "{text}");
    assert_eq!(outcome.usage.map(|u| u.prompt_tokens), Some(5));
}

#[test]
fn in_stream_exceptions_end_with_an_in_band_error() {
    let mut bytes = event("messageStart", &serde_json::json!({"role": "assistant"}));
    bytes.extend(event(
        "contentBlockDelta",
        &serde_json::json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
    ));
    bytes.extend(encode(
        &[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"Too many tokens, please wait before trying again."}"#,
    ));
    let outcome = feed(&[&bytes], true);
    assert_eq!(outcome.result, Ok(()));
    assert!(outcome.failed && !outcome.done);
    let text = String::from_utf8(outcome.out).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    assert!(!text.contains("[DONE]"));
}

#[test]
fn a_corrupted_frame_is_a_fatal_fault() {
    let mut bytes = text_stream(true);
    // Flip a payload byte of the second frame.
    let first = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    bytes[first + 20] ^= 0x20;
    let outcome = feed(&[&bytes], false);
    assert_eq!(outcome.result, Err(CORRUPT));
    assert!(!outcome.done && !outcome.failed);
    // What came before the bad frame was translated (the role chunk).
    assert!(String::from_utf8(outcome.out)
        .unwrap()
        .contains("assistant"));
}

/// `input` cut at `points`.
fn split(input: &[u8], points: &[usize], include_usage: bool) -> Outcome {
    feed(&crate::providers::golden::cut(input, points), include_usage)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_split_gives_the_same_output(
        points in proptest::collection::vec(any::<usize>(), 0..12),
        include_usage in any::<bool>(),
        which in 0usize..3,
    ) {
        let input = match which {
            0 => transcript("stream_tool_use.events.json"),
            1 => text_stream(true),
            _ => {
                let mut bytes = text_stream(true);
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
                bytes
            }
        };
        let whole = feed(&[&input], include_usage);
        prop_assert_eq!(split(&input, &points, include_usage), whole);
    }
}
