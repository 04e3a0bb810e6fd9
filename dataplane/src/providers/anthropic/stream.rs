//! Anthropic's SSE stream → OpenAI `chat.completion.chunk` events.
//!
//! Anthropic frames events with `event:` lines and a JSON `data:` line whose `type` names the
//! event; the translator reads only the `type` and the fields it needs. Input usage arrives in
//! `message_start`, the cumulative output usage in `message_delta`. Tool calls are numbered
//! from 0 over `tool_use` blocks only (Anthropic's block index also counts text blocks).

use std::borrow::Cow;

use bytes::BytesMut;
use omg_shared::error::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{classify, ErrorDetail};
use super::response::{compact, finish_reason, AnthropicUsage};
use crate::providers::chat::response::UsageOut;
use crate::providers::chat::stream::{ChunkWriter, ToolBlocks};
use crate::providers::{StreamFault, StreamState, StreamTranslator};
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

impl From<StreamError> for StreamFault {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::EventTooLarge => StreamFault::OVERSIZED,
            StreamError::Malformed => StreamFault::MALFORMED,
        }
    }
}

/// Translates one Anthropic stream into OpenAI chunks. One per request.
#[derive(Debug)]
pub struct AnthropicStream {
    splitter: SseSplitter,
    /// Names the chunks `chatcmpl-<request_id>` unless `message_start` (before the first
    /// chunk) carries Anthropic's id.
    writer: ChunkWriter,
    usage: Option<AnthropicUsage>,
    tools: ToolBlocks,
    started: bool,
    finish_sent: bool,
}

impl AnthropicStream {
    /// A translator for one request: `alias_model` is echoed as `model`, `request_id` names the
    /// chunks (`chatcmpl-<request_id>`) only if Anthropic's `message_start` carries no id,
    /// `include_usage` is the client's own `stream_options.include_usage`.
    pub fn new(alias_model: &str, request_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            splitter: SseSplitter::default(),
            writer: ChunkWriter::new(alias_model, request_id, created, include_usage),
            usage: None,
            tools: ToolBlocks::default(),
            started: false,
            finish_sent: false,
        }
    }

    /// Feeds upstream bytes, split anywhere, and appends the OpenAI events they complete to
    /// `out`. After the stream's end (`[DONE]` or an in-band error) further bytes are ignored.
    /// On `Err`, `out` holds what was translated before the bad event: send it, then end the
    /// stream with the error; the translator takes nothing more.
    pub fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamError> {
        if !self.writer.is_open() {
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
            if !self.writer.is_open() {
                self.splitter.clear();
                break;
            }
        }
        Ok(())
    }

    fn broken(&mut self, error: StreamError) -> StreamError {
        self.writer.break_off();
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
                self.report_usage(message.usage.unwrap_or_default());
                if !self.started {
                    if let Some(id) = message.id {
                        self.writer.name(&id);
                    }
                    self.start(out);
                }
            }
            "content_block_start" => {
                let index = event.index.ok_or(StreamError::Malformed)?;
                let block = event.content_block.ok_or(StreamError::Malformed)?;
                self.block_start(index, block, out)?;
            }
            "content_block_delta" => {
                let delta = event.delta.ok_or(StreamError::Malformed)?;
                self.block_delta(event.index, delta, out);
            }
            "content_block_stop" => self.tools.close(&mut self.writer, out, event.index),
            "message_delta" => {
                if let Some(usage) = event.usage {
                    self.report_usage(usage);
                }
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.start(out);
                    self.finish(Some(&reason), out);
                }
            }
            "message_stop" => {
                self.start(out);
                self.finish(None, out);
                let usage = self.usage.unwrap_or_default().to_usage();
                self.writer.end(out, UsageOut::from(usage));
            }
            "error" => {
                let error = classify(None, &event.error.unwrap_or_default());
                self.writer.fail(out, error);
            }
            _ => {} // `ping`, and event types newer than this adapter
        }
        Ok(())
    }

    /// `content_block_start`: text opens content, `tool_use` a tool call.
    fn block_start(
        &mut self,
        index: u64,
        block: BlockStart<'_>,
        out: &mut BytesMut,
    ) -> Result<(), StreamError> {
        self.start(out);
        match block.kind.as_ref() {
            "text" => {
                let text = block.text.as_deref().unwrap_or_default();
                self.writer.text(out, 0, text);
            }
            "tool_use" => {
                let (Some(id), Some(name)) = (block.id, block.name) else {
                    return Err(StreamError::Malformed);
                };
                let input = block.input.map(compact).filter(|i| i != "{}");
                let call = (id.as_ref(), name.as_ref());
                self.tools.open(&mut self.writer, out, index, call, input);
            }
            _ => {} // thinking, server tools: not part of the OpenAI answer
        }
        Ok(())
    }

    /// `content_block_delta`: text, or a fragment of a tool call's arguments.
    fn block_delta(&mut self, index: Option<u64>, delta: EventDelta<'_>, out: &mut BytesMut) {
        match delta.kind.as_deref() {
            Some("text_delta") => {
                self.start(out);
                let text = delta.text.as_deref().unwrap_or_default();
                self.writer.text(out, 0, text);
            }
            Some("input_json_delta") => {
                let partial = delta.partial_json.as_deref().unwrap_or_default();
                // Fragments of server tool blocks have no OpenAI tool call.
                self.tools.arguments(&mut self.writer, out, index, partial);
            }
            _ => {} // thinking, signatures, citations
        }
    }

    /// Adds what an event reports to the usage so far: the prompt side from `message_start`,
    /// the completion side from the latest `message_delta` (Anthropic reports a token or so
    /// until then: while the stream is not done, the glue takes the larger of it and the
    /// estimate).
    fn report_usage(&mut self, reported: AnthropicUsage) {
        let usage = self.usage.get_or_insert_with(AnthropicUsage::default);
        usage.update(reported);
        let usage = usage.to_usage();
        self.writer.report_usage(usage);
    }

    /// Sends the role chunk once, before anything else.
    fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            self.writer.role(out, 0);
        }
    }

    /// Sends the `finish_reason` chunk once (`stop` when Anthropic gave no reason).
    fn finish(&mut self, stop_reason: Option<&str>, out: &mut BytesMut) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.writer.finish(out, 0, finish_reason(stop_reason));
        }
    }
}

impl StreamTranslator for AnthropicStream {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        AnthropicStream::push(self, bytes, out).map_err(StreamFault::from)
    }

    fn state(&self) -> &StreamState {
        self.writer.state()
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
