//! Tests of the Bedrock adapter: golden fixtures (`../fixtures/`, modelled on Bedrock's
//! documented Converse wire format) compared as parsed JSON, the stream translator on
//! event-stream transcripts and on random chunk boundaries, SigV4 signing, embeddings and
//! the error table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adapter;
mod request;
mod response;
mod sign;
mod stream;

use serde_json::Value;

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/providers/bedrock/fixtures/{name}",
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
