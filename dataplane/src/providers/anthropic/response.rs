//! Anthropic Messages answer → OpenAI `chat.completion`, and the pieces the stream shares:
//! usage, stop reasons, compact tool arguments.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::map_error;
use crate::error::ApiError;
use crate::providers::Usage;

/// Translates a non-streamed Messages answer (HTTP 200) into a `chat.completion` body for
/// the client, with the usage to bill. `model` in the body is `alias_model` (what the client
/// asked for); `id` is `chatcmpl-` + Anthropic's message id (`request_id` when it has none).
pub fn translate_response(
    body: &[u8],
    alias_model: &str,
    request_id: &str,
    created: i64,
) -> Result<(Vec<u8>, Usage), ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_a_message());
    }
    let message: Message<'_> = serde_json::from_slice(body).map_err(|_| not_a_message())?;
    match message.kind.as_ref() {
        "message" => {}
        "error" => return Err(map_error(502, body)),
        _ => return Err(not_a_message()),
    }
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block.kind.as_ref() {
            "text" => text
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or_default()),
            "tool_use" => {
                let (Some(id), Some(name)) = (block.id, block.name) else {
                    return Err(not_a_message());
                };
                tool_calls.push(ToolCallOut {
                    id,
                    kind: "function",
                    function: FunctionOut {
                        name,
                        arguments: block.input.map_or_else(|| "{}".to_owned(), compact),
                    },
                });
            }
            // `thinking`, `redacted_thinking`, server tool blocks: not part of the answer.
            _ => {}
        }
    }
    let usage = message.usage.unwrap_or_default();
    let content = match text {
        Some(text) => Some(text),
        None if tool_calls.is_empty() => Some(String::new()),
        None => None,
    };
    let id = match &message.id {
        Some(id) => format!("chatcmpl-{id}"),
        None => format!("chatcmpl-{request_id}"),
    };
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
            finish_reason: finish_reason(message.stop_reason.as_deref()),
        }],
        usage: UsageOut::from(usage.to_usage()),
    };
    let json = serde_json::to_vec(&completion).map_err(|_| not_a_message())?;
    Ok((json, usage.to_usage()))
}

fn not_a_message() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamError,
        "The upstream answered with a body that is not an Anthropic message.",
    )
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
    /// token; cache reads are the cached ones.
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
