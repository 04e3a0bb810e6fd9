//! The stream translator: goldens, Azure's filter annotations, and chunk boundaries.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{adapter, deployment, fixture, golden_sse, sse_events};
use crate::providers::azure::stream::{classify, Kind};
use crate::providers::golden::{drive, Outcome};
use crate::providers::{ProviderAdapter, StreamFault};
use crate::request::Route;

const CHAT: &[u8] = br#"{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_USAGE: &[u8] = br#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
const COMPLETIONS: &[u8] = br#"{"model":"gpt","stream":true,"prompt":"Say hi"}"#;

/// Feeds `pieces` in order to the translator of `route` (stopping at the first error, as
/// the glue does).
fn feed_route(route: Route, pieces: &[&[u8]], include_usage: bool) -> Outcome {
    let d = deployment("https://r", json!({}));
    let raw = if route == Route::Completions {
        COMPLETIONS
    } else if include_usage {
        CHAT_USAGE
    } else {
        CHAT
    };
    super::with_call(route, raw, |call| {
        drive(adapter(&d).stream(call).as_mut(), pieces)
    })
}

fn feed(pieces: &[&[u8]], include_usage: bool) -> Outcome {
    feed_route(Route::Chat, pieces, include_usage)
}

fn whole(input: &[u8], include_usage: bool) -> Outcome {
    feed(&[input], include_usage)
}

/// `input` cut at `points` (any order, any range).
fn split(input: &[u8], points: &[usize], include_usage: bool) -> Outcome {
    feed(&crate::providers::golden::cut(input, points), include_usage)
}

/// The events of a transcript, terminators included.
fn events(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split_inclusive("\n\n")
        .map(str::to_owned)
        .collect()
}

const NAMES: [&str; 4] = [
    "stream_text",
    "stream_tool_calls",
    "stream_filtered",
    "stream_async_filter",
];

