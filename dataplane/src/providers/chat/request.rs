//! The OpenAI chat completion request as the translating adapters read it: the top-level
//! fields kept raw until decoded (so every error names its parameter), and the scalar
//! parameters whose reading they share.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::invalid;
use super::messages::Message;
use crate::error::{truncate, ApiError};

/// The top-level fields the translating adapters read, each kept raw until decoded. A JSON
/// `null` reads as absent.
#[derive(Deserialize)]
pub(crate) struct ChatRequest<'a> {
    #[serde(borrow, default)]
    pub(crate) messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) stop: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) safety_identifier: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) parallel_tool_calls: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) n: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) seed: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) top_logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) audio: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) modalities: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) presence_penalty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) frequency_penalty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) logit_bias: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) prediction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) reasoning_effort: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) web_search_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) functions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) function_call: Option<&'a RawValue>,
}

impl<'a> ChatRequest<'a> {
    /// Reads a chat completion body (a JSON object; strings without escapes are borrowed).
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::new(
                ErrorCode::InvalidJson,
                "The request body must be a JSON object.",
            ));
        }
        serde_json::from_slice(body).map_err(|error| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("We could not parse the JSON body of your request ({error})."),
            )
        })
    }

    /// The `messages` array (required).
    pub(crate) fn messages(&self) -> Result<Vec<Message<'a>>, ApiError> {
        decode(self.messages, "messages")?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingParameter,
                "you must provide a `messages` array",
            )
            .with_param("messages")
        })
    }

    /// `max_completion_tokens`, else `max_tokens` (each, when given, a positive integer).
    pub(crate) fn max_tokens(&self) -> Result<Option<u64>, ApiError> {
        let mut max_tokens = None;
        for (raw, param) in [
            (self.max_completion_tokens, "max_completion_tokens"),
            (self.max_tokens, "max_tokens"),
        ] {
            match decode::<u64>(raw, param) {
                Ok(Some(0)) | Err(_) => {
                    return Err(invalid(
                        param,
                        &format!("`{param}` must be a positive integer"),
                    ))
                }
                Ok(value) => max_tokens = max_tokens.or(value),
            }
        }
        Ok(max_tokens)
    }

    /// `stop`: one string or a list (an empty list is none).
    pub(crate) fn stop(&self) -> Result<Option<Vec<Cow<'a, str>>>, ApiError> {
        let Some(raw) = self.stop else {
            return Ok(None);
        };
        let sequences = if raw.get().starts_with('"') {
            decode::<Cow<'_, str>>(Some(raw), "stop")?.map(|one| vec![one])
        } else {
            decode::<Vec<Cow<'_, str>>>(Some(raw), "stop")?
        };
        Ok(sequences.filter(|sequences| !sequences.is_empty()))
    }
}

/// A number parameter within `min..=max`. `provider`, when named, ends the message ("for this
/// model (Anthropic)").
pub(crate) fn number(
    raw: Option<&RawValue>,
    param: &'static str,
    (min, max): (f64, f64),
    provider: Option<&str>,
) -> Result<Option<f64>, ApiError> {
    let range = || match provider {
        Some(provider) => format!(
            "`{param}` must be a number between {min} and {max} for this model ({provider})"
        ),
        None => format!("`{param}` must be a number between {min} and {max}"),
    };
    match decode::<f64>(raw, param) {
        Ok(Some(value)) if !(min..=max).contains(&value) => Err(invalid(param, &range())),
        Ok(value) => Ok(value),
        Err(_) => Err(invalid(param, &range())),
    }
}

/// The upstream request's JSON body.
pub(crate) fn to_body<T: Serialize>(request: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(request).map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
    })
}

/// Decodes a raw parameter; `Err` names it.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    param: &'static str,
) -> Result<Option<T>, ApiError> {
    raw.map(|raw| {
        serde_json::from_str::<T>(raw.get()).map_err(|error| {
            invalid(
                param,
                &format!("Invalid `{param}`: {}", truncate(&error.to_string(), 200)),
            )
        })
    })
    .transpose()
}
