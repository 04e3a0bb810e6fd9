//! OpenAI embeddings ↔ Vertex AI `:predict` (text-embedding models) and the Gemini API's
//! `:batchEmbedContents`. Every input goes in one upstream call.
//!
//! `encoding_format: base64` is answered as OpenAI does: each vector's float32 values,
//! little-endian, base64-encoded (the OpenAI Python SDK asks for base64 by default).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use omg_shared::error::ErrorCode;
use omg_shared::vertex::VertexApi;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::request::{decode, invalid};
use crate::error::ApiError;
use crate::providers::Usage;

#[derive(Deserialize)]
struct EmbeddingsIn<'a> {
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// The upstream body for an OpenAI embeddings request.
pub fn build_embeddings(
    body: &[u8],
    api: VertexApi,
    provider_model: &str,
) -> Result<Vec<u8>, ApiError> {
    let request: EmbeddingsIn<'_> = serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidJson,
            "The request body must be a JSON object.",
        )
    })?;
    let inputs = match decode::<Input<'_>>(request.input, "input") {
        Ok(Some(Input::One(text))) => vec![text],
        Ok(Some(Input::Many(texts))) if !texts.is_empty() => texts,
        Ok(_) => return Err(invalid("input", "`input` must be a non-empty string or array of strings")),
        Err(_) => {
            return Err(invalid(
                "input",
                "`input` must be a string or an array of strings for this model (Gemini embeddings take text, not token ids)",
            ))
        }
    };
    if inputs.iter().any(|text| text.is_empty()) {
        return Err(invalid("input", "`input` must not contain empty strings"));
    }
    let dimensions = match decode::<Option<u64>>(request.dimensions, "dimensions") {
        Ok(Some(Some(0))) | Err(_) => {
            return Err(invalid(
                "dimensions",
                "`dimensions` must be a positive integer",
            ))
        }
        Ok(value) => value.flatten(),
    };
    let body = match api {
        VertexApi::Vertex => serde_json::to_vec(&Predict {
            instances: inputs.iter().map(|content| Instance { content }).collect(),
            parameters: dimensions.map(|d| Parameters {
                output_dimensionality: d,
            }),
        }),
        VertexApi::Gemini => {
            let model = format!("models/{provider_model}");
            serde_json::to_vec(&BatchEmbed {
                requests: inputs
                    .iter()
                    .map(|text| EmbedRequest {
                        model: &model,
                        content: EmbedContent {
                            parts: [TextPart { text }],
                        },
                        output_dimensionality: dimensions,
                    })
                    .collect(),
            })
        }
    };
    body.map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
    })
}

#[derive(Serialize)]
struct Predict<'a> {
    instances: Vec<Instance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Parameters>,
}

#[derive(Serialize)]
struct Instance<'a> {
    content: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    output_dimensionality: u64,
}

#[derive(Serialize)]
struct BatchEmbed<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

// --- answers ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct PredictOut<'a> {
    #[serde(borrow, default)]
    predictions: Vec<Prediction<'a>>,
}

#[derive(Deserialize)]
struct Prediction<'a> {
    #[serde(borrow)]
    embeddings: VertexEmbedding<'a>,
}

#[derive(Deserialize)]
struct VertexEmbedding<'a> {
    #[serde(borrow)]
    values: &'a RawValue,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    token_count: Option<f64>,
}

#[derive(Deserialize)]
struct BatchOut<'a> {
    #[serde(borrow, default)]
    embeddings: Vec<GeminiEmbedding<'a>>,
}

#[derive(Deserialize)]
struct GeminiEmbedding<'a> {
    #[serde(borrow)]
    values: &'a RawValue,
}

/// Translates a `:predict` or `:batchEmbedContents` answer into OpenAI's embeddings list.
/// Usage: Vertex's token counts; the Gemini API reports none (`None`: the glue estimates, and
/// the answer shows `estimated_tokens`, the same estimate).
pub fn translate_embeddings(
    body: &[u8],
    api: VertexApi,
    alias_model: &str,
    base64: bool,
    estimated_tokens: u64,
) -> Result<(Vec<u8>, Option<Usage>), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answered with a body that is not an embeddings answer.",
        )
    };
    let (vectors, tokens): (Vec<&RawValue>, Option<u64>) = match api {
        VertexApi::Vertex => {
            let out: PredictOut<'_> = serde_json::from_slice(body).map_err(|_| bad())?;
            let tokens = out
                .predictions
                .iter()
                .map(|p| p.embeddings.statistics.as_ref().and_then(|s| s.token_count))
                .try_fold(0u64, |sum, count| {
                    count.map(|c| sum.saturating_add(c as u64))
                });
            let vectors = out
                .predictions
                .iter()
                .map(|p| p.embeddings.values)
                .collect();
            (vectors, tokens)
        }
        VertexApi::Gemini => {
            let out: BatchOut<'_> = serde_json::from_slice(body).map_err(|_| bad())?;
            (out.embeddings.iter().map(|e| e.values).collect(), None)
        }
    };
    if vectors.is_empty() {
        return Err(bad());
    }
    let mut data = Vec::with_capacity(vectors.len());
    for (index, values) in vectors.into_iter().enumerate() {
        let embedding = if base64 {
            let floats: Vec<f32> = serde_json::from_str(values.get()).map_err(|_| bad())?;
            let mut bytes = Vec::with_capacity(floats.len() * 4);
            for value in floats {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            Embedding::Base64(STANDARD.encode(bytes))
        } else {
            if !values.get().starts_with('[') {
                return Err(bad());
            }
            Embedding::Floats(values)
        };
        data.push(Item {
            object: "embedding",
            index,
            embedding,
        });
    }
    let prompt_tokens = tokens.unwrap_or(estimated_tokens);
    let list = List {
        object: "list",
        data,
        model: alias_model,
        usage: UsageOut {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    let json = serde_json::to_vec(&list).map_err(|_| bad())?;
    let usage = tokens.map(|prompt_tokens| Usage {
        prompt_tokens,
        ..Usage::default()
    });
    Ok((json, usage))
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: UsageOut,
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Embedding<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Embedding<'a> {
    Floats(&'a RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}
