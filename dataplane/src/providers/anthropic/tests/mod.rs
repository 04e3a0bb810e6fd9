//! Tests of the Anthropic adapter: golden fixtures (`../fixtures/`, modelled on Anthropic's
//! documented wire format) compared as parsed JSON, chunk-boundary properties of the stream
//! translator, and the error table.

mod error;
mod request;
mod response;
mod stream;

use serde_json::Value;

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/providers/anthropic/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

/// A fixture parsed as JSON.
fn fixture_json(name: &str) -> Value {
    json(&fixture(name))
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

/// The events of an OpenAI SSE stream: each `data:` payload parsed (`[DONE]` as a string).
/// Every event must be exactly `data: <payload>\n\n`.
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
