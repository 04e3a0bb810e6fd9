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

use bytes::{BufMut, BytesMut};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use omg_shared::tokens::estimate_tokens;
use serde::Deserialize;

use super::chunk::{Chunk, ChunkChoice, Delta, FunctionDelta, ToolDelta};
use super::error::map_exception;
use super::eventstream::{Decoder, FrameError, Message};
use super::response::{finish_reason, BedrockUsage, UsageOut};
use crate::providers::{StreamFault, Usage};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// `messageStop` and `metadata` translated, `[DONE]` sent.
    Done,
    /// Bedrock sent an exception; the in-band error was sent.
    Failed,
    /// `push` returned an error; nothing more is translated.
    Broken,
}

/// A tool block being streamed.
#[derive(Debug)]
struct ToolBlock {
    /// Converse's content-block index.
    block: u64,
    /// OpenAI's tool-call index.
    index: usize,
    /// A non-empty `arguments` fragment was sent.
    sent_arguments: bool,
}

/// Translates one ConverseStream answer into OpenAI chunks. One per request.
#[derive(Debug)]
pub struct StreamTranslator {
    decoder: Decoder,
    model: String,
    id: String,
    created: i64,
    include_usage: bool,
    usage: Option<BedrockUsage>,
    tools: Vec<ToolBlock>,
    estimated_completion_tokens: u64,
    started: bool,
    /// `messageStop` arrived (its finish chunk was sent).
    stopped: bool,
    saw_content: bool,
    state: State,
}

impl StreamTranslator {
    /// A translator for one request: `alias_model` is echoed as `model`, the chunks are named
    /// `chatcmpl-<request_id>`, `include_usage` is the client's own
    /// `stream_options.include_usage`.
    pub fn new(alias_model: &str, request_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            decoder: Decoder::default(),
            model: alias_model.to_owned(),
            id: format!("chatcmpl-{request_id}"),
            created,
            include_usage,
            usage: None,
            tools: Vec::new(),
            estimated_completion_tokens: 0,
            started: false,
            stopped: false,
            saw_content: false,
            state: State::Open,
        }
    }

    /// Feeds upstream bytes, split anywhere, and appends the OpenAI events they complete to
    /// `out`. After the stream's end further bytes are ignored. On `Err`, `out` holds what was
    /// translated before the bad frame; the translator takes nothing more.
    pub fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        if self.state != State::Open {
            return Ok(());
        }
        let mut messages = Vec::new();
        let decoded = self.decoder.push_into(bytes, &mut messages);
        // The messages before a bad frame are translated first.
        for message in messages {
            if let Err(fault) = self.message(&message, out) {
                return Err(self.broken(fault));
            }
            if self.state != State::Open {
                return Ok(());
            }
        }
        match decoded {
            Ok(()) => Ok(()),
            Err(FrameError::Checksum) => Err(self.broken(CORRUPT)),
            Err(FrameError::Size | FrameError::Headers) => Err(self.broken(BAD_FRAME)),
        }
    }

    /// Usage reported so far (`None` before `metadata`).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(BedrockUsage::to_usage)
    }

    /// Completion tokens estimated from the text and tool arguments streamed so far.
    pub fn estimated_completion_tokens(&self) -> u64 {
        self.estimated_completion_tokens
    }

    /// `messageStop` and `metadata` arrived: the answer is complete and `[DONE]` was sent.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bedrock sent an exception; the in-band error was sent (no `[DONE]`).
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// A chunk with content (text or a tool call) was sent: the first token, for TTFT.
    pub fn saw_content(&self) -> bool {
        self.saw_content
    }

    fn broken(&mut self, fault: StreamFault) -> StreamFault {
        self.state = State::Broken;
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
                let error = map_exception(kind, &message.payload);
                let body = OpenAiErrorBody::new(error.code, error.message, error.param);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&body.to_json());
                out.extend_from_slice(b"\n\n");
                self.state = State::Failed;
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
                    let block = ToolBlock {
                        block: index,
                        index: self.tools.len(),
                        sent_arguments: false,
                    };
                    let delta = ToolDelta {
                        index: block.index,
                        id: Some(&tool.tool_use_id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&tool.name),
                            arguments: "",
                        },
                    };
                    self.tools.push(block);
                    self.saw_content = true;
                    self.chunk(out, Delta::tool(delta), None);
                }
            }
            "contentBlockDelta" => {
                let delta = event.delta.ok_or(StreamFault::MALFORMED)?;
                if let Some(text) = delta.text {
                    self.start(out);
                    self.text(&text, out);
                } else if let Some(tool) = delta.tool_use {
                    if let Some(i) = self.tool_at(event.content_block_index) {
                        self.arguments(i, tool.input.as_deref().unwrap_or_default(), out);
                    }
                }
                // reasoningContent, citations: not part of the OpenAI answer.
            }
            "contentBlockStop" => {
                if let Some(i) = self.tool_at(event.content_block_index) {
                    if !self.tools[i].sent_arguments {
                        // OpenAI clients parse `arguments`; never leave it empty.
                        self.arguments(i, "{}", out);
                    }
                }
            }
            "messageStop" => {
                self.start(out);
                if !self.stopped {
                    self.stopped = true;
                    let delta = Delta {
                        role: None,
                        content: None,
                        tool_calls: None,
                    };
                    let reason = finish_reason(event.stop_reason.as_deref());
                    self.chunk(out, delta, Some(reason));
                }
                self.finish_when_complete(out);
            }
            "metadata" => {
                self.usage = Some(event.usage.unwrap_or_default());
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
        if self.include_usage {
            self.frame(out, &[], Some(Some(UsageOut::from(usage.to_usage()))));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.state = State::Done;
    }

    /// Sends the role chunk once, before anything else.
    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
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

    /// The position in `tools` of the tool block with Converse index `block`.
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
            id: &self.id,
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
