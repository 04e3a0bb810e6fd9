//! Anthropic Messages API (`POST /v1/messages`) behind the OpenAI chat completions API.
//!
//! Pure translation, no I/O: [`build_request`] turns an OpenAI chat body into a Messages
//! request, [`translate_response`] turns a Messages answer into a `chat.completion`,
//! [`StreamTranslator`] turns Anthropic's SSE stream into `chat.completion.chunk` events, and
//! [`map_error`] turns Anthropic's error answers into the gateway's [`ApiError`]s.
//!
//! Clients of the gateway's own Anthropic ingress are served natively instead (`native.rs`):
//! a Messages request goes upstream as the client wrote it (only `model` replaced), and so
//! does a `count_tokens` request, to [`COUNT_TOKENS_PATH`] with the same headers.
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

/// The provider's name in messages.
const PROVIDER: &str = "Anthropic";

mod adapter;
mod error;
mod messages;
mod native;
mod request;
mod response;
mod stream;
mod wire;

pub use adapter::AnthropicAdapter;
pub use error::map_error;
pub use omg_shared::anthropic::{AnthropicDefaults, DEFAULT_MAX_TOKENS, DEFAULT_VERSION};
pub use request::build_request;
pub use response::translate_response;
pub use stream::{AnthropicStream, StreamError};

#[cfg(doc)]
use crate::error::ApiError;

/// The path of the Messages API below the provider's base URL (`https://api.anthropic.com`,
/// without `/v1`).
pub const MESSAGES_PATH: &str = "/v1/messages";

/// The token-counting endpoint below the provider's base URL: an Anthropic client's
/// `POST /v1/messages/count_tokens` goes there (its answer is `{"input_tokens": n}`).
pub const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

/// Anthropic's public API, the base URL when a catalog entry names none.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

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
