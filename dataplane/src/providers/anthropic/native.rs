//! Anthropic clients (`POST /v1/messages`, `POST /v1/messages/count_tokens`) served by an
//! Anthropic deployment: the client's request goes upstream as written (only `model`
//! replaced), the answer comes back as sent. The OpenAI translator still reads a Messages
//! answer, for usage and the stream's state; a token count is checked and consumes nothing.

use bytes::BytesMut;
use serde_json::{Map, Value};

use omg_shared::error::ErrorCode;

use super::{translate_response, AnthropicStream};
use crate::error::ApiError;
use crate::providers::adapter::{
    Answer, Call, Ingress, StreamFault, StreamState, StreamTranslator,
};
use crate::providers::Usage;
use crate::request::Route;

/// Whether the call is an Anthropic client's `count_tokens` (else a Messages request).
pub(super) fn counts_tokens(call: &Call<'_>) -> bool {
    *call.route == Route::CountTokens && matches!(call.ingress, Ingress::Anthropic { .. })
}

/// The client's Messages body with `model` set to the provider's model name.
pub(super) fn request_body(raw: &[u8], provider_model: &str) -> Result<Vec<u8>, ApiError> {
    let mut body: Map<String, Value> = serde_json::from_slice(raw).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidJson,
            "The request body must be a JSON object.",
        )
    })?;
    body.insert("model".into(), Value::String(provider_model.to_owned()));
    serde_json::to_vec(&body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidJson,
            "The request body could not be serialized.",
        )
    })
}

/// `anthropic-beta`: the deployment's features, then the client's.
pub(super) fn beta_header(configured: Option<&str>, client: Option<&str>) -> Option<String> {
    let joined: Vec<&str> = configured
        .into_iter()
        .chain(client)
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|feature| !feature.is_empty())
        .collect();
    let mut unique: Vec<&str> = Vec::with_capacity(joined.len());
    for feature in joined {
        if !unique.contains(&feature) {
            unique.push(feature);
        }
    }
    (!unique.is_empty()).then(|| unique.join(","))
}

/// The answer as Anthropic sent it (`model` echoes the alias), with its usage.
pub(super) fn response(call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let (_, usage) = translate_response(body, call.alias, call.request_id, call.created)?;
    let mut answer: Map<String, Value> = serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answer was not a Messages response.",
        )
    })?;
    answer.insert("model".into(), Value::String(call.alias.to_owned()));
    Ok(Answer {
        body: serde_json::to_vec(&answer).unwrap_or_else(|_| body.to_vec()),
        usage: Some(usage),
    })
}

/// A `count_tokens` answer, passed through as Anthropic sent it once it is one (an object
/// with a non-negative integer `input_tokens`). Its usage is zero: counting uses no tokens,
/// and nothing is metered.
pub(super) fn count_response(body: &[u8]) -> Result<Answer, ApiError> {
    let counted = serde_json::from_slice::<Map<String, Value>>(body)
        .ok()
        .and_then(|answer| answer.get("input_tokens").and_then(Value::as_u64));
    if counted.is_none() {
        return Err(ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answer was not a token count.",
        ));
    }
    Ok(Answer {
        body: body.to_vec(),
        usage: Some(Usage::default()),
    })
}

/// Passes Anthropic's events through; the translator keeps the stream's state and usage.
pub(super) struct PassThrough {
    meter: AnthropicStream,
    scratch: BytesMut,
}

impl PassThrough {
    pub(super) fn new(call: &Call<'_>) -> Self {
        Self {
            meter: AnthropicStream::new(call.alias, call.request_id, call.created, true),
            scratch: BytesMut::new(),
        }
    }
}

impl StreamTranslator for PassThrough {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        let metered = StreamTranslator::push(&mut self.meter, bytes, &mut self.scratch);
        self.scratch.clear();
        out.extend_from_slice(bytes);
        metered
    }

    fn state(&self) -> &StreamState {
        self.meter.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_features_are_merged_without_duplicates() {
        assert_eq!(beta_header(None, None), None);
        assert_eq!(
            beta_header(Some("a, b"), Some("b,c")).as_deref(),
            Some("a,b,c")
        );
        assert_eq!(beta_header(None, Some(" x ")).as_deref(), Some("x"));
    }

    #[test]
    fn token_counts_pass_through_unmetered() {
        let body = br#"{"input_tokens":1234,"context_management":{"original_input_tokens":2000}}"#;
        let answer = count_response(body).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(answer.body, body, "passed through byte for byte");
        assert_eq!(answer.usage, Some(Usage::default()));
        for broken in [
            &b"{not json"[..],
            br#"{"type":"message","usage":{"input_tokens":3}}"#,
            br#"{"input_tokens":-1}"#,
            br#"{"input_tokens":"12"}"#,
            b"[]",
        ] {
            let error = count_response(broken).unwrap_err();
            assert_eq!(error.code, ErrorCode::UpstreamError, "{broken:?}");
        }
    }

    #[test]
    fn the_model_is_replaced_and_everything_else_kept() {
        let body = request_body(
            br#"{"model":"claude","max_tokens":5,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[]}"#,
            "claude-sonnet-4",
        )
        .unwrap_or_default();
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(value["model"], "claude-sonnet-4");
        assert_eq!(value["system"][0]["cache_control"]["type"], "ephemeral");
    }
}
