//! ConverseStream's event stream → OpenAI `chat.completion.chunk` events.
//!
//! Frames are AWS event-stream messages ([`super::eventstream`]); `:event-type` names the
//! event and the payload is its JSON: `messageStart`, `contentBlockStart` (tool calls),
//! `contentBlockDelta` (`text` or `toolUse.input`, a partial JSON string),
//! `contentBlockStop`, `messageStop` (`stopReason`) and then `metadata` (`usage`): the usage
//! arrives **after** `messageStop`, so the finish chunk goes out at `messageStop` and the
//! usage chunk and `[DONE]` wait for `metadata`. An exception frame (`:message-type:
//! exception`) becomes an in-band OpenAI error. Tool calls are numbered from 0 over tool
//! blocks only (Converse's block index also counts text blocks).

use std::borrow::Cow;

use bytes::BytesMut;
use omg_shared::error::ErrorCode;
use serde::Deserialize;

use super::error::map_exception;
use super::eventstream::{Decoder, FrameError, Message};
use super::response::{finish_reason, BedrockUsage};
use crate::providers::chat::response::UsageOut;
use crate::providers::chat::stream::{ChunkWriter, ToolBlocks};
use crate::providers::{StreamFault, StreamState, StreamTranslator};

/// A frame failed its checksum: the stream cannot be trusted any further.
pub const CORRUPT: StreamFault = StreamFault {
    kind: "upstream_protocol",
    code: ErrorCode::UpstreamError,
    message: "The upstream sent a corrupted stream frame (checksum mismatch).",
};

/// A frame of impossible size or with broken headers.
pub const BAD_FRAME: StreamFault = StreamFault {
    kind: "upstream_protocol",
    code: ErrorCode::UpstreamError,
    message: "The upstream sent a malformed stream frame.",
};

/// Translates one ConverseStream answer into OpenAI chunks. One per request.
#[derive(Debug)]
pub struct ConverseStream {
    decoder: Decoder,
    writer: ChunkWriter,
    usage: Option<BedrockUsage>,
    tools: ToolBlocks,
    started: bool,
    /// `messageStop` arrived (its finish chunk was sent).
    stopped: bool,
}

impl ConverseStream {
    /// A translator for one request: `alias_model` is echoed as `model`, the chunks are named
    /// `chatcmpl-<request_id>`, `include_usage` is the client's own
    /// `stream_options.include_usage`.
    pub fn new(alias_model: &str, request_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            decoder: Decoder::default(),
            writer: ChunkWriter::new(alias_model, request_id, created, include_usage),
            usage: None,
            tools: ToolBlocks::default(),
            started: false,
            stopped: false,
        }
    }

    /// Feeds upstream bytes, split anywhere, and appends the OpenAI events they complete to
    /// `out`. After the stream's end further bytes are ignored. On `Err`, `out` holds what was
    /// translated before the bad frame; the translator takes nothing more.
    fn push_frames(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        if !self.writer.is_open() {
            return Ok(());
        }
        let mut messages = Vec::new();
        let decoded = self.decoder.push_into(bytes, &mut messages);
        // The messages before a bad frame are translated first.
        for message in messages {
            if let Err(fault) = self.message(&message, out) {
                return Err(self.broken(fault));
            }
            if !self.writer.is_open() {
                return Ok(());
            }
        }
        match decoded {
            Ok(()) => Ok(()),
            Err(FrameError::Checksum) => Err(self.broken(CORRUPT)),
            Err(FrameError::Size | FrameError::Headers) => Err(self.broken(BAD_FRAME)),
        }
    }

    fn broken(&mut self, fault: StreamFault) -> StreamFault {
        self.writer.break_off();
        self.decoder = Decoder::default();
        fault
    }

    fn message(&mut self, message: &Message, out: &mut BytesMut) -> Result<(), StreamFault> {
        match message.header(":message-type") {
            Some("event") | None => {}
            Some("exception" | "error") => {
                let kind = message
                    .header(":exception-type")
                    .or_else(|| message.header(":error-code"))
                    .unwrap_or("exception");
                self.writer.fail(out, map_exception(kind, &message.payload));
                return Ok(());
            }
            Some(_) => return Ok(()),
        }
        let Some(kind) = message.header(":event-type") else {
            return Err(StreamFault::MALFORMED);
        };
        let payload = message.payload.as_ref();
        let event: Event<'_> = if payload.trim_ascii().is_empty() {
            Event::default()
        } else {
            serde_json::from_slice(payload).map_err(|_| StreamFault::MALFORMED)?
        };
        match kind {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                let index = event.content_block_index.ok_or(StreamFault::MALFORMED)?;
                self.start(out);
                if let Some(tool) = event.start.and_then(|start| start.tool_use) {
                    let call = (tool.tool_use_id.as_ref(), tool.name.as_ref());
                    self.tools.open(&mut self.writer, out, index, call, None);
                }
            }
            "contentBlockDelta" => {
                let delta = event.delta.ok_or(StreamFault::MALFORMED)?;
                if let Some(text) = delta.text {
                    self.start(out);
                    self.writer.text(out, 0, &text);
                } else if let Some(tool) = delta.tool_use {
                    let fragment = tool.input.as_deref().unwrap_or_default();
                    let block = event.content_block_index;
                    self.tools.arguments(&mut self.writer, out, block, fragment);
                }
                // reasoningContent, citations: not part of the OpenAI answer.
            }
            "contentBlockStop" => {
                let block = event.content_block_index;
                self.tools.close(&mut self.writer, out, block);
            }
            "messageStop" => {
                self.start(out);
                if !self.stopped {
                    self.stopped = true;
                    let reason = finish_reason(event.stop_reason.as_deref());
                    self.writer.finish(out, 0, reason);
                }
                self.finish_when_complete(out);
            }
            "metadata" => {
                let usage = event.usage.unwrap_or_default();
                self.usage = Some(usage);
                self.writer.report_usage(usage.to_usage());
                self.finish_when_complete(out);
            }
            _ => {} // event types newer than this adapter
        }
        Ok(())
    }

    /// Once both `messageStop` and `metadata` arrived: the usage chunk (if asked) and
    /// `[DONE]`.
    fn finish_when_complete(&mut self, out: &mut BytesMut) {
        let Some(usage) = self.usage else { return };
        if !self.stopped {
            return;
        }
        self.writer.end(out, UsageOut::from(usage.to_usage()));
    }

    /// Sends the role chunk once, before anything else.
    fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            self.writer.role(out, 0);
        }
    }
}

impl StreamTranslator for ConverseStream {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        self.push_frames(bytes, out)
    }

    fn state(&self) -> &StreamState {
        self.writer.state()
    }
}

// --- ConverseStream events (only what is read) -----------------------------------------

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(default)]
    content_block_index: Option<u64>,
    #[serde(borrow, default)]
    start: Option<BlockStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<BlockDelta<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<BedrockUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    #[serde(borrow, default)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_use: Option<ToolInput<'a>>,
}

#[derive(Deserialize)]
struct ToolInput<'a> {
    #[serde(borrow, default)]
    input: Option<Cow<'a, str>>,
}
