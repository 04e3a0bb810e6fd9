//! OpenAI embeddings answers built from the vectors a non-OpenAI provider returned.

use base64::Engine as _;
use serde::Serialize;

use super::Usage;

/// Base64 of raw bytes (standard alphabet, padded): OpenAI's `encoding_format: base64`.
pub(crate) fn base64_f32_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One vector as OpenAI sends it: a float array, or base64 of little-endian float32 (what
/// the OpenAI SDKs ask for by default). Floats are written as float32 (shortest form that
/// reads back exactly), never widened to float64 digits.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Embedding<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

impl<'a> Embedding<'a> {
    fn of(vector: &'a [f32], base64: bool) -> Self {
        if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            Embedding::Base64(base64_f32_bytes(&bytes))
        } else {
            Embedding::Floats(vector)
        }
    }
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Embedding<'a>,
}

#[derive(Serialize)]
struct ListUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: ListUsage,
}

/// `{"object":"list","data":[…],"model","usage"}` for `vectors` in input order.
pub(crate) fn openai_list(
    model: &str,
    vectors: &[Vec<f32>],
    base64: bool,
    usage: Usage,
) -> Vec<u8> {
    let answer = List {
        object: "list",
        data: vectors
            .iter()
            .enumerate()
            .map(|(index, vector)| Item {
                object: "embedding",
                index,
                embedding: Embedding::of(vector, base64),
            })
            .collect(),
        model,
        usage: ListUsage {
            prompt_tokens: usage.prompt_tokens,
            total_tokens: usage.prompt_tokens,
        },
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(vectors: &[Vec<f32>], base64: bool) -> String {
        let usage = Usage {
            prompt_tokens: 3,
            ..Usage::default()
        };
        String::from_utf8(openai_list("embed", vectors, base64, usage)).unwrap_or_default()
    }

    #[test]
    fn base64_is_little_endian_float32() {
        assert_eq!(base64_f32_bytes(b"Man"), "TWFu");
        assert_eq!(
            list(&[vec![1.0]], true),
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPw=="}],"model":"embed","usage":{"prompt_tokens":3,"total_tokens":3}}"#
        );
    }

    #[test]
    fn floats_keep_their_float32_digits() {
        // As float64, 0.01880454f32 would print as 0.01880454085767269.
        assert_eq!(
            list(&[vec![0.018_804_54, -1.0], vec![0.5]], false),
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.01880454,-1.0]},{"object":"embedding","index":1,"embedding":[0.5]}],"model":"embed","usage":{"prompt_tokens":3,"total_tokens":3}}"#
        );
    }
}
