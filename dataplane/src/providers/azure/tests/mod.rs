//! Tests of the Azure OpenAI adapter: golden fixtures (`../fixtures/`, modelled on Azure
//! OpenAI's documented and recorded payloads: deployment paths, `prompt_filter_results`,
//! per-choice `content_filter_results`, filter annotation chunks, Azure's error bodies)
//! compared as parsed JSON, chunk-boundary properties of the stream translator, and the error
//! table.
//!
//! Answers pass through unchanged, so a JSON answer's expected OpenAI form is its own
//! fixture; requests (`*.openai.json` → `*.azure.json`: path, headers, body), streams
//! (`*.sse` → `*.openai.sse`) and errors (`*.json` → `*.openai.json`) have theirs beside
//! them. `OMG_BLESS=1` rewrites the expected files from the current output; review the diff
//! before keeping it.

mod error;
mod request;
mod response;
mod stream;

use std::sync::Arc;

use omg_shared::azure::EntraClient;
use omg_shared::endpoint::Endpoint;
use omg_shared::snapshot::Deployment;
use serde_json::{json, Value};

use super::AzureAdapter;
use crate::credentials::{Credentials, TokenCell};
use crate::providers::{Call, Ingress};
use crate::request::{RequestBody, Route};

/// An `azure` catalog entry (key `azure-key`, api-version `2024-10-21`, `provider_model`
/// `gpt-4o`) at `endpoint`, with the settings in `extra`.
fn deployment(endpoint: &str, extra: Value) -> Deployment {
    let mut spec = json!({
        "id": "gpt#0", "provider": "azure", "provider_model": "gpt-4o",
        "api_key": "azure-key", "api_version": "2024-10-21",
        "weight": 1, "enabled": true,
        "pricing": {"input": 0, "output": 0}
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let mut deployment: Deployment = serde_json::from_value(spec).unwrap();
    deployment.endpoint = Some(Endpoint::parse(endpoint).unwrap());
    deployment
}

/// Credentials whose Entra ID cells already hold a token (no refresher, no network).
struct FakeEntra;

impl Credentials for FakeEntra {
    fn google(
        &self,
        _key: &omg_shared::vertex::ServiceAccountKey,
    ) -> Result<Arc<TokenCell>, String> {
        Err("no Google credentials in these tests".to_owned())
    }

    fn entra(&self, client: &EntraClient) -> Result<Arc<TokenCell>, String> {
        Ok(Arc::new(TokenCell::with_token(
            client.client_id.clone(),
            "entra-token",
        )))
    }
}

/// The adapter as the snapshot builder makes it, its credential resolved with [`FakeEntra`].
fn build(deployment: &Deployment) -> Result<AzureAdapter, String> {
    let credential = crate::credentials::for_deployment(deployment, &FakeEntra)?;
    AzureAdapter::for_deployment(deployment, &credential)
}

fn adapter(deployment: &Deployment) -> AzureAdapter {
    build(deployment).unwrap()
}

/// Runs `f` with the call of the client request `raw` on `route`.
fn with_call<R>(route: Route, raw: &[u8], f: impl FnOnce(&Call<'_>) -> R) -> R {
    let body = RequestBody::parse(raw, &route).unwrap();
    let call = Call {
        route: &route,
        body: &body,
        raw,
        alias: "gpt",
        request_id: "req-1",
        created: 1_750_000_000,
        ingress: Ingress::OpenAi,
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    f(&call)
}

use crate::providers::golden::Fixtures;
pub(super) use crate::providers::golden::{json, sse_events};

const FIXTURES: Fixtures = Fixtures("azure");

/// A fixture's bytes.
fn fixture(name: &str) -> Vec<u8> {
    FIXTURES.bytes(name)
}

/// Compares `actual` with the golden file `name` (rewritten under `OMG_BLESS=1`).
fn golden_json(name: &str, actual: &Value) {
    FIXTURES.assert_json(name, actual);
}

/// Compares a translated stream with the golden transcript `name`, event by event.
fn golden_sse(name: &str, actual: &[u8]) {
    FIXTURES.assert_sse(name, actual, sse_events);
}
