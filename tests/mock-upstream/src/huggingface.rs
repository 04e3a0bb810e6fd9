//! Hugging Face's embedding APIs: Text Embeddings Inference's `POST /embed` (and
//! `GET /health`) and the Inference API's
//! `POST /hf-inference/models/{model}/pipeline/feature-extraction`.
//!
//! Checked like the real servers: `Authorization: Bearer <key>` when a key is configured
//! (TEI's `--api-key`, the Hub token), a JSON object with only the fields the API knows,
//! `inputs` a string or a non-empty list of strings, TEI's batch limit (32) and token limit
//! (an input containing `too-long` is over it). Vectors are deterministic unit vectors of
//! `dimensions` (TEI) or 8 values; the model `token-model` answers token embeddings
//! (`[[[f32]]]`), as a model without pooling does.

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::handler::{self, Reply};
use crate::Shared;

/// TEI's own routes.
pub(crate) const TEI_EMBED: &str = "/embed";
/// TEI's liveness route.
pub(crate) const TEI_HEALTH: &str = "/health";
/// Where the Inference API's model routes start.
pub(crate) const INFERENCE_PREFIX: &str = "/hf-inference/models/";
const PIPELINE_SUFFIX: &str = "/pipeline/feature-extraction";
const MAX_BATCH: usize = 32;

/// Whether the path is one of these routes.
pub(crate) fn serves(path: &str) -> bool {
    path == TEI_EMBED || path == TEI_HEALTH || path.starts_with(INFERENCE_PREFIX)
}

/// `{"error","error_type"}`, TEI's error shape (the Inference API sends `{"error"}`).
fn error(status: StatusCode, message: &str, error_type: Option<&str>) -> Reply {
    let mut body = json!({ "error": message });
    if let Some(kind) = error_type {
        body["error_type"] = json!(kind);
    }
    Reply::json(status, body.to_string())
}

pub(crate) fn respond(shared: &Shared, parts: &Parts, body: &[u8]) -> Reply {
    if let Some(key) = &shared.config.api_key {
        let expected = format!("Bearer {key}");
        if handler::header(parts, "authorization") != Some(expected.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Invalid credentials in Authorization header",
                None,
            );
        }
    }
    let path = parts.uri.path();
    match (&parts.method, path) {
        (&Method::GET, TEI_HEALTH) => Reply::ok(String::new()),
        (&Method::POST, TEI_EMBED) => embed(body, true, "tei"),
        (&Method::POST, _) => match path
            .strip_prefix(INFERENCE_PREFIX)
            .and_then(|rest| rest.strip_suffix(PIPELINE_SUFFIX))
        {
            Some(model) if !model.is_empty() => embed(body, false, model),
            _ => error(StatusCode::NOT_FOUND, "Not Found", None),
        },
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None),
    }
}

fn embed(body: &[u8], tei: bool, model: &str) -> Reply {
    let Some(request) = handler::json_object(body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Json deserialize error: expected an object",
            Some("Validation"),
        );
    };
    let allowed: &[&str] = if tei {
        &[
            "inputs",
            "normalize",
            "truncate",
            "truncation_direction",
            "prompt_name",
            "dimensions",
        ]
    } else {
        &[
            "inputs",
            "normalize",
            "truncate",
            "truncation_direction",
            "prompt_name",
        ]
    };
    if let Some(unknown) = request.keys().find(|k| !allowed.contains(&k.as_str())) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Json deserialize error: unknown field `{unknown}`"),
            Some("Validation"),
        );
    }
    let (texts, single) = match request.get("inputs") {
        Some(Value::String(text)) => (vec![text.as_str()], true),
        Some(Value::Array(items)) if !items.is_empty() => {
            let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            match texts {
                Some(texts) => (texts, false),
                None => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "`inputs` must be strings",
                        Some("Validation"),
                    )
                }
            }
        }
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`inputs` cannot be empty",
                Some("Validation"),
            )
        }
    };
    if texts.len() > MAX_BATCH {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "batch size {} > maximum allowed batch size {MAX_BATCH}",
                texts.len()
            ),
            Some("Validation"),
        );
    }
    let truncating = request.get("truncate") == Some(&Value::Bool(true));
    if !truncating && texts.iter().any(|t| t.contains("too-long")) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Input validation error: `inputs` must have less than 512 tokens. Given: 600",
            Some("Validation"),
        );
    }
    let dims = dimensions(&request).unwrap_or(8);
    let vectors: Vec<Value> = texts.iter().map(|t| json!(vector(t, dims))).collect();
    let answer = if model == "token-model" {
        json!([vectors])
    } else if single && !tei {
        vectors.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(vectors)
    };
    Reply::ok(answer.to_string())
}

fn dimensions(request: &Map<String, Value>) -> Option<usize> {
    request
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| (1..=4096).contains(d))
}

/// A deterministic unit vector for a text.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let seed = text.bytes().fold(7u64, |acc, b| {
        acc.wrapping_mul(131).wrapping_add(u64::from(b))
    });
    let raw: Vec<f32> = (0..dims)
        .map(|j| ((seed.wrapping_add(j as u64 * 0x9e37_79b9) >> 20) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.iter().map(|v| v / norm).collect()
}
