//! Tests of the Hugging Face adapter: golden fixtures (`../fixtures/`, modelled on Text
//! Embeddings Inference's `/embed`, the Inference API's feature-extraction pipeline, Text
//! Generation Inference's OpenAI-compatible chat route — its JSON and SSE exactly as TGI
//! writes them, `data:` without a space and `:` keep-alives — and their error bodies)
//! compared as parsed JSON, chunk-boundary properties of the stream translator, and the error
//! table.
//!
//! Requests (`*.openai.json` → `*.tei.json`, `*.inference.json`, `*.tgi.json`: path,
//! headers, body), answers (TGI's chat mended: see `huggingface::chat`), streams (mended too,
//! the usage chunk the client did not ask for left out) and errors have their expected form
//! beside them (`*.openai.json`, `*.openai.sse`).
//! `OMG_BLESS=1` rewrites the expected files from the current output; review the diff before
//! keeping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chat;
mod embed;
mod error;

use omg_shared::endpoint::Endpoint;
use omg_shared::money::Pricing;
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;
use serde_json::{json, Value};

use super::HuggingFaceAdapter;
use crate::providers::{Call, Ingress, ProviderAdapter, UpstreamRequest};
use crate::request::{RequestBody, Route};

fn deployment(endpoint: &str, metadata: &[(&str, &str)]) -> Deployment {
    Deployment {
        id: "hf#0".into(),
        provider: ProviderKind::HuggingFace,
        provider_model: "BAAI/bge-small-en-v1.5".into(),
        endpoint: Some(Endpoint::parse(endpoint).unwrap()),
        deployment: None,
        api_key: Some(omg_shared::secret::Secret::new("hf_token".to_owned())),
        api_version: None,
        region: None,
        weight: 1,
        priority: 0,
        health_check: false,
        enabled: true,
        pricing: Pricing::default(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        aws_keys: None,
    }
}

/// A self-hosted TGI serving chat at `http://tgi.internal:8080/v1`.
fn tgi() -> Deployment {
    Deployment {
        provider_model: "tgi".into(),
        ..deployment("http://tgi.internal:8080/v1", &[])
    }
}

fn adapter(deployment: &Deployment) -> HuggingFaceAdapter {
    HuggingFaceAdapter::for_deployment(deployment).unwrap()
}

/// Runs `f` with the call of the client request `raw` on `route`.
fn with_call<R>(route: Route, raw: &[u8], f: impl FnOnce(&Call<'_>) -> R) -> R {
    let body = RequestBody::parse(raw, &route).unwrap();
    let call = Call {
        route: &route,
        body: &body,
        raw,
        alias: "embed",
        request_id: "req-1",
        created: 1,
        ingress: Ingress::OpenAi,
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    f(&call)
}

fn upstream(
    d: &Deployment,
    route: Route,
    raw: &[u8],
) -> Result<UpstreamRequest, crate::error::ApiError> {
    with_call(route, raw, |call| adapter(d).request(call, d))
}

/// What an upstream request is, as the golden files hold it.
fn request_json(request: &UpstreamRequest) -> Value {
    json!({
        "path": request.path,
        "headers": request.headers.iter().map(|(name, value)| json!([name, value])).collect::<Vec<_>>(),
        "body": json_of(&request.body),
    })
}

pub(super) use crate::providers::golden::json as json_of;
use crate::providers::golden::Fixtures;

const FIXTURES: Fixtures = Fixtures("huggingface");

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    FIXTURES.bytes(name)
}

/// Compares `actual` with the golden file `name` (rewritten under `OMG_BLESS=1`).
fn golden_json(name: &str, actual: &Value) {
    FIXTURES.assert_json(name, actual);
}

/// The events of an SSE stream: `data:` payloads parsed (`[DONE]` as a string; the space
/// after `data:` optional, as in TGI's), comments as their text. Every event must be one
/// line and a blank line.
fn sse_events(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|error| panic!("not UTF-8: {error}"));
    let mut events = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (event, tail) = rest
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("unterminated event: {rest:?}"));
        assert!(!event.contains('\n'), "multi-line event: {event:?}");
        events.push(if event.starts_with(':') {
            Value::String(event.to_owned())
        } else {
            let payload = event
                .strip_prefix("data:")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"));
            let payload = payload.strip_prefix(' ').unwrap_or(payload);
            if payload == "[DONE]" {
                Value::String("[DONE]".to_owned())
            } else {
                json_of(payload.as_bytes())
            }
        });
        rest = tail;
    }
    events
}

/// Compares a translated stream with the golden transcript `name`, event by event.
fn golden_sse(name: &str, actual: &[u8]) {
    FIXTURES.assert_sse(name, actual, sse_events);
}
