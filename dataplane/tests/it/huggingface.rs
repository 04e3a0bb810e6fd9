//! The `huggingface` provider through the data plane binary: chat through TGI's
//! OpenAI-compatible route, embeddings through Text Embeddings Inference's `/embed` and the
//! Inference API's feature-extraction pipeline (the mock upstream checks what they check).

use serde_json::{json, Value};

use crate::harness::*;

fn decode_f32(text: &str) -> Vec<f32> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn embedder(upstream: &omg_mock_upstream::MockUpstream, alias: &str, model: &str) -> Entry {
    Entry::new(alias, &upstream.origin(), model)
        .provider("huggingface")
        .with("model_type", "embedding")
}

#[tokio::test]
async fn chat_goes_through_the_openai_compatible_route() {
    let upstream = upstream().await;
    let entries = [Entry::new("tgi", &upstream.base_url(), "gpt-test").provider("huggingface")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("tgi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    let seen = &upstream.requests_to("/v1/chat/completions")[0];
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
}

#[tokio::test]
async fn tei_embeddings_in_both_encodings() {
    let upstream = upstream().await;
    let entries = [embedder(&upstream, "tei", "BAAI/bge-small-en-v1.5")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;

    let response = gateway
        .post("/v1/embeddings")
        .header("x-request-id", "it-hf-tei")
        .json(&json!({"model": "tei", "input": ["first text", "second text"], "encoding_format": "base64", "dimensions": 16}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["model"], "tei");
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let vector = decode_f32(list["data"][1]["embedding"].as_str().unwrap());
    assert_eq!(vector.len(), 16);
    let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "normalized: {norm}");

    let sent = upstream.requests_to("/embed")[0].json().unwrap();
    assert_eq!(
        sent,
        json!({"inputs": ["first text", "second text"], "normalize": true, "truncate": false, "dimensions": 16})
    );
    let record = gateway.usage_of("it-hf-tei").await;
    assert_eq!(record["endpoint"], "embeddings");
    assert_eq!(record["provider"], "huggingface");
    assert_eq!(record["usage_estimated"], true, "TEI reports no usage");
    assert!(record["prompt_tokens"].as_u64().unwrap() > 0);

    let floats: Value = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "tei", "input": "one"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(floats["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn tei_limits_reach_the_client_as_openai_errors() {
    let upstream = upstream().await;
    let entries = [embedder(&upstream, "tei", "bge")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let inputs: Vec<String> = (0..40).map(|i| format!("text {i}")).collect();
    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "tei", "input": inputs}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batch size"),
        "{body}"
    );

    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "tei", "input": [[1, 2, 3]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");
    assert_eq!(
        upstream.requests_to("/embed").len(),
        1,
        "token arrays never leave"
    );
}

#[tokio::test]
async fn the_inference_api_pipeline() {
    let upstream = upstream().await;
    let entries = [
        embedder(
            &upstream,
            "hosted",
            "sentence-transformers/all-MiniLM-L6-v2",
        )
        .with("metadata", "{hf_embeddings: inference}"),
        embedder(&upstream, "tokens", "token-model").with("metadata", "{hf_embeddings: inference}"),
    ];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "hosted", "input": "a single text", "encoding_format": "float"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(
        upstream
            .requests_to("/hf-inference/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction")
            .len(),
        1
    );

    // A model without pooling answers token embeddings: the operator's to fix.
    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "tokens", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}
