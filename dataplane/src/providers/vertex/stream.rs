//! Gemini's SSE stream (`streamGenerateContent?alt=sse`) → OpenAI `chat.completion.chunk`
//! events.
//!
//! Every `data:` event is a whole `GenerateContentResponse` carrying only the new parts. There
//! is no terminal event: the stream ends when the upstream closes it. So the finish chunk of
//! a candidate goes out when its `finishReason` arrives, and the usage chunk and `[DONE]` when
//! the glue reports the clean end of the body ([`StreamTranslator::finish`]) after at least
//! one candidate finished. `usageMetadata` may repeat; the last one wins.

use bytes::{BufMut, BytesMut};
use omg_shared::error::OpenAiErrorBody;
use omg_shared::tokens::estimate_tokens;
use serde::Serialize;

use super::error::classify;
use super::ids;
use super::response::{
    finish_reason, prompt_blocked, GeminiUsage, GenerateContentResponse, UsageOut,
};
use crate::providers::adapter::StreamFault;
use crate::providers::Usage;
use crate::sse::{event_data, SseSplitter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The end was written (`[DONE]`).
    Done,
    /// Gemini sent an error (or blocked the prompt); the in-band error was written.
    Failed,
    /// `push` returned an error; nothing more is translated.
    Broken,
}

/// One OpenAI choice (one Gemini candidate) being streamed.
#[derive(Debug, Default)]
struct ChoiceState {
    index: u32,
    tool_calls: usize,
    finished: bool,
}

/// Translates one Gemini stream into OpenAI chunks. One per request.
#[derive(Debug)]
pub struct StreamTranslator {
    splitter: SseSplitter,
    model: String,
    id: String,
    id_set: bool,
    created: i64,
    include_usage: bool,
    usage: Option<GeminiUsage>,
    choices: Vec<ChoiceState>,
    /// Function calls numbered over the whole answer (`call_<n>`).
    calls: usize,
    estimated_completion_tokens: u64,
    saw_content: bool,
    state: State,
}

