//! `GeminiStream`: goldens, the end at the upstream's close, and chunk boundaries.

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::Value;

use super::{fixture, golden_sse, sse_events};
use crate::providers::adapter::StreamFault;
use crate::providers::vertex::GeminiStream;
use crate::providers::StreamTranslator;
use crate::providers::Usage;

const CREATED: i64 = 1_750_000_000;

/// Everything observable after feeding a stream and closing it.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    result: Result<(), StreamFault>,
    usage: Option<Usage>,
    estimated: u64,
    done: bool,
    failed: bool,
    saw_content: bool,
}

/// Feeds `pieces` in order (stopping at the first error, as the glue does), then the clean
/// end of the body.
fn feed(pieces: &[&[u8]], include_usage: bool) -> Outcome {
    let mut translator = GeminiStream::new("gemini-fast", "req-1", CREATED, include_usage);
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for piece in pieces {
        result = translator.push(piece, &mut out);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        translator.finish(&mut out);
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

#[test]
fn text_streams_end_with_usage_and_done_at_the_close() {
    let outcome = whole(&fixture("stream_text.sse"), true);
    golden_sse("stream_text.openai.sse", &outcome.out);
    assert!(outcome.done && !outcome.failed && outcome.saw_content);
    // The last usageMetadata wins; thoughts are billed as output.
    assert_eq!(
        outcome.usage,
        Some(Usage {
            prompt_tokens: 9,
            completion_tokens: 7,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
        })
    );
    // Without include_usage: no usage chunk, no `usage: null`.
    let plain = whole(&fixture("stream_text.sse"), false);
    let events = sse_events(&plain.out);
    assert!(
        events.iter().all(|e| e.get("usage").is_none()),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&Value::String("[DONE]".to_owned())));
}

#[test]
fn function_calls_stream_as_whole_tool_calls() {
    let outcome = whole(&fixture("stream_tools.sse"), true);
    golden_sse("stream_tools.openai.sse", &outcome.out);
    let events = sse_events(&outcome.out);
    let finish: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0].get("finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&Value::from("tool_calls")]);
}

#[test]
fn errors_and_blocked_prompts_end_in_band() {
    let outcome = whole(&fixture("stream_error.sse"), true);
    golden_sse("stream_error.openai.sse", &outcome.out);
    assert!(outcome.failed && !outcome.done);
    let outcome = whole(&fixture("stream_blocked.sse"), true);
    let events = sse_events(&outcome.out);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error"]["code"], "content_filter");
    assert!(outcome.failed);
}

#[test]
fn a_stream_cut_before_any_finish_reason_is_not_done() {
    let input = fixture("stream_text.sse");
    let text = String::from_utf8(input).unwrap();
    let first = text.split("\r\n\r\n").next().unwrap().to_owned() + "\r\n\r\n";
    let outcome = whole(first.as_bytes(), true);
    assert!(!outcome.done && !outcome.failed);
    assert!(!String::from_utf8_lossy(&outcome.out).contains("[DONE]"));
    assert_eq!(
        whole(b"data: {not json\n\n", true).result,
        Err(StreamFault::MALFORMED)
    );
}

#[test]
fn a_last_event_without_its_blank_line_still_counts() {
    let input = fixture("stream_text.sse");
    let trimmed = &input[..input.len() - 4];
    assert_eq!(whole(trimmed, true).out, whole(&input, true).out);
}

fn transcripts() -> Vec<Vec<u8>> {
    [
        "stream_text.sse",
        "stream_tools.sse",
        "stream_error.sse",
        "stream_blocked.sse",
    ]
    .iter()
    .map(|name| fixture(name))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Wherever the upstream's bytes are split, the client gets the same events and the
    /// translator ends in the same state.
    #[test]
    fn output_does_not_depend_on_chunk_boundaries(
        which in 0usize..4,
        points in proptest::collection::vec(any::<usize>(), 0..12),
        include_usage in any::<bool>(),
    ) {
        let input = &transcripts()[which];
        prop_assert_eq!(split(input, &points, include_usage), whole(input, include_usage));
    }
}
