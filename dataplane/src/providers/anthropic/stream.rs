//! Anthropic's SSE stream → OpenAI `chat.completion.chunk` events.
//!
//! Anthropic frames events with `event:` lines and a JSON `data:` line whose `type` names the
//! event; the translator reads only the `type` and the fields it needs. Input usage arrives in
//! `message_start`, the cumulative output usage in `message_delta`. Tool calls are numbered
//! from 0 over `tool_use` blocks only (Anthropic's block index also counts text blocks).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use omg_shared::tokens::estimate_tokens;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::chunk::{Chunk, ChunkChoice, Delta, FunctionDelta, ToolDelta};
use super::error::{classify, ErrorDetail};
use super::response::{compact, finish_reason, AnthropicUsage, UsageOut};
use crate::providers::Usage;
use crate::sse::{event_data, SseSplitter};

/// Why a stream cannot go on. The glue ends the client's stream with an in-band error made
/// from [`StreamError::code`] and [`StreamError::message`] (no `[DONE]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// An event grew past [`crate::sse::MAX_EVENT_BYTES`].
    #[error("The upstream sent an oversized stream event.")]
    EventTooLarge,
    /// An event's data is not a JSON object with a `type`, or misses what its type needs.
    #[error("The upstream sent a malformed stream event.")]
    Malformed,
}

impl StreamError {
    /// The error code of the in-band error.
    pub fn code(self) -> ErrorCode {
        ErrorCode::UpstreamError
    }

    /// The message of the in-band error.
    pub fn message(self) -> &'static str {
        match self {
            StreamError::EventTooLarge => "The upstream sent an oversized stream event.",
            StreamError::Malformed => "The upstream sent a malformed stream event.",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// `message_stop` translated, `[DONE]` sent.
    Done,
    /// Anthropic sent an `error` event; the in-band error was sent.
    Failed,
    /// `push` returned an error; nothing more is translated.
    Broken,
}

/// A `tool_use` block being streamed.
#[derive(Debug)]
struct ToolBlock {
    /// Anthropic's content-block index.
    block: u64,
    /// OpenAI's tool-call index.
    index: usize,
    /// A non-empty `arguments` fragment was sent.
    sent_arguments: bool,
    /// The block's initial `input`, compact, when it is not `{}`.
    initial_input: Option<String>,
}

/// Translates one Anthropic stream into OpenAI chunks. One per request.
#[derive(Debug)]
pub struct StreamTranslator {
    splitter: SseSplitter,
    model: String,
    fallback_id: String,
    /// `chatcmpl-…`, set by `message_start` (or the fallback); `None` before the first chunk.
    id: Option<String>,
    created: i64,
    include_usage: bool,
    usage: Option<AnthropicUsage>,
    tools: Vec<ToolBlock>,
    estimated_completion_tokens: u64,
    started: bool,
    finish_sent: bool,
    saw_content: bool,
    state: State,
}

impl StreamTranslator {
    /// A translator for one request: `alias_model` is echoed as `model`, `request_id` names the
    /// chunks (`chatcmpl-<request_id>`) only if Anthropic's `message_start` carries no id,
    /// `include_usage` is the client's own `stream_options.include_usage`.
    pub fn new(alias_model: &str, request_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            splitter: SseSplitter::default(),
            model: alias_model.to_owned(),
            fallback_id: format!("chatcmpl-{request_id}"),
            id: None,
            created,
            include_usage,
            usage: None,
            tools: Vec::new(),
            estimated_completion_tokens: 0,
            started: false,
            finish_sent: false,
            saw_content: false,
            state: State::Open,
        }
    }

    /// Feeds upstream bytes, split anywhere, and appends the OpenAI events they complete to
    /// `out`. After the stream's end (`[DONE]` or an in-band error) further bytes are ignored.
    /// On `Err`, `out` holds what was translated before the bad event: send it, then end the
    /// stream with the error; the translator takes nothing more.
    pub fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamError> {
        if self.state != State::Open {
            return Ok(());
        }
        let events = match self.splitter.push(bytes) {
            Ok(events) => events,
            Err(_) => return Err(self.broken(StreamError::EventTooLarge)),
        };
        for event in events {
            if let Err(error) = self.event(&event, out) {
                return Err(self.broken(error));
            }
            if self.state != State::Open {
                self.splitter.clear();
                break;
            }
        }
        Ok(())
    }

