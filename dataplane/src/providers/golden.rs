//! Golden-file support for the adapters' tests: each adapter keeps recorded provider payloads
//! and the expected OpenAI forms in `src/providers/<adapter>/fixtures/`, compared as parsed
//! JSON (key order and spacing do not matter). `OMG_BLESS=1` rewrites the expected files from
//! the current output; review the diff before keeping it. Also what every stream
//! translator's chunk-boundary tests share: cutting a transcript and feeding the pieces.

#![allow(clippy::panic)]

use bytes::BytesMut;
use serde_json::Value;

use super::{StreamFault, StreamTranslator, Usage};

/// The fixtures of one adapter (its directory name under `src/providers/`).
pub(crate) struct Fixtures(pub &'static str);

impl Fixtures {
    fn path(&self, name: &str) -> String {
        format!(
            "{}/src/providers/{}/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR"),
            self.0
        )
    }

    /// A fixture's bytes.
    pub(crate) fn bytes(&self, name: &str) -> Vec<u8> {
        let path = self.path(name);
        std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
    }

    /// Compares `actual` with the golden JSON file `name` (rewritten under `OMG_BLESS=1`).
    pub(crate) fn assert_json(&self, name: &str, actual: &Value) {
        if std::env::var_os("OMG_BLESS").is_some() {
            let text = serde_json::to_string_pretty(actual).unwrap_or_default() + "\n";
            self.bless(name, text.as_bytes());
        }
        assert_eq!(actual, &json(&self.bytes(name)), "golden {name}");
    }

    /// Compares a translated stream with the golden transcript `name`, event by event as
    /// `events` reads them (rewritten under `OMG_BLESS=1`).
    pub(crate) fn assert_sse(&self, name: &str, actual: &[u8], events: fn(&[u8]) -> Vec<Value>) {
        if std::env::var_os("OMG_BLESS").is_some() {
            self.bless(name, actual);
        }
        assert_eq!(events(actual), events(&self.bytes(name)), "golden {name}");
    }

    fn bless(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap_or_else(|e| panic!("bless {name}: {e}"));
    }
}

/// Parses JSON, naming the start of the text when it is not.
pub(crate) fn json(bytes: &[u8]) -> Value {
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

/// The events of an OpenAI SSE stream, `data:` payloads parsed (`[DONE]` as a string). Every
/// event must be exactly `data: <payload>` and a blank line.
pub(crate) fn sse_events(bytes: &[u8]) -> Vec<Value> {
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

/// `input` cut at `points` (any order, any range: each is taken modulo `input.len() + 1`).
pub(crate) fn cut<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut last = 0;
    for point in points {
        pieces.push(&input[last..point]);
        last = point;
    }
    pieces.push(&input[last..]);
    pieces
}

/// Everything observable after feeding a stream translator.
#[derive(Debug, PartialEq)]
pub(crate) struct Outcome {
    pub out: Vec<u8>,
    pub result: Result<(), StreamFault>,
    pub usage: Option<Usage>,
    pub estimated: u64,
    pub done: bool,
    pub failed: bool,
    pub saw_content: bool,
}

/// Feeds `pieces` in order, stopping at the first error, then the clean close when none
/// came: what the glue does.
pub(crate) fn drive(translator: &mut dyn StreamTranslator, pieces: &[&[u8]]) -> Outcome {
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
