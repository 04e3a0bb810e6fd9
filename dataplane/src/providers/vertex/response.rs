//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`, and the pieces the stream
//! shares: the response's shape, usage, finish reasons.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{classify, ErrorDetail};
use super::ids;
use crate::error::{truncate, ApiError};
use crate::providers::chat::response::{
    compact, completion, completion_id, not_an_answer, read_answer, Reply, UsageOut,
};
use crate::providers::Usage;

/// What a `generateContent` answer is, in errors.
const ANSWER: &str = "a Gemini response";

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
    let response: GenerateContentResponse<'_> = read_answer(body, ANSWER)?;
    if let Some(error) = &response.error {
        return Err(classify(None, error));
    }
    if response.candidates.is_empty() {
        return Err(match response.block_reason() {
            Some(reason) => prompt_blocked(reason),
            None => not_an_answer(ANSWER),
        });
    }
    let usage = response.usage();
    let mut candidates: Vec<&Candidate<'_>> = response.candidates.iter().collect();
    candidates.sort_by_key(|c| c.index);
    let mut calls = 0;
    let choices = candidates
        .into_iter()
        .map(|candidate| {
            let mut reply = Reply::default();
            for part in candidate.parts() {
                if let Some(call) = &part.function_call {
                    let signature = part.thought_signature.as_deref();
                    let id = ids::encode(call.id.as_deref(), calls, signature);
                    let name = Cow::Borrowed(call.name.as_ref());
                    reply.tool_call(Cow::Owned(id), name, call.arguments());
                    calls += 1;
                } else if let Some(piece) = part.visible_text() {
                    reply.text(piece);
                }
            }
            let finish = finish_reason(candidate.finish_reason.as_deref(), reply.calls_tools());
            reply.choice(candidate.index, finish)
        })
        .collect::<Vec<_>>();
    let id = completion_id(response.response_id.as_deref(), request_id);
    let json = completion(&id, created, alias_model, &choices, UsageOut::from(usage))
        .map_err(|_| not_an_answer(ANSWER))?;
    Ok((json, usage.usage))
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
                cache_write_tokens: 0,
                images: 0,
            },
            reasoning_tokens: thoughts,
        }
    }
}

impl From<GeminiUsage> for UsageOut {
    fn from(gemini: GeminiUsage) -> Self {
        UsageOut::with_reasoning(gemini.usage, gemini.reasoning_tokens)
    }
}