impl StreamTranslator {
    /// A translator for one request: `alias_model` is echoed as `model`; chunks are named
    /// `chatcmpl-<responseId>` (`chatcmpl-<request_id>` when Gemini gives none);
    /// `include_usage` is the client's own `stream_options.include_usage`.
    pub fn new(alias_model: &str, request_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            splitter: SseSplitter::default(),
            model: alias_model.to_owned(),
            id: format!("chatcmpl-{request_id}"),
            id_set: false,
            created,
            include_usage,
            usage: None,
            choices: Vec::new(),
            calls: 0,
            estimated_completion_tokens: 0,
            saw_content: false,
            state: State::Open,
        }
    }

    /// Feeds upstream bytes, split anywhere, appending the OpenAI events they complete.
    pub fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        if self.state != State::Open {
            return Ok(());
        }
        let events = match self.splitter.push(bytes) {
            Ok(events) => events,
            Err(_) => return Err(self.broken(StreamFault::OVERSIZED)),
        };
        for event in events {
            if let Err(fault) = self.event(&event, out) {
                return Err(self.broken(fault));
            }
            if self.state != State::Open {
                self.splitter.clear();
                break;
            }
        }
        Ok(())
    }

    /// The upstream closed the stream: ends the answer (usage chunk if asked, `[DONE]`) when
    /// a candidate finished; otherwise the answer is incomplete and nothing is written.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.state != State::Open {
            return;
        }
        // A last event without its blank line still counts.
        let rest = self.splitter.remainder().to_vec();
        if !rest.is_empty() {
            self.splitter.clear();
            if self.event(&rest, out).is_err() {
                self.state = State::Broken;
                return;
            }
        }
        if self.state != State::Open || !self.choices.iter().any(|c| c.finished) {
            return;
        }
        if self.include_usage {
            let usage = self.usage.unwrap_or_default();
            self.frame(out, &[], Some(Some(UsageOut::from(usage))));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.state = State::Done;
    }

    /// Usage reported so far (the last `usageMetadata`).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(|usage| usage.usage)
    }

    /// Completion tokens estimated from the text and tool arguments streamed so far.
    pub fn estimated_completion_tokens(&self) -> u64 {
        self.estimated_completion_tokens
    }

    /// The end was written.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Gemini sent an error; the in-band error was written (no `[DONE]`).
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Content (text or a tool call) was written.
    pub fn saw_content(&self) -> bool {
        self.saw_content
    }

    fn broken(&mut self, fault: StreamFault) -> StreamFault {
        self.state = State::Broken;
        self.splitter.clear();
        fault
    }

    fn event(&mut self, raw: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        let Some(data) = event_data(raw) else {
            return Ok(());
        };
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        if data.first() != Some(&b'{') {
            return Err(StreamFault::MALFORMED);
        }
        let response: GenerateContentResponse<'_> =
            serde_json::from_slice(data).map_err(|_| StreamFault::MALFORMED)?;
        if let Some(error) = &response.error {
            self.fail(out, classify(None, error));
            return Ok(());
        }
        if !self.id_set {
            self.id_set = true;
            if let Some(id) = &response.response_id {
                self.id = format!("chatcmpl-{id}");
            }
        }
        if let Some(metadata) = response.usage_metadata {
            self.usage = Some(GeminiUsage::from(metadata));
        }
        if response.candidates.is_empty() {
            if let Some(reason) = response.block_reason() {
                self.fail(out, prompt_blocked(reason));
            }
            return Ok(());
        }
        for candidate in &response.candidates {
            let at = self.choice(candidate.index, out);
            for part in candidate.parts() {
                if let Some(call) = &part.function_call {
                    let id = ids::encode(
                        call.id.as_deref(),
                        self.calls,
                        part.thought_signature.as_deref(),
                    );
                    self.calls += 1;
                    let arguments = call.arguments();
                    self.estimated_completion_tokens += estimate_tokens(&arguments);
                    self.saw_content = true;
                    let delta = Delta {
                        tool_calls: Some([ToolDelta {
                            index: self.choices[at].tool_calls,
                            id: &id,
                            kind: "function",
                            function: FunctionDelta {
                                name: &call.name,
                                arguments: &arguments,
                            },
                        }]),
                        ..Delta::default()
                    };
                    self.choices[at].tool_calls += 1;
                    self.chunk(out, candidate.index, delta, None);
                } else if let Some(text) = part.visible_text().filter(|t| !t.is_empty()) {
                    self.saw_content = true;
                    self.estimated_completion_tokens += estimate_tokens(text);
                    let delta = Delta {
                        content: Some(text),
                        ..Delta::default()
                    };
                    self.chunk(out, candidate.index, delta, None);
                }
            }
            if let Some(reason) = candidate.finish_reason.as_deref() {
                if !self.choices[at].finished {
                    self.choices[at].finished = true;
                    let reason = finish_reason(Some(reason), self.choices[at].tool_calls > 0);
                    self.chunk(out, candidate.index, Delta::default(), Some(reason));
                }
            }
        }
        Ok(())
    }

    /// The position of choice `index`, sending its role chunk on first sight.
    fn choice(&mut self, index: u32, out: &mut BytesMut) -> usize {
        if let Some(at) = self.choices.iter().position(|c| c.index == index) {
            return at;
        }
        self.choices.push(ChoiceState {
            index,
            ..ChoiceState::default()
        });
        let delta = Delta {
            role: Some("assistant"),
            content: Some(""),
            tool_calls: None,
        };
        self.chunk(out, index, delta, None);
        self.choices.len() - 1
    }

    fn fail(&mut self, out: &mut BytesMut, error: crate::error::ApiError) {
        let body = OpenAiErrorBody::new(error.code, error.message, error.param);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body.to_json());
        out.extend_from_slice(b"\n\n");
        self.state = State::Failed;
    }

    fn chunk(
        &self,
        out: &mut BytesMut,
        index: u32,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
    ) {
        let choice = ChunkChoice {
            index,
            delta,
            logprobs: None,
            finish_reason,
        };
        let usage = self.include_usage.then_some(None);
        self.frame(out, std::slice::from_ref(&choice), usage);
    }

    /// Appends `data: {chunk}\n\n`. `usage`: absent (`None`), `null` or a value.
    fn frame(
        &self,
        out: &mut BytesMut,
        choices: &[ChunkChoice<'_>],
        usage: Option<Option<UsageOut>>,
    ) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        let start = out.len();
        out.extend_from_slice(b"data: ");
        if serde_json::to_writer((&mut *out).writer(), &chunk).is_ok() {
            out.extend_from_slice(b"\n\n");
        } else {
            out.truncate(start);
        }
    }
}

// --- OpenAI chunks ---------------------------------------------------------------------

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: usize,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    name: &'a str,
    arguments: &'a str,
}
