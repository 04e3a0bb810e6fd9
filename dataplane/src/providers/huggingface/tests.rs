#![allow(clippy::unwrap_used, clippy::expect_used)]

use omg_shared::endpoint::Endpoint;
use omg_shared::money::Pricing;
use serde_json::{json, Value};

use super::*;
use crate::providers::Ingress;
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

fn call<'a>(route: &'a Route, body: &'a RequestBody<'a>, raw: &'a [u8]) -> Call<'a> {
    Call {
        route,
        body,
        raw,
        alias: "embed",
        request_id: "req-1",
        created: 1,
        ingress: Ingress::OpenAi,
        now: std::time::SystemTime::UNIX_EPOCH,
    }
}

fn upstream(d: &Deployment, route: Route, raw: &[u8]) -> Result<UpstreamRequest, ApiError> {
    let body = RequestBody::parse(raw, &route).unwrap();
    let adapter = HuggingFaceAdapter::for_deployment(d).unwrap();
    adapter.request(&call(&route, &body, raw), d)
}

const EMBED: &[u8] = br#"{"model":"embed","input":["a","b"],"encoding_format":"base64"}"#;

#[test]
fn tei_is_the_default_for_self_hosted_endpoints() {
    let d = deployment("http://tei.internal:8080/v1", &[]);
    let request = upstream(&d, Route::Embeddings, EMBED).unwrap();
    assert_eq!(
        request.path, "/embed",
        "TEI lives at the root, `/v1` dropped"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"inputs": ["a", "b"], "normalize": true, "truncate": false})
    );
    assert_eq!(
        request.headers,
        vec![("authorization", "Bearer hf_token".to_owned())]
    );
}

#[test]
fn the_inference_api_is_the_default_on_hugging_face_hosts() {
    let d = deployment(
        "https://router.huggingface.co/v1",
        &[("hf_truncate", "true")],
    );
    let request = upstream(&d, Route::Embeddings, EMBED).unwrap();
    assert_eq!(
        request.path,
        "/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["truncate"], true);
    let dims = br#"{"model":"embed","input":"a","dimensions":64}"#;
    assert_eq!(
        upstream(&d, Route::Embeddings, dims).unwrap_err().param,
        Some("dimensions")
    );
}

#[test]
fn chat_and_openai_embeddings_pass_through() {
    let d = deployment(
        "https://router.huggingface.co/v1",
        &[("hf_embeddings", "openai")],
    );
    let chat = br#"{"model":"embed","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        upstream(&d, Route::Chat, chat).unwrap().path,
        "/v1/chat/completions"
    );
    assert_eq!(
        upstream(&d, Route::Embeddings, EMBED).unwrap().path,
        "/v1/embeddings"
    );
}

#[test]
fn token_inputs_are_refused_before_any_call() {
    let d = deployment("http://tei:80", &[]);
    let tokens = br#"{"model":"embed","input":[[1,2,3]]}"#;
    assert_eq!(
        upstream(&d, Route::Embeddings, tokens).unwrap_err().param,
        Some("input")
    );
}

#[test]
fn vectors_become_an_openai_list() {
    let d = deployment("http://tei:80", &[]);
    let adapter = HuggingFaceAdapter::for_deployment(&d).unwrap();
    let raw = br#"{"model":"embed","input":["a","b"]}"#;
    let body = RequestBody::parse(raw, &Route::Embeddings).unwrap();
    let answer = adapter
        .response(
            &call(&Route::Embeddings, &body, raw),
            b"[[1.0,0.0],[0.0,1.0]]",
        )
        .unwrap();
    assert!(
        answer.usage.is_none(),
        "estimated by the glue, and marked so"
    );
    let list: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(list["model"], "embed");
    assert_eq!(
        list["data"][1],
        json!({"object": "embedding", "index": 1, "embedding": [0.0, 1.0]})
    );
    // One input may come back as a flat vector; token embeddings are the operator's to fix.
    assert!(adapter
        .response(&call(&Route::Embeddings, &body, raw), b"[0.5,0.5]")
        .is_ok());
    assert!(adapter
        .response(&call(&Route::Embeddings, &body, raw), b"[[[0.5]]]")
        .is_err());
}

#[test]
fn tei_errors_are_mapped() {
    let d = deployment("http://tei:80", &[]);
    let adapter = HuggingFaceAdapter::for_deployment(&d).unwrap();
    let mapped = adapter.client_error(
        413,
        br#"{"error":"batch size 40 > maximum allowed batch size 32","error_type":"Validation"}"#,
    );
    assert_eq!(mapped.status, 413);
    assert!(mapped
        .body
        .error
        .message
        .contains("maximum allowed batch size"));
}

#[test]
fn model_ids_keep_their_slash() {
    assert_eq!(embed::model_path("org/model-v1.5"), "org/model-v1.5");
    assert_eq!(embed::model_path("a b?"), "a%20b%3F");
}
