//! The OpenAI `chat.completion` answer and `usage` object, serialized from borrowed parts.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::providers::Usage;

/// Reads a provider's 200 JSON answer (`what` it should be: "an Anthropic message").
pub(crate) fn read_answer<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_an_answer(what));
    }
    serde_json::from_slice(body).map_err(|_| not_an_answer(what))
}

/// The error for a 200 answer that is not `what` the provider answers (the attempt failed).
pub(crate) fn not_an_answer(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamError,
        format!("The upstream answered with a body that is not {what}."),
    )
}

/// `chatcmpl-<the provider's answer id>`, else `chatcmpl-<request_id>`.
pub(crate) fn completion_id(provider_id: Option<&str>, request_id: &str) -> String {
    format!("chatcmpl-{}", provider_id.unwrap_or(request_id))
}

/// The assistant's answer, gathered from a provider's: its text and function calls, in
/// order.
#[derive(Default)]
pub(crate) struct Reply<'a> {
    text: Option<String>,
    tool_calls: Vec<ToolCallOut<'a>>,
}

impl<'a> Reply<'a> {
    /// Appends answer text.
    pub(crate) fn text(&mut self, piece: &str) {
        self.text.get_or_insert_with(String::new).push_str(piece);
    }

    /// Adds a call of function `name` with `arguments` (a JSON object as a string).
    pub(crate) fn tool_call(&mut self, id: Cow<'a, str>, name: Cow<'a, str>, arguments: String) {
        self.tool_calls.push(ToolCallOut {
            id,
            kind: "function",
            function: FunctionOut { name, arguments },
        });
    }

    /// Whether the answer calls functions.
    pub(crate) fn calls_tools(&self) -> bool {
        !self.tool_calls.is_empty()
    }

    /// The answer as choice `index`: its text (`""` when it has neither text nor tool calls,
    /// `null` when it only calls tools) and tool calls.
    pub(crate) fn choice(self, index: u32, finish_reason: &'static str) -> Choice<'a> {
        let content = match self.text {
            Some(text) => Some(text),
            None if self.tool_calls.is_empty() => Some(String::new()),
            None => None,
        };
        Choice {
            index,
            message: MessageOut {
                role: "assistant",
                content,
                refusal: None,
                tool_calls: self.tool_calls,
            },
            logprobs: None,
            finish_reason,
        }
    }

    /// A `chat.completion` body with this answer as its only choice; `id` as
    /// [`completion_id`] makes it.
    pub(crate) fn completion(
        self,
        (id, created, model): (&str, i64, &str),
        finish_reason: &'static str,
        usage: Usage,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let choices = [self.choice(0, finish_reason)];
        completion(id, created, model, &choices, UsageOut::from(usage))
    }
}

/// A `chat.completion` body.
pub(crate) fn completion(
    id: &str,
    created: i64,
    model: &str,
    choices: &[Choice<'_>],
    usage: UsageOut,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Completion {
        id,
        object: "chat.completion",
        created,
        model,
        choices,
        usage,
    })
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    usage: UsageOut,
}

/// One choice of an answer.
#[derive(Serialize)]
pub(crate) struct Choice<'a> {
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

/// OpenAI's `usage` object.
#[derive(Debug, Serialize)]
pub(crate) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
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
            completion_tokens_details: None,
        }
    }
}

impl UsageOut {
    /// With `completion_tokens_details.reasoning_tokens` (the thinking share of the
    /// completion).
    pub(crate) fn with_reasoning(usage: Usage, reasoning_tokens: u64) -> Self {
        Self {
            completion_tokens_details: Some(CompletionDetails { reasoning_tokens }),
            ..Self::from(usage)
        }
    }
}

/// JSON text without the whitespace outside strings (key order and numbers untouched).
pub(crate) fn compact(raw: &RawValue) -> String {
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
