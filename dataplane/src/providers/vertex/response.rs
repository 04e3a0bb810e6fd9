//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`, and the pieces the stream
//! shares: the response's shape, usage, finish reasons.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{classify, ErrorDetail};
use super::ids;
use crate::error::{truncate, ApiError};
use crate::providers::Usage;

/// Translates a `generateContent` answer (HTTP 200) into a `chat.completion` body, with the
/// usage to bill. `model` is `alias_model`; `id` is `chatcmpl-` + Gemini's `responseId`
/// (`request_id` when it has none). A blocked prompt (no candidates, a `blockReason`) is a
/// 400 `content_filter` error.
pub fn translate_response(
    body: &[u8],
    alias_model: &str,
    request_id: &str,
    created: i64,
) -> Result<(Vec<u8>, Usage), ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_a_response());
    }
    let response: GenerateContentResponse<'_> =
        serde_json::from_slice(body).map_err(|_| not_a_response())?;
    if let Some(error) = &response.error {
        return Err(classify(None, error));
    }
    if response.candidates.is_empty() {
        return Err(match response.block_reason() {
            Some(reason) => prompt_blocked(reason),
            None => not_a_response(),
        });
    }
    let usage = response.usage();
    let mut candidates: Vec<&Candidate<'_>> = response.candidates.iter().collect();
    candidates.sort_by_key(|c| c.index);
    let mut calls = 0;
    let choices = candidates
        .into_iter()
        .map(|candidate| {
            let mut text: Option<String> = None;
            let mut tool_calls = Vec::new();
            for part in candidate.parts() {
                if let Some(call) = &part.function_call {
                    tool_calls.push(ToolCallOut {
                        id: ids::encode(
                            call.id.as_deref(),
                            calls,
                            part.thought_signature.as_deref(),
                        ),
                        kind: "function",
                        function: FunctionOut {
                            name: call.name.to_string(),
                            arguments: call.arguments(),
                        },
                    });
                    calls += 1;
                } else if let Some(piece) = part.visible_text() {
                    text.get_or_insert_with(String::new).push_str(piece);
                }
            }
            let finish_reason =
                finish_reason(candidate.finish_reason.as_deref(), !tool_calls.is_empty());
            let content = match text {
                Some(text) => Some(text),
                None if tool_calls.is_empty() => Some(String::new()),
                None => None,
            };
            Choice {
                index: candidate.index,
                message: MessageOut {
                    role: "assistant",
                    content,
                    refusal: None,
                    tool_calls,
                },
                logprobs: None,
                finish_reason,
            }
        })
        .collect();
    let id = match &response.response_id {
        Some(id) => format!("chatcmpl-{id}"),
        None => format!("chatcmpl-{request_id}"),
    };
    let completion = Completion {
        id: &id,
        object: "chat.completion",
        created,
        model: alias_model,
        choices,
        usage: UsageOut::from(usage),
    };
    let json = serde_json::to_vec(&completion).map_err(|_| not_a_response())?;
    Ok((json, usage.usage))
}

fn not_a_response() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamError,
        "The upstream answered with a body that is not a Gemini response.",
    )
}

/// The client's error for a prompt Gemini blocked.
pub(super) fn prompt_blocked(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ContentFilter,
        format!(
            "The prompt was blocked by the provider's safety filters (reason: {}).",
            truncate(reason, 40)
        ),
    )
    .with_param("messages")
}

/// OpenAI's `finish_reason` for a Gemini `finishReason` (`tool_calls` whenever the candidate
/// called a function: Gemini says `STOP` then).
pub(super) fn finish_reason(reason: Option<&str>, called_functions: bool) -> &'static str {
    if called_functions {
        return "tool_calls";
    }
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        // STOP, LANGUAGE, OTHER, MALFORMED_FUNCTION_CALL, … and anything newer.
        _ => "stop",
    }
}

// --- Gemini's answer (only what is read) -----------------------------------------------

/// A `GenerateContentResponse`, whole or one stream event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    pub(super) candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default)]
    pub(super) prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(borrow, default)]
    pub(super) response_id: Option<Cow<'a, str>>,
    /// An error sent in a stream.
    #[serde(borrow, default)]
    pub(super) error: Option<ErrorDetail<'a>>,
}

impl GenerateContentResponse<'_> {
    pub(super) fn block_reason(&self) -> Option<&str> {
        self.prompt_feedback.as_ref()?.block_reason.as_deref()
    }

    fn usage(&self) -> GeminiUsage {
        self.usage_metadata
            .map(GeminiUsage::from)
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate<'a> {
    #[serde(default)]
    pub(super) index: u32,
    #[serde(borrow, default)]
    content: Option<CandidateContent<'a>>,
    #[serde(borrow, default)]
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

impl<'a> Candidate<'a> {
    pub(super) fn parts(&self) -> &[PartOut<'a>] {
        self.content.as_ref().map_or(&[], |c| c.parts.as_slice())
    }
}

#[derive(Deserialize)]
struct CandidateContent<'a> {
    #[serde(borrow, default)]
    parts: Vec<PartOut<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PartOut<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(borrow, default)]
    pub(super) function_call: Option<FunctionCallOut<'a>>,
    #[serde(borrow, default)]
    pub(super) thought_signature: Option<Cow<'a, str>>,
}

impl PartOut<'_> {
    /// The part's answer text (thought summaries are not part of the answer).
    pub(super) fn visible_text(&self) -> Option<&str> {
        if self.thought == Some(true) {
            return None;
        }
        self.text.as_deref()
    }
}

#[derive(Deserialize)]
pub(super) struct FunctionCallOut<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
}

impl FunctionCallOut<'_> {
    /// The arguments as OpenAI's JSON string (`{}` when absent).
    pub(super) fn arguments(&self) -> String {
        match self.args {
            Some(raw) if raw.get() != "null" => compact(raw),
            _ => "{}".to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback<'a> {
    #[serde(borrow, default)]
    block_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

/// Usage in OpenAI's reading, with the reasoning share of the completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct GeminiUsage {
    pub(super) usage: Usage,
    pub(super) reasoning_tokens: u64,
}

impl From<UsageMetadata> for GeminiUsage {
    /// Prompt = `promptTokenCount` (cached tokens included); completion =
    /// `candidatesTokenCount + thoughtsTokenCount` (thinking is billed as output).
    fn from(metadata: UsageMetadata) -> Self {
        let thoughts = metadata.thoughts_token_count.unwrap_or(0);
        Self {
            usage: Usage {
                prompt_tokens: metadata.prompt_token_count.unwrap_or(0),
                completion_tokens: metadata
                    .candidates_token_count
                    .unwrap_or(0)
                    .saturating_add(thoughts),
                cached_tokens: metadata.cached_content_token_count.unwrap_or(0),
                images: 0,
            },
            reasoning_tokens: thoughts,
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
    completion_tokens_details: CompletionDetails,
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

impl From<GeminiUsage> for UsageOut {
    fn from(gemini: GeminiUsage) -> Self {
        let usage = gemini.usage;
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
            prompt_tokens_details: PromptDetails {
                cached_tokens: usage.cached_tokens,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: gemini.reasoning_tokens,
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

// --- the OpenAI answer -----------------------------------------------------------------

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<Choice>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct Choice {
    index: u32,
    message: MessageOut,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut>,
}

#[derive(Serialize)]
struct ToolCallOut {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut,
}

#[derive(Serialize)]
struct FunctionOut {
    name: String,
    arguments: String,
}
