//! Embeddings in TEI's and the Inference API's own format: the golden requests and answers,
//! the choice of API, refusals before any call.

use serde_json::{json, Value};

use super::{
    adapter, deployment, fixture, golden_json, json_of, request_json, upstream, with_call,
};
use crate::providers::huggingface::embed;
use crate::providers::ProviderAdapter;
use crate::request::Route;

const EMBED: &[u8] = br#"{"model":"embed","input":["a","b"],"encoding_format":"base64"}"#;

#[test]
fn golden_requests() {
    let request = fixture("request_embed.openai.json");
    let tei = deployment("http://tei.internal:8080", &[]);
    let inference = deployment(
        "https://router.huggingface.co/v1",
        &[("hf_truncate", "true")],
    );
    for (name, d) in [("tei", &tei), ("inference", &inference)] {
        let built = upstream(d, Route::Embeddings, &request).unwrap();
        golden_json(&format!("request_embed.{name}.json"), &request_json(&built));
    }
}

#[test]
fn golden_answers() {
    let tei = deployment("http://tei.internal:8080", &[]);
    let inference = deployment("https://router.huggingface.co/v1", &[]);
    // Float arrays from TEI; base64 (what the OpenAI SDKs ask for) from the Inference API.
    let floats = fixture("request_embed.openai.json");
    let base64 = String::from_utf8(floats.clone())
        .unwrap()
        .replace("\"float\"", "\"base64\"");
    for (name, d, raw) in [
        ("response_tei", &tei, floats.as_slice()),
        ("response_feature_extraction", &inference, base64.as_bytes()),
    ] {
        let answer = with_call(Route::Embeddings, raw, |call| {
            adapter(d).response(call, &fixture(&format!("{name}.json")))
        })
        .unwrap();
        // Neither API reports tokens: the glue bills its estimate, marked so; the body says
        // the same estimate.
        assert!(answer.usage.is_none(), "{name}");
        golden_json(&format!("{name}.openai.json"), &json_of(&answer.body));
    }
    // The base64 vectors are the little-endian float32 of the nested arrays.
    let answer = json_of(&fixture("response_feature_extraction.openai.json"));
    let vectors: Vec<Vec<f32>> = json_of(&fixture("response_feature_extraction.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    for (index, vector) in vectors.iter().enumerate() {
        let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            answer["data"][index]["embedding"],
            json!(crate::providers::embeddings::base64_f32_bytes(&bytes))
        );
    }
}

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
    let dims = br#"{"model":"embed","input":"a","dimensions":64}"#;
    let body = json_of(&upstream(&d, Route::Embeddings, dims).unwrap().body);
    assert_eq!(body["dimensions"], 64);
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
fn openai_embeddings_pass_through() {
    let d = deployment(
        "https://router.huggingface.co/v1",
        &[("hf_embeddings", "openai")],
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
    let raw = br#"{"model":"embed","input":["a","b"]}"#;
    let respond = |body: &[u8]| {
        with_call(Route::Embeddings, raw, |call| {
            adapter(&d).response(call, body)
        })
    };
    let answer = respond(b"[[1.0,0.0],[0.0,1.0]]").unwrap();
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
    // One input may come back as a flat vector; token embeddings (no pooling) are the
    // operator's to fix.
    assert!(respond(b"[0.5,0.5]").is_ok());
    assert!(respond(b"[[[0.5]]]").is_err());
}

#[test]
fn model_ids_keep_their_slash() {
    assert_eq!(embed::model_path("org/model-v1.5"), "org/model-v1.5");
    assert_eq!(embed::model_path("a b?"), "a%20b%3F");
}
