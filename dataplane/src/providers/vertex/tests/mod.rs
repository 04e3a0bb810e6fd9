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

use crate::providers::golden::Fixtures;
pub(super) use crate::providers::golden::{json, sse_events};

const FIXTURES: Fixtures = Fixtures("vertex");

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    FIXTURES.bytes(name)
}

/// Compares `actual` with the golden file `name` (rewritten under `OMG_BLESS=1`).
fn golden_json(name: &str, actual: &[u8]) {
    FIXTURES.assert_json(name, &json(actual));
}

/// Compares a translated stream with the golden transcript `name`, event by event.
fn golden_sse(name: &str, actual: &[u8]) {
    FIXTURES.assert_sse(name, actual, sse_events);
}
