//! Anthropic Messages API (`POST /v1/messages`) behind the OpenAI chat completions API.
//!
//! Pure translation, no I/O: [`build_request`] turns an OpenAI chat body into a Messages
//! request, [`translate_response`] turns a Messages answer into a `chat.completion`,
//! [`StreamTranslator`] turns Anthropic's SSE stream into `chat.completion.chunk` events, and
//! [`map_error`] turns Anthropic's error answers into the gateway's [`ApiError`]s.
//!
//! # What is supported
//!
//! - `system` and `developer` messages (anywhere) are hoisted, in order, into `system`.
//! - `user` and `assistant` turns; consecutive turns of one role are merged (Anthropic wants
//!   them alternating). Content parts: `text`; `image_url` with a `data:<type>;base64,` URL
//!   (JPEG, PNG, GIF, WebP) or an `http(s)` URL; assistant `refusal` parts become text.
//! - Tools: `tools` (function tools), `tool_choice` (`auto`, `required`, `none`, a named
//!   function), `parallel_tool_calls: false`, assistant `tool_calls` (their `arguments` must be
//!   a JSON object, `""` counts as `{}`) and `tool` messages (grouped into one user turn,
//!   `tool_result` blocks first).
//! - `max_tokens` / `max_completion_tokens` (default [`AnthropicDefaults::max_tokens`]),
//!   `temperature` (Anthropic's range, 0 to 1: larger values are refused, not clamped),
//!   `top_p`, `stop`, `stream`, `user` / `safety_identifier` (→ `metadata.user_id`).
//! - A `cache_control` object on a text or image part (an extension some clients send) is
//!   passed on to Anthropic.
//! - Answers: text, tool calls, stop reasons, usage with prompt caching (`cached_tokens` is
//!   Anthropic's cache reads; cache writes count as prompt tokens).
//!
//! # What is refused (400, naming the parameter) rather than silently dropped
//!
//! `n` other than 1, `logprobs: true`, `top_logprobs`, `response_format` other than `text`,
//! `audio` and non-text `modalities`, non-zero `presence_penalty` / `frequency_penalty`, a
//! non-empty `logit_bias`, `prediction`, `reasoning_effort`, `web_search_options`, the legacy
//! `functions` / `function_call`, non-function tools, and audio or file content parts.
//!
//! # What is ignored
//!
//! `stream_options` (Anthropic always reports usage), `seed` (a best-effort hint in OpenAI's
//! API too), `store`, `metadata`, `service_tier`, `verbosity`, unknown parameters. In answers,
//! `thinking` blocks and server-side tool blocks are dropped (no `reasoning_content`).

mod adapter;
mod chunk;
mod error;
mod messages;
mod request;
mod response;
mod stream;
mod wire;

use std::collections::BTreeMap;

pub use adapter::AnthropicAdapter;
pub use error::map_error;
pub use request::build_request;
pub use response::translate_response;
pub use stream::{StreamError, StreamTranslator};

#[cfg(doc)]
use crate::error::ApiError;

/// The path of the Messages API below the provider's base URL (`https://api.anthropic.com`,
/// without `/v1`).
pub const MESSAGES_PATH: &str = "/v1/messages";

/// Anthropic's public API, the base URL when a catalog entry names none.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` sent when the deployment's metadata names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent when neither the client nor the deployment's metadata gives one
/// (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Per-deployment settings, read from the catalog entry's `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicDefaults {
    /// `anthropic-version` header (`metadata.anthropic_version`).
    pub version: String,
    /// `max_tokens` when the client sends none (`metadata.anthropic_max_tokens`).
    pub max_tokens: u64,
    /// `anthropic-beta` header, when set (`metadata.anthropic_beta`).
    pub beta: Option<String>,
}

impl Default for AnthropicDefaults {
    fn default() -> Self {
        Self {
            version: DEFAULT_VERSION.to_owned(),
            max_tokens: DEFAULT_MAX_TOKENS,
            beta: None,
        }
    }
}

impl AnthropicDefaults {
    /// Reads `anthropic_version`, `anthropic_max_tokens` and `anthropic_beta` from a catalog
    /// entry's metadata; absent keys take the defaults. `Err` names the bad key, for config
    /// validation (call it when the snapshot is built, not per request).
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut defaults = Self::default();
        let header_value = |key: &str, value: &str| {
            if value.is_empty() || value.bytes().any(|b| b < 0x20 || b == 0x7f) {
                Err(format!(
                    "metadata `{key}` must be a non-empty header value without control characters"
                ))
            } else {
                Ok(value.to_owned())
            }
        };
        if let Some(version) = metadata.get("anthropic_version") {
            defaults.version = header_value("anthropic_version", version.trim())?;
        }
        if let Some(beta) = metadata.get("anthropic_beta") {
            defaults.beta = Some(header_value("anthropic_beta", beta.trim())?);
        }
        if let Some(max_tokens) = metadata.get("anthropic_max_tokens") {
            defaults.max_tokens = match max_tokens.trim().parse::<u64>() {
                Ok(value) if value > 0 => value,
                _ => {
                    return Err(
                        "metadata `anthropic_max_tokens` must be a positive integer".to_owned()
                    )
                }
            };
        }
        Ok(defaults)
    }
}

/// A Messages API request, ready for the glue to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicRequest {
    /// [`MESSAGES_PATH`], appended to the endpoint's path prefix.
    pub path: &'static str,
    /// `anthropic-version` and, when configured, `anthropic-beta` (the glue sets
    /// `content-type`). The credential is not here: add [`auth_header`].
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The credential header for an Anthropic API key.
pub fn auth_header(api_key: &str) -> (&'static str, String) {
    ("x-api-key", api_key.to_owned())
}

#[cfg(test)]
mod tests;
