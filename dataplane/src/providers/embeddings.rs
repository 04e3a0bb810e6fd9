//! OpenAI embeddings answers built from the vectors a non-OpenAI provider returned.

use base64::Engine as _;
use serde_json::{json, Value};

use super::Usage;

/// Base64 of raw bytes (standard alphabet, padded): OpenAI's `encoding_format: base64`.
pub(crate) fn base64_f32_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One vector as OpenAI sends it: a float array, or base64 of little-endian float32 (what
/// the OpenAI SDKs ask for by default).
pub(crate) fn encode_vector(vector: &[f32], base64: bool) -> Value {
    if base64 {
        let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        Value::String(base64_f32_bytes(&bytes))
    } else {
        json!(vector)
    }
}

/// `{"object":"list","data":[…],"model","usage"}` for `vectors` in input order.
pub(crate) fn openai_list(
    model: &str,
    vectors: &[Vec<f32>],
    base64: bool,
    usage: Usage,
) -> Vec<u8> {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            json!({"object": "embedding", "index": index, "embedding": encode_vector(vector, base64)})
        })
        .collect();
    let answer = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    });
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_float32() {
        assert_eq!(base64_f32_bytes(b"Man"), "TWFu");
        assert_eq!(encode_vector(&[1.0], true), json!("AACAPw=="));
        assert_eq!(encode_vector(&[0.5, -1.0], false), json!([0.5, -1.0]));
    }
}
