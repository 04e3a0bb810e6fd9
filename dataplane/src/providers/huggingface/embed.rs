//! Embeddings in Text Embeddings Inference's and the Inference API's own format: a list of
//! texts in, a list of vectors out.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tokens::{prompt_tokens, Vocabulary};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};

use crate::error::{truncate, ApiError};
use crate::providers::adapter::{Answer, Call, ClientError};
use crate::providers::chat::error::sanitize;
use crate::providers::embeddings::openai_list;
use crate::providers::Usage;

/// The client's `input` as texts (TEI and the Inference API take no token arrays) and its
/// `dimensions`.
pub(super) struct Input {
    texts: Vec<String>,
    dimensions: Option<u64>,
}

pub(super) fn inputs(raw: &[u8]) -> Result<Input, ApiError> {
    let request: Value = serde_json::from_slice(raw)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "The request body must be JSON."))?;
    let texts = match request.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "This model's embeddings take text: `input` must be a string or a non-empty array of strings (token arrays are not accepted).",
            )
            .with_param("input"))
        }
    };
    let dimensions = request.get("dimensions").and_then(Value::as_u64);
    Ok(Input { texts, dimensions })
}

/// `POST /embed`: `{"inputs", "normalize": true, "truncate", "dimensions"?}`.
pub(super) fn tei_body(input: &Input, truncate: bool) -> Vec<u8> {
    let mut body = json!({"inputs": input.texts, "normalize": true, "truncate": truncate});
    if let Some(dimensions) = input.dimensions {
        body["dimensions"] = json!(dimensions);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The feature-extraction pipeline: `{"inputs", "normalize": true, "truncate"}`; it has no
/// `dimensions`.
pub(super) fn inference_body(input: &Input, truncate: bool) -> Result<Vec<u8>, ApiError> {
    if input.dimensions.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "This model's embeddings (Hugging Face Inference API) do not take `dimensions`.",
        )
        .with_param("dimensions"));
    }
    let body = json!({"inputs": input.texts, "normalize": true, "truncate": truncate});
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

/// A model id in a URL path: its `/` stays (`BAAI/bge-small-en-v1.5`), anything outside
/// the characters model ids use is percent-encoded.
pub(super) fn model_path(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `[[f32]]` (or `[f32]` for one input) → OpenAI's list. Usage is estimated (neither API
/// reports it): the record says so.
pub(super) fn answer(call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let vectors: Vec<Vec<f32>> = match serde_json::from_slice::<Vec<Vec<f32>>>(body) {
        Ok(vectors) => vectors,
        Err(_) => match serde_json::from_slice::<Vec<f32>>(body) {
            Ok(one) => vec![one],
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::UpstreamError,
                    "The upstream's embeddings were not a list of vectors (a model that returns token embeddings needs a pooling model; check the catalog entry's provider_model).",
                ))
            }
        },
    };
    // TEI reports no usage: the inputs are counted (with OpenAI's tokenizer, an
    // approximation of the model's own).
    let prompt_tokens = prompt_tokens(call.body, Vocabulary::O200k).max(1);
    let usage = Usage {
        prompt_tokens,
        completion_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        images: 0,
    };
    Ok(Answer {
        body: openai_list(call.alias, &vectors, call.body.base64_embeddings, usage),
        usage: None,
    })
}

/// TEI's and TGI's (`{"error","error_type"}`) and the Inference API's (`{"error"}`, with
/// `estimated_time` while a model loads) errors; `None` for anything else (an OpenAI-shaped
/// error from a chat route).
///
/// - 413: `request_too_large`, and any other 4xx `invalid_value`, with their status and the
///   server's message (TEI's and TGI's validation errors: batch size, input length, …).
/// - A 4xx that is the server's own failure (424: TGI's `generation`, TEI's `Backend`): 502
///   `upstream_error`; its message (server internals) is not passed on.
/// - 429 (TGI's and TEI's `overloaded`, the Inference API's rate limit):
///   `rate_limit_exceeded`.
/// - Anything else (a 5xx, a model still loading): 502 `upstream_error`.
pub(super) fn client_error(status: u16, body: &[u8]) -> Option<ClientError> {
    #[derive(Deserialize)]
    struct HfError {
        error: String,
        #[serde(default)]
        error_type: Option<Value>,
        #[serde(default)]
        estimated_time: Option<IgnoredAny>,
    }
    let error: HfError = serde_json::from_slice(body).ok()?;
    let kind = error
        .error_type
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let server_failure = status == 424 || matches!(kind.as_deref(), Some("generation" | "backend"));
    let (status, code, message) = if status == 429 {
        (
            429,
            ErrorCode::RequestRateLimited,
            "The model's server is overloaded or rate limiting; retry later.".to_owned(),
        )
    } else if (400..500).contains(&status) && !server_failure {
        let code = if status == 413 {
            ErrorCode::RequestTooLarge
        } else {
            ErrorCode::InvalidParameter
        };
        let message = truncate(&sanitize(&error.error), 300);
        (
            status,
            code,
            format!("The model's server refused the request: {message}"),
        )
    } else if error.estimated_time.is_some() {
        (
            502,
            ErrorCode::UpstreamError,
            "The model is still loading at the upstream; retry later.".to_owned(),
        )
    } else {
        (
            502,
            ErrorCode::UpstreamError,
            format!("The model's server failed with HTTP {status}."),
        )
    };
    Some(ClientError {
        status,
        body: OpenAiErrorBody::new(code, message, None),
    })
}
