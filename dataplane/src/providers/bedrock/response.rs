//! Converse answer → OpenAI `chat.completion`, and the pieces the stream shares: usage,
//! stop reasons, compact tool arguments.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::providers::Usage;

/// Translates a non-streamed Converse answer (HTTP 200) into a `chat.completion` body for the
/// client, with the usage to bill. `model` in the body is `alias_model` (what the client asked
/// for); Converse answers carry no id, so `id` is `chatcmpl-<request_id>`.
pub fn translate_response(
    body: &[u8],
    alias_model: &str,
    request_id: &str,
    created: i64,
) -> Result<(Vec<u8>, Usage), ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_an_answer());
    }
    let answer: ConverseAnswer<'_> = serde_json::from_slice(body).map_err(|_| not_an_answer())?;
    let message = answer
        .output
        .and_then(|output| output.message)
        .ok_or_else(not_an_answer)?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in message.content {
        if let Some(piece) = block.text {
            text.get_or_insert_with(String::new).push_str(&piece);
        } else if let Some(tool) = block.tool_use {
            tool_calls.push(ToolCallOut {
                id: tool.tool_use_id,
                kind: "function",
                function: FunctionOut {
                    name: tool.name,
                    arguments: tool.input.map_or_else(|| "{}".to_owned(), compact),
                },
            });
        }
        // `reasoningContent`, `citationsContent`, images…: not part of the OpenAI answer.
    }
    let usage = answer.usage.unwrap_or_default().to_usage();
    let content = match text {
        Some(text) => Some(text),
        None if tool_calls.is_empty() => Some(String::new()),
        None => None,
    };
    let id = format!("chatcmpl-{request_id}");
    let completion = Completion {
        id: &id,
        object: "chat.completion",
        created,
        model: alias_model,
        choices: [Choice {
            index: 0,
            message: MessageOut {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish_reason(answer.stop_reason.as_deref()),
        }],
        usage: UsageOut::from(usage),
    };
    let json = serde_json::to_vec(&completion).map_err(|_| not_an_answer())?;
    Ok((json, usage))
}

fn not_an_answer() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamError,
        "The upstream answered with a body that is not a Bedrock Converse answer.",
    )
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
    /// token; cache reads are the cached ones.
    pub fn to_usage(self) -> Usage {
        Usage {
            prompt_tokens: self
                .input_tokens
                .saturating_add(self.cache_read_input_tokens)
                .saturating_add(self.cache_write_input_tokens),
            completion_tokens: self.output_tokens,
            cached_tokens: self.cache_read_input_tokens,
            images: 0,
        }
    }
}

/// OpenAI's `usage` object.
#[derive(Debug, Serialize)]
pub(super) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

impl From<Usage> for UsageOut {
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
            prompt_tokens_details: PromptDetails {
                cached_tokens: usage.cached_tokens,
            },
        }
    }
}

/// JSON text without the whitespace outside strings (key order and numbers untouched).
pub(super) fn compact(raw: &RawValue) -> String {
    let text = raw.get();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
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

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: UsageOut,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: Cow<'a, str>,
    arguments: String,
}
