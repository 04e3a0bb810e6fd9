//! Chat through Text Generation Inference's OpenAI-compatible route: the golden request,
//! answers and streams as TGI writes them mended for OpenAI clients (one role, one call id,
//! `tool_calls` finish, ids filled), and chunk boundaries.

use proptest::prelude::*;
use serde_json::Value;

use super::{
    adapter, fixture, golden_json, golden_sse, json_of, request_json, sse_events, tgi, upstream,
    with_call,
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
fn answers_are_mended_and_keep_their_usage() {
    for (name, usage) in [
        ("response_chat", (40, 24)),
        ("response_tool_calls", (501, 29)),
    ] {
        let body = fixture(&format!("{name}.json"));
        let answer = with_call(Route::Chat, CHAT, |call| {
            adapter(&tgi()).response(call, &body)
        })
        .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        golden_json(&format!("{name}.openai.json"), &json_of(&answer.body));
        assert_eq!(json_of(&answer.body)["id"], "chatcmpl-req-1", "{name}");
        assert_eq!(
            answer.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some(usage),
            "{name}"
        );
        // What the rules made is OpenAI's shape: it passes again byte for byte.
        let again = with_call(Route::Chat, CHAT, |call| {
            adapter(&tgi()).response(call, &answer.body)
        })
        .unwrap();
        assert_eq!(again.body, answer.body, "{name}");
    }
    let tool = json_of(&fixture("response_tool_calls.openai.json"));
    assert_eq!(tool["choices"][0]["finish_reason"], "tool_calls");
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
        // Asked, the usage chunk stays; everything else is the same.
        let asked = whole(&input, true);
        let usage_chunk = |e: &Value| e["choices"].as_array().is_some_and(Vec::is_empty);
        let mut asked_events = sse_events(&asked.out);
        assert_eq!(
            asked_events.iter().filter(|e| usage_chunk(e)).count(),
            usize::from(usage.is_some()),
            "{name}"
        );
        asked_events.retain(|e| !usage_chunk(e));
        assert_eq!(asked_events, sse_events(&outcome.out), "{name}");
        assert_eq!(asked.usage, outcome.usage, "{name}");
        // Mended once, a stream passes again byte for byte.
        assert_eq!(whole(&asked.out, true).out, asked.out, "{name}");
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

/// Merges the deltas of a stream as the OpenAI SDKs' accumulators do: strings concatenated
/// (but `index` and `type` replaced), tool calls merged by `index`.
fn accumulate(events: &[Value]) -> Value {
    fn merge(into: &mut Value, delta: &Value) {
        let (Some(into), Some(delta)) = (into.as_object_mut(), delta.as_object()) else {
            return;
        };
        for (key, value) in delta {
            match (into.get_mut(key), value) {
                (Some(Value::String(old)), Value::String(new)) if key != "type" => {
                    old.push_str(new)
                }
                (Some(Value::Array(old)), Value::Array(new)) => {
                    for item in new {
                        match old.iter_mut().find(|o| o["index"] == item["index"]) {
                            Some(existing) => merge(existing, item),
                            None => old.push(item.clone()),
                        }
                    }
                }
                (Some(old @ Value::Object(_)), Value::Object(_)) => merge(old, value),
                (Some(old), new) if !new.is_null() || old.is_null() => *old = new.clone(),
                (Some(_), _) => {}
                (None, new) => {
                    into.insert(key.clone(), new.clone());
                }
            }
        }
    }
    let mut message = serde_json::json!({});
    let mut finish = Value::Null;
    for event in events {
        for choice in event["choices"].as_array().into_iter().flatten() {
            merge(&mut message, &choice["delta"]);
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
    }
    serde_json::json!({"message": message, "finish_reason": finish})
}

#[test]
fn sdk_accumulators_see_one_role_one_call_id_and_tool_calls() {
    let outcome = whole(&fixture("stream_tool_calls.sse"), false);
    let merged = accumulate(&sse_events(&outcome.out));
    assert_eq!(merged["message"]["role"], "assistant");
    let call = &merged["message"]["tool_calls"][0];
    assert_eq!(call["id"], "0");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_current_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["location"], "Brooklyn, NY");
    assert_eq!(merged["finish_reason"], "tool_calls");

    // A server repeating the name (not TGI 3.x, but seen): sent once too.
    let repeated = concat!(
        "data:{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data:{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\":1}\"}}]},\"finish_reason\":\"stop\"}]}\n\n",
        "data:[DONE]\n\n",
    );
    let merged = accumulate(&sse_events(&whole(repeated.as_bytes(), false).out));
    let call = &merged["message"]["tool_calls"][0];
    assert_eq!(
        (&call["id"], &call["function"]["name"]),
        (&Value::from("c1"), &Value::from("f"))
    );
    assert_eq!(call["function"]["arguments"], "{\"a\":1}");
    assert_eq!(merged["finish_reason"], "tool_calls");

    let outcome = whole(&fixture("stream_chat.sse"), false);
    let events = sse_events(&outcome.out);
    let merged = accumulate(&events);
    assert_eq!(merged["message"]["role"], "assistant");
    assert_eq!(merged["finish_reason"], "stop");
    assert!(events
        .iter()
        .filter(|e| e.is_object())
        .all(|e| e["id"] == "chatcmpl-req-1"));
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