#[test]
fn golden_streams() {
    for (name, usage, finish) in [
        ("stream_text", (14, 9), "stop"),
        ("stream_tool_calls", (96, 18), "tool_calls"),
        ("stream_filtered", (25, 64), "content_filter"),
        ("stream_async_filter", (21, 11), "content_filter"),
    ] {
        let input = fixture(&format!("{name}.sse"));
        let outcome = whole(&input, true);
        assert_eq!(outcome.result, Ok(()), "{name}");
        golden_sse(&format!("{name}.openai.sse"), &outcome.out);
        assert!(
            outcome.done && !outcome.failed && outcome.saw_content,
            "{name}"
        );
        assert_eq!(
            outcome
                .usage
                .map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some(usage),
            "{name}"
        );
        let out = sse_events(&outcome.out);
        // No chunk a client cannot read: every one has an id and each choice a delta.
        for event in &out[..out.len() - 1] {
            assert_eq!(event["object"], "chat.completion.chunk", "{name}: {event}");
            assert!(
                event["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{name}: {event}"
            );
            for choice in event["choices"].as_array().unwrap() {
                assert!(choice["delta"].is_object(), "{name}: {event}");
            }
        }
        let finishes: Vec<&Value> = out
            .iter()
            .filter_map(|e| e["choices"][0].get("finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [&json!(finish)], "{name}");
        assert_eq!(out.last(), Some(&json!("[DONE]")), "{name}");
    }
}

#[test]
fn forwarded_events_are_azure_s_bytes() {
    // Everything but the annotations passes byte for byte; the usage chunk the client did not
    // ask for is left out (the usage is still read).
    for name in ["stream_text", "stream_tool_calls", "stream_filtered"] {
        let input = fixture(&format!("{name}.sse"));
        let kept: Vec<String> = events(&input)
            .into_iter()
            .filter(|e| classify(e.as_bytes()) == Kind::Other)
            .collect();
        assert_eq!(
            kept.len(),
            events(&input).len() - 1 - usize::from(name == "stream_text")
        );
        assert_eq!(whole(&input, true).out, kept.concat().as_bytes(), "{name}");
        let without_usage: String = kept
            .iter()
            .filter(|e| !e.contains("\"usage\":{"))
            .cloned()
            .collect();
        let outcome = whole(&input, false);
        assert_eq!(outcome.out, without_usage.as_bytes(), "{name}");
        assert!(outcome.usage.is_some(), "{name}");
    }
}

#[test]
fn annotations_are_left_out_or_rewritten() {
    let input = fixture("stream_async_filter.sse");
    let all = events(&input);
    assert_eq!(classify(all[0].as_bytes()), Kind::PromptFilter);
    assert_eq!(
        classify(all[6].as_bytes()),
        Kind::Annotation { finish: false }
    );
    assert_eq!(
        classify(all[7].as_bytes()),
        Kind::Annotation { finish: true }
    );
    let out = sse_events(&whole(&input, false).out);
    // Role, four content chunks, the filter's finish, [DONE].
    assert_eq!(out.len(), 7, "{out:?}");
    let finish = &out[5];
    assert_eq!(finish["id"], "chatcmpl-8JCbt5d4luUIhYCI7YH4dQK7hnHx2");
    assert_eq!(finish["model"], "gpt-35-turbo");
    assert_eq!(finish["created"], 1_699_587_397);
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        finish["choices"][0]["content_filter_results"]["protected_material_text"]["filtered"],
        true
    );

    // A finish before any chunk of the model's: the gateway's identity.
    let early = format!("{}{}data: [DONE]\n\n", all[0], all[7]);
    let out = sse_events(&whole(early.as_bytes(), false).out);
    assert_eq!(out[0]["id"], "chatcmpl-req-1");
    assert_eq!(out[0]["model"], "gpt");
    assert_eq!(out[0]["created"], 1_750_000_000);
    assert_eq!(out[0]["object"], "chat.completion.chunk");

    // Legacy completions: `text: ""` and `text_completion`.
    let completions = concat!(
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"gpt-35-turbo-instruct\",\"choices\":[{\"text\":\"Hi\",\"index\":0,\"finish_reason\":null,\"logprobs\":null}]}\n\n",
        "data: {\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[{\"index\":0,\"finish_reason\":null,\"content_filter_results\":{}}]}\n\n",
        "data: {\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[{\"index\":0,\"finish_reason\":\"content_filter\",\"content_filter_results\":{\"hate\":{\"filtered\":true,\"severity\":\"high\"}}}]}\n\n",
        "data: [DONE]\n\n",
    );
    let outcome = feed_route(Route::Completions, &[completions.as_bytes()], false);
    let out = sse_events(&outcome.out);
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(
        out[1],
        json!({"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "gpt-35-turbo-instruct",
            "choices": [{"index": 0, "text": "", "finish_reason": "content_filter", "content_filter_results": {"hate": {"filtered": true, "severity": "high"}}}]})
    );
    assert!(outcome.done);
}

#[test]
fn events_are_classified_by_their_keys() {
    let prompt_filter = events(&fixture("stream_text.sse"))[0].clone();
    assert_eq!(classify(prompt_filter.as_bytes()), Kind::PromptFilter);
    for (event, kind) in [
        ("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n", Kind::Other),
        ("data: {\"choices\":[],\"usage\":null}\n\n", Kind::PromptFilter),
        ("data: {\"choices\":[{\"index\":0}]}\n\n", Kind::Annotation { finish: false }),
        // Any `delta` key makes the chunk the model's (decided without parsing).
        ("data: {\"choices\":[{\"index\":0,\"delta\":null}]}\n\n", Kind::Other),
        ("data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n", Kind::Annotation { finish: true }),
        ("data: {\"choices\":[{\"index\":0,\"delta\" : {}}]}\n\n", Kind::Other),
        ("data: {\"choices\":[{\"index\":0,\"text\":\"\"}]}\n\n", Kind::Other),
        // Two choices, one with content: not an annotation.
        ("data: {\"choices\":[{\"index\":0},{\"index\":1,\"delta\":{}}]}\n\n", Kind::Other),
        // A quoted "delta" inside a string is no key: still read.
        ("data: {\"choices\":[{\"index\":0,\"content_filter_results\":{\"custom_blocklists\":{\"details\":[{\"id\":\"\\\"delta\\\": x\",\"filtered\":false}]}}}]}\n\n", Kind::Annotation { finish: false }),
        ("data: {\"choices\":[],\"error\":{\"message\":\"x\"}}\n\n", Kind::Other),
        ("data: {\"error\":{\"message\":\"x\"}}\n\n", Kind::Other),
        ("data: {\"id\":\"x\"}\n\n", Kind::Other),
        ("data: {\"choices\":[null]}\n\n", Kind::Other),
        ("data: {not json\n\n", Kind::Other),
        ("data: [DONE]\n\n", Kind::Other),
        (": keep-alive\n\n", Kind::Other),
    ] {
        assert_eq!(classify(event.as_bytes()), kind, "{event}");
    }
}

#[test]
fn only_a_leading_prompt_filter_chunk_is_left_out() {
    let all = events(&fixture("stream_text.sse"));
    // Once content flowed, a chunk without choices is the provider's.
    let late = [all[1].as_str(), all[0].as_str(), all[2].as_str()].concat();
    let outcome = whole(late.as_bytes(), true);
    assert_eq!(outcome.out, late.as_bytes());
    // Malformed events are still refused; in-band errors still pass.
    let broken = format!("{}data: {{not json\n\n", all[0]);
    assert_eq!(
        whole(broken.as_bytes(), false).result,
        Err(StreamFault::MALFORMED)
    );
    let error = "data: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    let outcome = whole(error.as_bytes(), false);
    assert_eq!(outcome.out, error.as_bytes());
    assert!(outcome.failed && !outcome.done);
}

/// The transcripts: the fixtures, again with CRLF line ends, and one with a broken event.
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
    let mut broken = fixture("stream_text.sse");
    broken.truncate(broken.len() / 2);
    broken.extend_from_slice(b"\n\ndata: {\"choices\":[{\"delta\n\n");
    all.push(("broken".to_owned(), broken));
    all
}

#[test]
fn every_single_cut_matches_the_whole() {
    for (name, input) in transcripts() {
        let reference = whole(&input, true);
        for point in 0..=input.len() {
            assert_eq!(
                split(&input, &[point], true),
                reference,
                "{name} cut at {point}"
            );
        }
    }
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
