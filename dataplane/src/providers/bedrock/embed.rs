//! Embeddings through `InvokeModel` (`POST /model/{modelId}/invoke`) with Amazon Titan text
//! embeddings' body: `{"inputText", "dimensions"?, "normalize"?}` in, `{"embedding": […],
//! "inputTextTokenCount"}` out.
//!
//! Titan embeds one text per call and the gateway makes one upstream call per request, so a
//! request carries exactly one input (a string, or an array of one string); more are refused
//! with a 400 naming the limit. `dimensions` is the client's, else
//! `metadata.bedrock_embed_dims`; `normalize` is `metadata.bedrock_embed_normalize`. With
//! `encoding_format: "base64"` (the OpenAI Python SDK's default) the vector is sent as base64
//! of little-endian float32, as OpenAI does.

use std::borrow::Cow;

use omg_shared::bedrock::BedrockSettings;
use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::request::{decode, invalid};
use crate::error::ApiError;
use crate::providers::mock::base64_encode;
use crate::providers::Usage;

/// The Titan request body for an OpenAI embeddings body.
pub fn build_titan(body: &[u8], settings: &BedrockSettings) -> Result<Vec<u8>, ApiError> {
    let request: EmbeddingsRequest<'_> = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("We could not parse the JSON body of your request ({error})."),
        )
    })?;
    let one_input = || {
        invalid(
            "input",
            "This model (Bedrock, Titan text embeddings) embeds one text per request: send \
             `input` as one string (or an array of one string)",
        )
    };
    let input = request.input.ok_or_else(one_input)?;
    let text: Cow<'_, str> = match input.get().as_bytes().first() {
        Some(b'"') => decode(Some(input), "input")?.ok_or_else(one_input)?,
        Some(b'[') => {
            let items: Vec<&RawValue> = decode(Some(input), "input")?.unwrap_or_default();
            match items.as_slice() {
                [one] if one.get().starts_with('"') => {
                    decode(Some(*one), "input")?.ok_or_else(one_input)?
                }
                [_] => {
                    return Err(invalid(
                        "input",
                        "Token arrays are not supported for this model (Bedrock); send text",
                    ))
                }
                items => {
                    return Err(invalid(
                        "input",
                        &format!(
                            "This model (Bedrock, Titan text embeddings) embeds one text per \
                             request; got {} inputs: send one request per text",
                            items.len()
                        ),
                    ))
                }
            }
        }
        _ => return Err(one_input()),
    };
    if text.is_empty() {
        return Err(invalid("input", "`input` must not be empty"));
    }
    let dimensions = match decode::<Option<u64>>(request.dimensions, "dimensions")?.flatten() {
        Some(0) => return Err(invalid("dimensions", "`dimensions` must be positive")),
        Some(n) => Some(n),
        None => settings.embed_dims,
    };
    let titan = TitanRequest {
        input_text: &text,
        dimensions,
        normalize: settings.embed_normalize,
    };
    serde_json::to_vec(&titan).map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
    })
}

/// Translates a Titan answer into an OpenAI embeddings list (`model` is the alias).
pub fn translate_titan(
    body: &[u8],
    alias_model: &str,
    base64: bool,
) -> Result<(Vec<u8>, Usage), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answered with a body that is not a Titan embedding.",
        )
    };
    let answer: TitanAnswer<'_> = serde_json::from_slice(body).map_err(|_| bad())?;
    let embedding = answer.embedding.ok_or_else(bad)?;
    let vector: Vec<f32> = serde_json::from_str(embedding.get()).map_err(|_| bad())?;
    let encoded = if base64 {
        let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        Embedding::Base64(base64_encode(&bytes))
    } else {
        Embedding::Floats(embedding)
    };
    let tokens = answer.input_text_token_count.unwrap_or(0);
    let list = List {
        object: "list",
        data: [Item {
            object: "embedding",
            index: 0,
            embedding: encoded,
        }],
        model: alias_model,
        usage: ListUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    let json = serde_json::to_vec(&list).map_err(|_| bad())?;
    Ok((
        json,
        Usage {
            prompt_tokens: tokens,
            completion_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
        },
    ))
}

#[derive(Deserialize)]
struct EmbeddingsRequest<'a> {
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer<'a> {
    #[serde(borrow, default)]
    embedding: Option<&'a RawValue>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: [Item<'a>; 1],
    model: &'a str,
    usage: ListUsage,
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: u32,
    embedding: Embedding<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Embedding<'a> {
    Floats(&'a RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct ListUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}
