//! Converse answer → OpenAI `chat.completion`, and the pieces the stream shares: usage,
//! stop reasons, compact tool arguments.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::providers::chat::response::{compact, completion_id, not_an_answer, read_answer, Reply};
use crate::providers::Usage;

/// What a Converse answer is, in errors.
const ANSWER: &str = "a Bedrock Converse answer";

/// Translates a non-streamed Converse answer (HTTP 200) into a `chat.completion` body for the
/// client, with the usage to bill. `model` in the body is `alias_model` (what the client asked
/// for); Converse answers carry no id, so `id` is `chatcmpl-<request_id>`.
pub fn translate_response(
    body: &[u8],
    alias_model: &str,
    request_id: &str,
    created: i64,
) -> Result<(Vec<u8>, Usage), ApiError> {
    let answer: ConverseAnswer<'_> = read_answer(body, ANSWER)?;
    let message = answer
        .output
        .and_then(|output| output.message)
        .ok_or_else(|| not_an_answer(ANSWER))?;
    let mut reply = Reply::default();
    for block in message.content {
        if let Some(piece) = block.text {
            reply.text(&piece);
        } else if let Some(tool) = block.tool_use {
            let arguments = tool.input.map_or_else(|| "{}".to_owned(), compact);
            reply.tool_call(tool.tool_use_id, tool.name, arguments);
        }
        // `reasoningContent`, `citationsContent`, images…: not part of the OpenAI answer.
    }
    let usage = answer.usage.unwrap_or_default().to_usage();
    let finish = finish_reason(answer.stop_reason.as_deref());
    let id = completion_id(None, request_id);
    let json = reply
        .completion((&id, created, alias_model), finish, usage)
        .map_err(|_| not_an_answer(ANSWER))?;
    Ok((json, usage))
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub(super) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        // end_turn, stop_sequence, and anything newer.
        _ => "stop",
    }
}

/// Converse's `usage` (answer or stream `metadata`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BedrockUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

impl BedrockUsage {
    /// OpenAI's reading: every input token (uncached, cache writes, cache reads) is a prompt
    /// token; cache reads are the cached ones, cache writes are billed at their own price.
    pub fn to_usage(self) -> Usage {
        Usage {
            prompt_tokens: self
                .input_tokens
                .saturating_add(self.cache_read_input_tokens)
                .saturating_add(self.cache_write_input_tokens),
            completion_tokens: self.output_tokens,
            cached_tokens: self.cache_read_input_tokens,
            cache_write_tokens: self.cache_write_input_tokens,
            images: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseAnswer<'a> {
    #[serde(borrow, default)]
    output: Option<Output<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<BedrockUsage>,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow, default)]
    message: Option<AnswerMessage<'a>>,
}

#[derive(Deserialize)]
struct AnswerMessage<'a> {
    #[serde(borrow, default)]
    content: Vec<ContentBlock<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentBlock<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_use: Option<ToolUseOut<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseOut<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}
