//! Embeddings: request bodies for both APIs, answers as floats and as base64 float32.

use base64::Engine as _;
use omg_shared::vertex::VertexApi;
use serde_json::json;

use super::json;
use crate::providers::vertex::{build_embeddings, translate_embeddings};

#[test]
fn requests_for_both_apis() {
    let body = br#"{"model": "e", "input": ["a b", "c"], "dimensions": 3}"#;
    assert_eq!(
        json(&build_embeddings(body, VertexApi::Vertex, "text-embedding-005").unwrap()),
        json!({"instances": [{"content": "a b"}, {"content": "c"}], "parameters": {"outputDimensionality": 3}})
    );
    assert_eq!(
        json(
            &build_embeddings(
                br#"{"input": "a"}"#,
                VertexApi::Gemini,
                "gemini-embedding-001"
            )
            .unwrap()
        ),
        json!({"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}}]})
    );
    let error = build_embeddings(br#"{"input": [1, 2]}"#, VertexApi::Vertex, "e").unwrap_err();
    assert_eq!(error.param, Some("input"));
}

#[test]
fn answers_as_floats_or_base64_float32_little_endian() {
    let predict = br#"{"predictions": [{"embeddings": {"values": [0.5, -1.25], "statistics": {"token_count": 3.0, "truncated": false}}}, {"embeddings": {"values": [1e-3, 2], "statistics": {"token_count": 2}}}]}"#;
    let (body, usage) = translate_embeddings(predict, VertexApi::Vertex, "emb", false, 99).unwrap();
    let body = json(&body);
    assert_eq!(body["data"][0]["embedding"], json!([0.5, -1.25]));
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    assert_eq!(usage.map(|u| u.prompt_tokens), Some(5));

    let (body, _) = translate_embeddings(predict, VertexApi::Vertex, "emb", true, 0).unwrap();
    let body = json(&body);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        bytes,
        [0.5f32.to_le_bytes(), (-1.25f32).to_le_bytes()].concat()
    );

    let batch = br#"{"embeddings": [{"values": [0.1]}]}"#;
    let (body, usage) = translate_embeddings(batch, VertexApi::Gemini, "emb", false, 7).unwrap();
    assert_eq!(usage, None);
    assert_eq!(json(&body)["usage"]["prompt_tokens"], 7);
    assert!(translate_embeddings(b"{}", VertexApi::Gemini, "emb", false, 0).is_err());
}
