//! `AnthropicStream`: goldens, state, and chunk boundaries.

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{fixture, sse_events};
use crate::providers::anthropic::{AnthropicStream, StreamError};
use crate::providers::StreamTranslator;
use crate::providers::Usage;

const CREATED: i64 = 1_750_000_000;

/// Everything observable after feeding a stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    result: Result<(), StreamError>,
    usage: Option<Usage>,
    estimated: u64,
    done: bool,
    failed: bool,
    saw_content: bool,
}

/// Feeds `pieces` in order (stopping at the first error, as the glue does).
fn feed(pieces: &[&[u8]], include_usage: bool) -> Outcome {
    let mut translator = AnthropicStream::new("claude-fast", "req-1", CREATED, include_usage);
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
        estimated: translator.estimated_completion_tokens(),
        done: translator.is_done(),
        failed: translator.upstream_failed(),
        saw_content: translator.saw_content(),
    }
}

fn whole(input: &[u8], include_usage: bool) -> Outcome {
    feed(&[input], include_usage)
}

/// `input` cut at `points` (any order, any range).
fn split(input: &[u8], points: &[usize], include_usage: bool) -> Outcome {
    feed(&crate::providers::golden::cut(input, points), include_usage)
}

/// The transcripts: the fixtures, LF fixtures again with CRLF, and one with a broken event.
fn transcripts() -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for name in [
        "stream_text",
        "stream_tool_use",
        "stream_error",
        "stream_cache",
    ] {
        let bytes = fixture(&format!("{name}.sse"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !text.contains('\r') {
            all.push((
                format!("{name} crlf"),
                text.replace('\n', "\r\n").into_bytes(),
            ));
        }
        all.push((name.to_owned(), bytes));
    }
    let mut broken = fixture("stream_text.sse");
    broken.truncate(broken.len() / 2);
    broken.extend_from_slice(b"\n\nevent: content_block_delta\ndata: {\"type\": \"content_blo\n\n");
    all.push(("broken".to_owned(), broken));
    all
}

#[test]
fn golden_streams() {
    for (name, include_usage, done, failed) in [
        ("stream_text", true, true, false),
        ("stream_tool_use", false, true, false),
        ("stream_error", true, false, true),
        ("stream_cache", true, true, false),
    ] {
        let outcome = whole(&fixture(&format!("{name}.sse")), include_usage);
        assert_eq!(outcome.result, Ok(()), "{name}");
        assert_eq!(
            sse_events(&outcome.out),
            sse_events(&fixture(&format!("{name}.openai.sse"))),
            "{name}"
        );
        assert_eq!((outcome.done, outcome.failed), (done, failed), "{name}");
        assert!(outcome.saw_content, "{name}");
    }
}

#[test]
fn usage_as_reported() {
    let usage = |name: &str| whole(&fixture(name), false).usage;
    assert_eq!(
        usage("stream_text.sse"),
        Some(Usage {
            prompt_tokens: 25,
            completion_tokens: 15,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
        })
    );
    assert_eq!(
        usage("stream_cache.sse"),
        Some(Usage {
            prompt_tokens: 3108,
            completion_tokens: 42,
            cached_tokens: 3100,
            cache_write_tokens: 0,
            images: 0,
        })
    );
    // Cut short: the input side is known, the output side is what Anthropic said so far.
    let error = whole(&fixture("stream_error.sse"), false);
    assert_eq!(
        error.usage,
        Some(Usage {
            prompt_tokens: 1200,
            completion_tokens: 1,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
        })
    );
    assert!(error.estimated >= 3, "{}", error.estimated);
}

#[test]
fn without_include_usage_chunks_have_no_usage_key() {
    let events = sse_events(&whole(&fixture("stream_text.sse"), false).out);
    assert_eq!(events.len(), 6, "no usage chunk");
    for event in &events[..5] {
        assert!(event.get("usage").is_none(), "{event}");
        assert_eq!(event["choices"].as_array().map(Vec::len), Some(1));
    }
    assert_eq!(events[5], json!("[DONE]"));
}

#[test]
fn state_as_the_stream_goes() {
    let text = fixture("stream_text.sse");
    let text = String::from_utf8_lossy(&text);
    let events: Vec<&str> = text.split_inclusive("\n\n").collect();
    let mut translator = AnthropicStream::new("m", "r", 1, false);
    let mut out = BytesMut::new();
    assert_eq!(translator.reported_usage(), None);
    let _ = translator.push(events[0].as_bytes(), &mut out); // message_start
    assert_eq!(
        translator.reported_usage().map(|u| u.prompt_tokens),
        Some(25)
    );
    assert!(
        !translator.saw_content() && !out.is_empty(),
        "the role chunk is not content"
    );
    let _ = translator.push(events[1].as_bytes(), &mut out); // empty text block
    let _ = translator.push(events[2].as_bytes(), &mut out); // ping
    assert!(!translator.saw_content());
    let before = out.len();
    let _ = translator.push(b": keep-alive comment\n\n", &mut out);
    assert_eq!(out.len(), before, "comments and pings produce nothing");
    let _ = translator.push(events[3].as_bytes(), &mut out);
    assert!(translator.saw_content());
    assert!(!translator.is_done());
    for event in &events[4..] {
        let _ = translator.push(event.as_bytes(), &mut out);
    }
    assert!(translator.is_done() && !translator.upstream_failed());
    let end = out.len();
    let again = translator.push(events[3].as_bytes(), &mut out);
    assert_eq!((again, out.len()), (Ok(()), end), "nothing after [DONE]");
}

#[test]
fn malformed_events_stop_the_translation() {
    let outcome = whole(
        &transcripts().pop().map(|(_, t)| t).unwrap_or_default(),
        true,
    );
    assert_eq!(outcome.result, Err(StreamError::Malformed));
    assert!(
        !sse_events(&outcome.out).is_empty(),
        "what came before is kept"
    );
    for bad in [
        &b"data: {\"no_type\": 1}\n\n"[..],
        b"data: [1, 2]\n\n",
        b"data: [\"message_stop\"]\n\n",
        b"data: {\"type\": \"content_block_start\", \"index\": 0}\n\n",
        b"data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"tool_use\"}}\n\n",
        b"data: {\"type\": \"message_start\"}\n\n",
    ] {
        let outcome = whole(bad, false);
        assert_eq!(outcome.result, Err(StreamError::Malformed), "{}", String::from_utf8_lossy(bad));
        let after = {
            let mut translator = AnthropicStream::new("m", "r", 1, false);
            let mut out = BytesMut::new();
            let _ = translator.push(bad, &mut out);
            let len = out.len();
            (translator.push(&fixture("stream_text.sse"), &mut out), out.len() == len)
        };
        assert_eq!(after, (Ok(()), true), "nothing after an error");
    }
    let mut translator = AnthropicStream::new("m", "r", 1, false);
    let huge = vec![b'x'; crate::sse::MAX_EVENT_BYTES + 1];
    assert_eq!(
        translator.push(&huge, &mut BytesMut::new()),
        Err(StreamError::EventTooLarge)
    );
    assert_eq!(
        StreamError::Malformed.message(),
        StreamError::Malformed.to_string()
    );
}

/// Builds an Anthropic stream from event payloads.
fn stream_of(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let kind = event["type"].as_str().unwrap_or("x");
        out.extend_from_slice(format!("event: {kind}\ndata: {event}\n\n").as_bytes());
    }
    out
}

