//! Anthropic Messages answer → OpenAI `chat.completion`, and the pieces the stream shares:
//! usage, stop reasons, compact tool arguments.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::map_error;
use crate::error::ApiError;
pub(super) use crate::providers::chat::response::compact;
use crate::providers::chat::response::{completion_id, not_an_answer, read_answer, Reply};
use crate::providers::Usage;

/// What a Messages answer is, in errors.
const ANSWER: &str = "an Anthropic message";

/// Translates a non-streamed Messages answer (HTTP 200) into a `chat.completion` body for
/// the client, with the usage to bill. `model` in the body is `alias_model` (what the client
/// asked for); `id` is `chatcmpl-` + Anthropic's message id (`request_id` when it has none).
pub fn translate_response(
    body: &[u8],
    alias_model: &str,
    request_id: &str,
    created: i64,
) -> Result<(Vec<u8>, Usage), ApiError> {
    let message: Message<'_> = read_answer(body, ANSWER)?;
    match message.kind.as_ref() {
        "message" => {}
        "error" => return Err(map_error(502, body)),
        _ => return Err(not_an_answer(ANSWER)),
    }
    let mut reply = Reply::default();
    for block in message.content {
        match block.kind.as_ref() {
            "text" => reply.text(block.text.as_deref().unwrap_or_default()),
            "tool_use" => {
                let (Some(id), Some(name)) = (block.id, block.name) else {
                    return Err(not_an_answer(ANSWER));
                };
                let arguments = block.input.map_or_else(|| "{}".to_owned(), compact);
                reply.tool_call(id, name, arguments);
            }
            // `thinking`, `redacted_thinking`, server tool blocks: not part of the answer.
            _ => {}
        }
    }
    let usage = message.usage.unwrap_or_default().to_usage();
    let id = completion_id(message.id.as_deref(), request_id);
    let finish = finish_reason(message.stop_reason.as_deref());
    let json = reply
        .completion((&id, created, alias_model), finish, usage)
        .map_err(|_| not_an_answer(ANSWER))?;
    Ok((json, usage))
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub(super) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything newer.
        _ => "stop",
    }
}

/// Anthropic's usage (message, `message_start` or cumulative `message_delta`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(super) struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Takes every count `newer` reports (stream usage is cumulative).
    pub fn update(&mut self, newer: AnthropicUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// OpenAI's reading: every input token (uncached, cache writes, cache reads) is a prompt
    /// token; cache reads are the cached ones, cache writes are billed at their own price.
    pub fn to_usage(self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(cached),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: cached,
            cache_write_tokens: self.cache_creation_input_tokens.unwrap_or(0),
            images: 0,
        }
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Vec<ContentBlock<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct ContentBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}
