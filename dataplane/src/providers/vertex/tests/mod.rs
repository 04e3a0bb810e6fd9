//! Tests of the Vertex / Gemini adapter: golden fixtures (`../fixtures/`, modelled on
//! Gemini's documented wire format) compared as parsed JSON, chunk-boundary properties of the
//! stream translator, embeddings and the error table.
//!
//! `OMG_BLESS=1` rewrites the expected (`*.gemini.json`, `*.openai.json`, `*.openai.sse`)
//! files from the current output; review the diff before keeping it.

mod embeddings;
mod error;
mod request;
mod response;
mod stream;

use serde_json::Value;

fn path(name: &str) -> String {
    format!(
        "{}/src/providers/vertex/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}",
            String::from_utf8_lossy(bytes)
                .chars()
                .take(300)
                .collect::<String>()
        )
    })
}

/// Compares `actual` with the golden file `name` (rewritten under `OMG_BLESS=1`).
fn golden_json(name: &str, actual: &[u8]) {
    let actual = json(actual);
    if std::env::var_os("OMG_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
        std::fs::write(path(name), text).unwrap_or_else(|e| panic!("bless {name}: {e}"));
    }
    assert_eq!(actual, json(&fixture(name)), "golden {name}");
}

/// The events of an OpenAI SSE stream: each `data:` payload parsed (`[DONE]` as a string).
fn sse_events(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|error| panic!("not UTF-8: {error}"));
    let mut events = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (event, tail) = rest
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("unterminated event: {rest:?}"));
        let payload = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data event: {event:?}"));
        assert!(!payload.contains('\n'), "multi-line event: {event:?}");
        events.push(if payload == "[DONE]" {
            Value::String("[DONE]".to_owned())
        } else {
            json(payload.as_bytes())
        });
        rest = tail;
    }
    events
}

/// Compares a translated stream with the golden transcript `name` (one event per line, each
/// `data:` payload's JSON), rewritten under `OMG_BLESS=1`.
fn golden_sse(name: &str, actual: &[u8]) {
    if std::env::var_os("OMG_BLESS").is_some() {
        std::fs::write(path(name), actual).unwrap_or_else(|e| panic!("bless {name}: {e}"));
    }
    assert_eq!(
        sse_events(actual),
        sse_events(&fixture(name)),
        "golden {name}"
    );
}