    /// Usage reported so far: the prompt side from `message_start`, the completion side from
    /// the latest `message_delta` (Anthropic reports a token or so until then: while
    /// [`is_done`](Self::is_done) is false, take the larger of it and
    /// [`estimated_completion_tokens`](Self::estimated_completion_tokens)). `None` before
    /// `message_start`.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(AnthropicUsage::to_usage)
    }

    /// Completion tokens estimated from the text and tool arguments streamed so far.
    pub fn estimated_completion_tokens(&self) -> u64 {
        self.estimated_completion_tokens
    }

    /// `message_stop` arrived: the answer is complete and `[DONE]` was sent.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Anthropic sent an `error` event; the in-band error was sent (no `[DONE]`).
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// A chunk with content (text or a tool call) was sent: the first token, for TTFT.
    pub fn saw_content(&self) -> bool {
        self.saw_content
    }

    fn broken(&mut self, error: StreamError) -> StreamError {
        self.state = State::Broken;
        self.splitter.clear();
        error
    }

    fn event(&mut self, raw: &[u8], out: &mut BytesMut) -> Result<(), StreamError> {
        let Some(data) = event_data(raw) else {
            return Ok(()); // comments, `event:`-only frames
        };
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        if data.first() != Some(&b'{') {
            return Err(StreamError::Malformed);
        }
        let event: Event<'_> = serde_json::from_slice(data).map_err(|_| StreamError::Malformed)?;
        match event.kind.as_ref() {
            "message_start" => {
                let message = event.message.ok_or(StreamError::Malformed)?;
                self.usage
                    .get_or_insert_with(AnthropicUsage::default)
                    .update(message.usage.unwrap_or_default());
                if !self.started {
                    if let Some(id) = message.id {
                        self.id = Some(format!("chatcmpl-{id}"));
                    }
                    self.start(out);
                }
            }
            "content_block_start" => {
                let index = event.index.ok_or(StreamError::Malformed)?;
                let block = event.content_block.ok_or(StreamError::Malformed)?;
                self.start(out);
                match block.kind.as_ref() {
                    "text" => self.text(block.text.as_deref().unwrap_or_default(), out),
                    "tool_use" => {
                        let (Some(id), Some(name)) = (block.id, block.name) else {
                            return Err(StreamError::Malformed);
                        };
                        let tool = ToolBlock {
                            block: index,
                            index: self.tools.len(),
                            sent_arguments: false,
                            initial_input: block.input.map(compact).filter(|i| i != "{}"),
                        };
                        let delta = ToolDelta {
                            index: tool.index,
                            id: Some(&id),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(&name),
                                arguments: "",
                            },
                        };
                        self.tools.push(tool);
                        self.saw_content = true;
                        self.chunk(out, Delta::tool(delta), None);
                    }
                    _ => {} // thinking, server tools: not part of the OpenAI answer
                }
            }
            "content_block_delta" => {
                let delta = event.delta.ok_or(StreamError::Malformed)?;
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        self.start(out);
                        self.text(delta.text.as_deref().unwrap_or_default(), out);
                    }
                    Some("input_json_delta") => {
                        let partial = delta.partial_json.as_deref().unwrap_or_default();
                        // Fragments of server tool blocks have no OpenAI tool call.
                        if let Some(i) = self.tool_at(event.index) {
                            self.arguments(i, partial, out);
                        }
                    }
                    _ => {} // thinking, signatures, citations
                }
            }
            "content_block_stop" => {
                if let Some(i) = self.tool_at(event.index) {
                    if !self.tools[i].sent_arguments {
                        // OpenAI clients parse `arguments`; never leave it empty.
                        let input = self.tools[i].initial_input.take();
                        self.arguments(i, input.as_deref().unwrap_or("{}"), out);
                    }
                }
            }
            "message_delta" => {
                if let Some(usage) = event.usage {
                    self.usage
                        .get_or_insert_with(AnthropicUsage::default)
                        .update(usage);
                }
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.start(out);
                    self.finish(Some(&reason), out);
                }
            }
            "message_stop" => {
                self.start(out);
                self.finish(None, out);
                if self.include_usage {
                    let usage = self.usage.unwrap_or_default().to_usage();
                    self.frame(out, &[], Some(Some(UsageOut::from(usage))));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.state = State::Done;
            }
            "error" => {
                let error = classify(None, &event.error.unwrap_or_default());
                let body = OpenAiErrorBody::new(error.code, error.message, error.param);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&body.to_json());
                out.extend_from_slice(b"\n\n");
                self.state = State::Failed;
            }
            _ => {} // `ping`, and event types newer than this adapter
        }
        Ok(())
    }

    /// Sends the role chunk once, before anything else.
    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_none() {
            self.id = Some(self.fallback_id.clone());
        }
        let delta = Delta {
            role: Some("assistant"),
            content: Some(""),
            tool_calls: None,
        };
        self.chunk(out, delta, None);
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        self.saw_content = true;
        self.estimated_completion_tokens += estimate_tokens(text);
        let delta = Delta {
            role: None,
            content: Some(text),
            tool_calls: None,
        };
        self.chunk(out, delta, None);
    }

    /// The position in `tools` of the `tool_use` block with Anthropic index `block`.
    fn tool_at(&self, block: Option<u64>) -> Option<usize> {
        let block = block?;
        self.tools.iter().rposition(|tool| tool.block == block)
    }

    fn arguments(&mut self, i: usize, arguments: &str, out: &mut BytesMut) {
        if arguments.is_empty() {
            return;
        }
        self.tools[i].sent_arguments = true;
        self.estimated_completion_tokens += estimate_tokens(arguments);
        let delta = ToolDelta {
            index: self.tools[i].index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments,
            },
        };
        self.chunk(out, Delta::tool(delta), None);
    }

    /// Sends the `finish_reason` chunk once (`stop` when Anthropic gave no reason).
    fn finish(&mut self, stop_reason: Option<&str>, out: &mut BytesMut) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        let delta = Delta {
            role: None,
            content: None,
            tool_calls: None,
        };
        self.chunk(out, delta, Some(finish_reason(stop_reason)));
    }

    fn chunk(&self, out: &mut BytesMut, delta: Delta<'_>, finish_reason: Option<&'static str>) {
        let choice = ChunkChoice {
            index: 0,
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
            id: self.id.as_deref().unwrap_or(&self.fallback_id),
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        let start = out.len();
        out.extend_from_slice(b"data: ");
        // Serializing these plain structs into memory cannot fail; were it to, the chunk is
        // left out rather than sent half-written.
        if serde_json::to_writer((&mut *out).writer(), &chunk).is_ok() {
            out.extend_from_slice(b"\n\n");
        } else {
            out.truncate(start);
        }
    }
}

// --- Anthropic events (only what is read) ----------------------------------------------

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<StartMessage<'a>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    content_block: Option<BlockStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
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

/// `content_block_delta.delta` and `message_delta.delta` in one.
#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}
