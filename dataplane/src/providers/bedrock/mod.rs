//! AWS Bedrock behind the OpenAI API: chat through Converse (`POST /model/{modelId}/converse`)
//! and ConverseStream (`…/converse-stream`, an AWS event stream), embeddings through
//! `InvokeModel` with Titan's body (`…/invoke`), image generation through `InvokeModel` with
//! the bodies of Titan, Nova Canvas and Stability AI (`image.rs`).
//!
//! Pure translation, no I/O: [`build_converse`] turns an OpenAI chat body into a Converse
//! body, [`translate_response`] turns a Converse answer into a `chat.completion`,
//! [`ConverseStream`] decodes the binary event stream ([`eventstream`]) into
//! `chat.completion.chunk` events, [`map_error`] maps Bedrock's errors, [`build_titan`] /
//! [`translate_titan`] do embeddings. The model id (`provider_model`: a model id, an
//! inference profile id or an ARN) is percent-encoded once in the path. Requests carry a
//! Bedrock API key (`Authorization: Bearer`) or are signed with SigV4 ([`sign`]) at the
//! time the glue passes in [`Call::now`](crate::providers::Call), so every attempt is signed
//! afresh; credentials are resolved once per snapshot (`crate::credentials::aws`).
//!
//! # What is supported
//!
//! - `system` and `developer` messages (anywhere) are hoisted, in order, into `system`.
//! - `user` and `assistant` turns; consecutive turns of one role are merged (Converse wants
//!   them alternating, starting with a user turn). Content parts: `text`; `image_url` with a
//!   base64 `data:` URL (JPEG, PNG, GIF, WebP) → `image{format, source{bytes}}`; assistant
//!   `refusal` parts become text; a `cache_control` mark on a part becomes a `cachePoint`
//!   after it.
//! - Tools: `tools` (function tools → `toolSpec` with `inputSchema.json`), `tool_choice`
//!   (`auto`, `required` → `any`, a named function → `tool`, `none` → no tools), assistant
//!   `tool_calls` (→ `toolUse`; `arguments` must be a JSON object, `""` counts as `{}`) and
//!   `tool` messages (→ `toolResult` blocks, consecutive ones merged into one user turn,
//!   first in it).
//! - `max_tokens` / `max_completion_tokens` (default `metadata.bedrock_default_max_tokens`,
//!   else left to the model), `temperature` and `top_p` (0 to 1: larger values are refused,
//!   not clamped), `stop` → `inferenceConfig`.
//! - Answers: text, tool calls, stop reasons (`end_turn` / `stop_sequence` → `stop`,
//!   `max_tokens` → `length`, `tool_use` → `tool_calls`, `guardrail_intervened` /
//!   `content_filtered` → `content_filter`), usage with prompt caching (cache reads are
//!   `cached_tokens`; cache reads and writes count as prompt tokens).
//!
//! # What is refused (400, naming the parameter)
//!
//! `n` other than 1, `logprobs: true`, `top_logprobs`, `response_format` other than `text`,
//! `audio` and non-text `modalities`, non-zero `presence_penalty` / `frequency_penalty`, a
//! non-empty `logit_bias`, `prediction`, `reasoning_effort`, `web_search_options`, the legacy
//! `functions` / `function_call`, non-function tools, image URLs (the gateway does not fetch
//! them), audio or file parts, a conversation starting with an assistant turn, tool calls in
//! the conversation without `tools`, `tool_choice: none` once the conversation holds tool
//! calls, and embeddings requests with more than one input.
//!
//! # What is ignored
//!
//! `stream_options` (Bedrock always reports usage), `parallel_tool_calls` (Converse has no
//! such switch), `seed`, `user`, `store`, `metadata`, `service_tier`, unknown parameters. In
//! answers, reasoning and citation blocks are dropped.

/// The provider's name in messages.
const PROVIDER: &str = "Bedrock";

mod adapter;
mod embed;
mod error;
pub mod eventstream;
mod image;
mod messages;
mod request;
mod response;
pub mod sign;
mod stream;
mod wire;

use omg_shared::bedrock::AwsKeys;
use omg_shared::secret::Secret;

pub use adapter::BedrockAdapter;
pub use embed::{build_titan, translate_titan};
pub use error::{map_error, map_exception};
pub use request::build_converse;
pub use response::translate_response;
pub use stream::{ConverseStream, BAD_FRAME, CORRUPT};

/// The content type of ConverseStream answers (and the `accept` of stream requests).
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// A deployment's resolved credential.
#[derive(Debug, Clone)]
pub enum BedrockCredential {
    /// An Amazon Bedrock API key (`Authorization: Bearer`).
    ApiKey(Secret),
    /// A static access key (SigV4).
    Keys(AwsKeys),
}

#[cfg(test)]
mod tests;
