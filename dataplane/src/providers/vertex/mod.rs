//! Google Vertex AI and the Gemini API (`generateContent`, `streamGenerateContent?alt=sse`,
//! `predict`, `batchEmbedContents`) behind the OpenAI chat completions, embeddings and image
//! generation (Imagen, `image.rs`) APIs.
//!
//! Pure translation, no I/O: [`build_chat`] turns an OpenAI chat body into a
//! `generateContent` request, [`translate_response`] turns the answer into a
//! `chat.completion`, [`GeminiStream`] turns Gemini's SSE stream into
//! `chat.completion.chunk` events, [`build_embeddings`] / [`translate_embeddings`] do
//! embeddings, and [`map_error`] maps Google's error answers. Vertex AI's OAuth tokens are
//! minted in the background by [`crate::credentials::google`]; the adapter only reads them.
//!
//! # What is translated
//!
//! - `system` and `developer` messages (anywhere) → `systemInstruction`, in order.
//! - `user` → `user`, `assistant` → `model`; consecutive turns of one role are merged. Content
//!   parts: `text`; `image_url` with a base64 `data:image/…` URL → `inlineData`, a `gs://` or
//!   `http(s)` URL → `fileData` with the MIME type guessed from the extension (`.png`, `.jpg`,
//!   `.jpeg`, `.webp`, `.gif`, `.heic`, `.heif`; others are refused); assistant `refusal`
//!   parts become text.
//! - `tools` (function tools) → `functionDeclarations`, their JSON Schemas cut down to what
//!   Gemini's `Schema` accepts (`$schema`, `additionalProperties`, `strict`, annotations
//!   dropped; `oneOf` → `anyOf`; `["t","null"]` → `nullable`); `$ref`/`$defs` are refused
//!   naming the tool. `tool_choice`: `auto` → `AUTO`, `none` → `NONE`, `required` → `ANY`, a
//!   named function → `ANY` with `allowedFunctionNames`.
//! - Assistant `tool_calls` → `functionCall` parts; `tool` messages → `functionResponse`
//!   parts of a user turn, named through the earlier tool call with that id (a JSON object
//!   result as is, anything else as `{"result": …}`).
//! - Function calls in answers → `tool_calls` with ids `call_<n>` (Gemini's `id` when it
//!   gives one) and `finish_reason: "tool_calls"`. A part's `thoughtSignature` rides in the
//!   id (`<id>:ts:<base64url>`, see `ids.rs`) and is put back on the `functionCall` part of
//!   the next request, so multi-turn tool use works with thinking models and no server-side
//!   state.
//! - `max_tokens` / `max_completion_tokens` → `maxOutputTokens`, `temperature`, `top_p`,
//!   `stop` → `stopSequences`, `n` → `candidateCount`, `seed`, `presence_penalty`,
//!   `frequency_penalty`, `response_format` `json_object` → `responseMimeType:
//!   application/json` (`json_schema` adds the sanitized `responseSchema`).
//! - Finish reasons: `MAX_TOKENS` → `length`; `SAFETY`, `RECITATION`, `BLOCKLIST`,
//!   `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY` … → `content_filter`; others → `stop`. A
//!   blocked prompt (`promptFeedback.blockReason`, no candidates) → 400 `content_filter`
//!   (in a stream: an in-band error).
//! - Usage: prompt = `promptTokenCount`, completion = `candidatesTokenCount +
//!   thoughtsTokenCount` (also shown as `reasoning_tokens`), cached =
//!   `cachedContentTokenCount`.
//!
//! # What is refused (400, naming the parameter)
//!
//! `logprobs: true`, `top_logprobs`, `audio` and non-text `modalities`, a non-empty
//! `logit_bias`, `prediction`, `reasoning_effort`, `web_search_options`, the legacy
//! `functions` / `function_call`, non-function tools, audio or file content parts.
//!
//! # What is ignored
//!
//! `stream_options` (Gemini always reports usage), `parallel_tool_calls`, `user`,
//! `safety_identifier`, `store`, `metadata`, `service_tier`, unknown parameters. In answers,
//! thought summaries (`thought: true` parts) and text-part thought signatures are dropped.

/// The provider's name in messages.
const PROVIDER: &str = "Gemini";

mod adapter;
mod embeddings;
mod error;
mod ids;
mod image;
mod messages;
mod request;
mod response;
mod schema;
mod stream;
mod wire;

pub use adapter::VertexAdapter;
pub use embeddings::{build_embeddings, translate_embeddings};
pub use error::map_error;
pub use request::build_chat;
pub use response::translate_response;
pub use stream::GeminiStream;

#[cfg(test)]
mod tests;
