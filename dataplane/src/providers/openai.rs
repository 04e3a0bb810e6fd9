//! OpenAI and OpenAI-compatible upstreams: the wire format is already OpenAI's, so the adapter
//! only meters. Non-streamed bodies pass through unchanged after their `usage` is read;
//! streams pass through event by event, with the usage chunk the gateway forced upstream
//! removed when the client did not ask for it.

use std::borrow::Cow;

use omg_shared::tokens::estimate_tokens;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::Usage;
use crate::sse::event_data;

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<UsageJson> for Usage {
    fn from(usage: UsageJson) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

/// Reads `usage` from a non-streamed response body. `Err` when the body is not a JSON object.
pub fn response_usage(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        usage: Option<UsageJson>,
    }
    serde_json::from_slice::<Probe>(body).map(|probe| probe.usage.map(Usage::from))
}

/// What to do with one upstream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// Send it to the client unchanged.
    Forward,
    /// Leave it out (the usage chunk the client did not ask for).
    Drop,
}

/// Meters an OpenAI-format stream, event by event.
#[derive(Debug, Default)]
pub struct StreamMeter {
    client_wants_usage: bool,
    /// Usage reported by the upstream.
    pub usage: Option<Usage>,
    /// Estimated completion tokens from the content seen so far.
    pub estimated_completion_tokens: u64,
    /// `data: [DONE]` was seen.
    pub done: bool,
    /// A chunk with choices (content) was seen.
    pub saw_choices: bool,
    /// The upstream sent an in-band error event.
    pub upstream_error: bool,
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceProbe<'a>>>,
    #[serde(default)]
    usage: Option<UsageJson>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    /// Legacy completions stream `text`.
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallProbe<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallProbe<'a> {
    #[serde(default, borrow)]
    function: Option<FunctionProbe<'a>>,
}

#[derive(Deserialize)]
struct FunctionProbe<'a> {
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

impl StreamMeter {
    /// A meter; `client_wants_usage` is the client's own `stream_options.include_usage`.
    pub fn new(client_wants_usage: bool) -> Self {
        Self {
            client_wants_usage,
            ..Self::default()
        }
    }

    /// Inspects one whole event and says whether to forward it.
    pub fn process(&mut self, event: &[u8]) -> EventAction {
        let Some(data) = event_data(event) else {
            return EventAction::Forward; // comments and keep-alives
        };
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.done = true;
            return EventAction::Forward;
        }
        let Ok(chunk) = serde_json::from_slice::<ChunkProbe<'_>>(trimmed) else {
            // Not ours to judge: forward it and let the client's parser decide.
            return EventAction::Forward;
        };
        if chunk.error.is_some() {
            self.upstream_error = true;
            return EventAction::Forward;
        }
        let choices = chunk.choices.unwrap_or_default();
        for choice in &choices {
            if let Some(text) = &choice.text {
                self.estimated_completion_tokens += estimate_tokens(text);
            }
            if let Some(delta) = &choice.delta {
                if let Some(content) = &delta.content {
                    self.estimated_completion_tokens += estimate_tokens(content);
                }
                for call in delta.tool_calls.iter().flatten() {
                    if let Some(arguments) =
                        call.function.as_ref().and_then(|f| f.arguments.as_ref())
                    {
                        self.estimated_completion_tokens += estimate_tokens(arguments);
                    }
                }
            }
        }
        if !choices.is_empty() {
            self.saw_choices = true;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
            if choices.is_empty() && !self.client_wants_usage {
                return EventAction::Drop;
            }
        }
        EventAction::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_from_json() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(
            response_usage(body).ok().flatten(),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                cached_tokens: 2
            })
        );
        assert_eq!(response_usage(br#"{"data":[]}"#).ok().flatten(), None);
        assert!(response_usage(b"<html>").is_err());
    }

    #[test]
    fn strips_the_usage_chunk_only_when_not_asked() {
        let usage_chunk =
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
        let content = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello world\"}}],\"usage\":null}\n\n";
        let mut meter = StreamMeter::new(false);
        assert_eq!(meter.process(content), EventAction::Forward);
        assert_eq!(meter.estimated_completion_tokens, 3);
        assert_eq!(meter.process(usage_chunk), EventAction::Drop);
        assert_eq!(meter.process(b"data: [DONE]\n\n"), EventAction::Forward);
        assert!(meter.done);
        assert_eq!(meter.usage.map(|u| u.completion_tokens), Some(2));
        let mut asked = StreamMeter::new(true);
        assert_eq!(asked.process(usage_chunk), EventAction::Forward);
    }

    #[test]
    fn notices_in_band_errors_and_ignores_comments() {
        let mut meter = StreamMeter::new(false);
        assert_eq!(meter.process(b": ping\n\n"), EventAction::Forward);
        assert_eq!(
            meter.process(b"data: {\"error\":{\"message\":\"x\"}}\n\n"),
            EventAction::Forward
        );
        assert!(meter.upstream_error);
    }
}