#[test]
fn odd_but_valid_streams() {
    // No message_start id, no stop_reason, a tool whose input came whole in its start block,
    // fragments of a server tool, a thinking block, and an unknown event type.
    let input = stream_of(&[
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 5}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"x\"}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "brand_new_event", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": 1, "b": [true]}}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop"}),
    ]);
    let outcome = whole(&input, true);
    let events = sse_events(&outcome.out);
    let deltas: Vec<Value> = events
        .iter()
        .map(|e| e["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(events[0]["id"], "chatcmpl-req-1");
    assert_eq!(deltas[0], json!({"role": "assistant", "content": ""}));
    assert_eq!(
        deltas[1]["tool_calls"][0]["index"], 0,
        "server tools are not counted"
    );
    assert_eq!(
        deltas[2]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1,\"b\":[true]}"
    );
    assert_eq!(
        events[3]["choices"][0]["finish_reason"], "stop",
        "a finish chunk always comes"
    );
    assert_eq!(events[4]["usage"]["total_tokens"], 12);
    assert_eq!(events[5], json!("[DONE]"));
    assert_eq!(events.len(), 6);

    // An error before anything else: only the error event.
    let input = stream_of(&[
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad\nthing"}}),
    ]);
    let outcome = whole(&input, true);
    assert_eq!(
        sse_events(&outcome.out),
        vec![
            json!({"error": {"message": "bad thing", "type": "invalid_request_error", "param": null, "code": "invalid_value"}})
        ]
    );
    assert!(outcome.failed && !outcome.done && !outcome.saw_content);
}

#[test]
fn every_single_cut_and_byte_by_byte_match_the_whole() {
    for (name, input) in transcripts() {
        let reference = whole(&input, true);
        for point in 0..=input.len() {
            assert_eq!(
                split(&input, &[point], true),
                reference,
                "{name} cut at {point}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(&bytes, true), reference, "{name} byte by byte");
    }
}

proptest! {
    /// Split anywhere (inside UTF-8 sequences, inside `\r\n`, inside JSON), the output bytes
    /// and the final state are those of the whole stream.
    #[test]
    fn chunk_boundaries_do_not_matter(
        which in any::<proptest::sample::Index>(),
        cuts in proptest::collection::vec(0usize..4096, 0..40),
        include_usage in any::<bool>(),
    ) {
        let all = transcripts();
        let (name, input) = &all[which.index(all.len())];
        let reference = whole(input, include_usage);
        prop_assert_eq!(split(input, &cuts, include_usage), reference, "{}", name);
    }
}
