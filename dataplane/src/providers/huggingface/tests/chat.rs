//! Chat through Text Generation Inference's OpenAI-compatible route: the golden request,
//! answers passed through, streams as TGI writes them, and chunk boundaries.

use proptest::prelude::*;
use serde_json::Value;

use super::{
    adapter, fixture, golden_json, golden_sse, request_json, sse_events, tgi, upstream, with_call,
};
use crate::providers::golden::{drive, Outcome};
use crate::providers::{ProviderAdapter, StreamFault};
use crate::request::Route;

const CHAT: &[u8] = br#"{"model":"llama","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &[u8] =
    br#"{"model":"llama","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_USAGE: &[u8] = br#"{"model":"llama","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn golden_request() {
    let request = upstream(&tgi(), Route::Chat, &fixture("request_stream.openai.json")).unwrap();
    golden_json("request_stream.tgi.json", &request_json(&request));
}

#[test]
fn answers_pass_through_with_their_usage() {
    for (name, usage) in [
        ("response_chat", (40, 24)),
        ("response_tool_calls", (501, 29)),
    ] {
        let body = fixture(&format!("{name}.json"));
        let answer = with_call(Route::Chat, CHAT, |call| {
            adapter(&tgi()).response(call, &body)
        })
        .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        assert_eq!(answer.body, body, "{name}");
        assert_eq!(
            answer.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some(usage),
            "{name}"
        );
    }
}

/// Feeds `pieces` in order (stopping at the first error, as the glue does).
fn feed(pieces: &[&[u8]], include_usage: bool) -> Outcome {
    let raw = if include_usage { STREAM_USAGE } else { STREAM };
    with_call(Route::Chat, raw, |call| {
        drive(adapter(&tgi()).stream(call).as_mut(), pieces)
    })
}

fn whole(input: &[u8], include_usage: bool) -> Outcome {
    feed(&[input], include_usage)
}

/// `input` cut at `points` (any order, any range).
fn split(input: &[u8], points: &[usize], include_usage: bool) -> Outcome {
    feed(&crate::providers::golden::cut(input, points), include_usage)
}

const NAMES: [&str; 3] = ["stream_chat", "stream_tool_calls", "stream_error"];

#[test]
fn golden_streams() {
    // The client did not ask for usage: the usage chunk the gateway forced is left out (and
    // read). Asked, everything passes byte for byte, `data:` and keep-alives as TGI wrote them.
    for (name, usage, done, failed) in [
        ("stream_chat", Some((40, 11)), true, false),
        ("stream_tool_calls", Some((501, 28)), true, false),
        ("stream_error", None, true, true),
    ] {
        let input = fixture(&format!("{name}.sse"));
        let outcome = whole(&input, false);
        assert_eq!(outcome.result, Ok(()), "{name}");
        golden_sse(&format!("{name}.openai.sse"), &outcome.out);
        assert_eq!(
            outcome
                .usage
                .map(|u| (u.prompt_tokens, u.completion_tokens)),
            usage,
            "{name}"
        );
        assert_eq!((outcome.done, outcome.failed), (done, failed), "{name}");
        assert!(outcome.saw_content && outcome.estimated > 0, "{name}");
        let asked = whole(&input, true);
        assert_eq!(asked.out, input, "{name}");
        assert_eq!(asked.usage, outcome.usage, "{name}");
    }
    let events = sse_events(&fixture("stream_chat.openai.sse"));
    assert!(events
        .iter()
        .all(|e| e["choices"].as_array().is_none_or(|c| !c.is_empty())));
    assert!(
        events.contains(&Value::String(":".to_owned())),
        "keep-alives pass"
    );
}

#[test]
fn in_band_errors_are_noticed() {
    let outcome = whole(&fixture("stream_error.sse"), false);
    let events = sse_events(&outcome.out);
    let error = events.iter().find(|e| e.get("error").is_some()).unwrap();
    assert_eq!(error["error"]["http_status_code"], 422);
    assert!(outcome.failed);
}

/// The transcripts, again with CRLF line ends, and one with a broken event.
fn transcripts() -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for name in NAMES {
        let bytes = fixture(&format!("{name}.sse"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        all.push((
            format!("{name} crlf"),
            text.replace('\n', "\r\n").into_bytes(),
        ));
        all.push((name.to_owned(), bytes));
    }
    let mut broken = fixture("stream_chat.sse");
    broken.truncate(broken.len() / 2);
    broken.extend_from_slice(b"\n\ndata:{\"object\":\"chat.completion.chu\n\n");
    all.push(("broken".to_owned(), broken));
    all
}

#[test]
fn every_single_cut_matches_the_whole() {
    for (name, input) in transcripts() {
        let reference = whole(&input, false);
        for point in 0..=input.len() {
            assert_eq!(
                split(&input, &[point], false),
                reference,
                "{name} cut at {point}"
            );
        }
    }
    let broken = transcripts().pop().unwrap().1;
    assert_eq!(whole(&broken, false).result, Err(StreamFault::MALFORMED));
}

proptest! {
    /// Split anywhere (inside UTF-8 sequences, inside JSON, inside `\r\n`), the client gets
    /// the same bytes and the translator ends in the same state as from the whole stream.
    #[test]
    fn chunk_boundaries_do_not_matter(
        which in any::<proptest::sample::Index>(),
        cuts in proptest::collection::vec(0usize..8192, 0..40),
        include_usage in any::<bool>(),
    ) {
        let all = transcripts();
        let (name, input) = &all[which.index(all.len())];
        let reference = whole(input, include_usage);
        prop_assert_eq!(split(input, &cuts, include_usage), reference, "{}", name);
    }
}
