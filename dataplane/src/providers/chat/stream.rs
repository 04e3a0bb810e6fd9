//! OpenAI `chat.completion.chunk` events, serialized from borrowed parts: [`ChunkWriter`]
//! writes them for a provider's stream translator (and counts what it wrote), [`ToolBlocks`]
//! numbers the tool calls of providers that stream them as content blocks.

use bytes::{BufMut, BytesMut};
use omg_shared::error::OpenAiErrorBody;
use omg_shared::tokens::estimate_tokens;
use serde::Serialize;

use super::response::{completion_id, UsageOut};
use crate::error::ApiError;

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

impl<'a> Delta<'a> {
    fn tool(delta: ToolDelta<'a>) -> Self {
        Self {
            tool_calls: Some([delta]),
            ..Self::default()
        }
    }
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// How a translated stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The proper end was written (`[DONE]`).
    Done,
    /// The provider sent an error; the in-band error was written (no `[DONE]`).
    Failed,
    /// The translator could not read the provider's stream; nothing more is translated.
    Broken,
}

/// Writes one answer's chunks (`data: {chunk}\n\n`), named and dated alike, with `usage:
/// null` on each when the client asked for usage, and its end (`[DONE]` or an in-band
/// error); remembers whether content was written and estimates the completion tokens
/// written.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    model: String,
    id: String,
    created: i64,
    include_usage: bool,
    saw_content: bool,
    estimated_completion_tokens: u64,
    phase: Phase,
}

impl ChunkWriter {
    /// `alias_model` is echoed as `model`; chunks are named `chatcmpl-<request_id>` until
    /// [`name`](Self::name); `include_usage` is the client's `stream_options.include_usage`.
    pub(crate) fn new(
        alias_model: &str,
        request_id: &str,
        created: i64,
        include_usage: bool,
    ) -> Self {
        Self {
            model: alias_model.to_owned(),
            id: completion_id(None, request_id),
            created,
            include_usage,
            saw_content: false,
            estimated_completion_tokens: 0,
            phase: Phase::Open,
        }
    }

    /// Names the chunks after the provider's answer id (`chatcmpl-<id>`).
    pub(crate) fn name(&mut self, provider_id: &str) {
        self.id = completion_id(Some(provider_id), "");
    }

    /// Whether the stream goes on (neither ended nor broken).
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the proper end (`[DONE]`) was written.
    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the provider's error was written in band.
    pub(crate) fn failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// The translator cannot read the provider's stream: nothing more is translated.
    pub(crate) fn break_off(&mut self) {
        self.phase = Phase::Broken;
    }

    /// Whether content (text or a tool call) was written: the first token, for TTFT.
    pub(crate) fn saw_content(&self) -> bool {
        self.saw_content
    }

    /// Completion tokens estimated from the text and tool arguments written.
    pub(crate) fn estimated_completion_tokens(&self) -> u64 {
        self.estimated_completion_tokens
    }

    /// The role chunk that opens choice `choice`.
    pub(crate) fn role(&self, out: &mut BytesMut, choice: u32) {
        let delta = Delta {
            role: Some("assistant"),
            content: Some(""),
            tool_calls: None,
        };
        self.chunk(out, choice, delta, None);
    }

    /// A text chunk (nothing for empty text).
    pub(crate) fn text(&mut self, out: &mut BytesMut, choice: u32, text: &str) {
        if text.is_empty() {
            return;
        }
        self.saw_content = true;
        self.estimated_completion_tokens += estimate_tokens(text);
        let delta = Delta {
            content: Some(text),
            ..Delta::default()
        };
        self.chunk(out, choice, delta, None);
    }

    /// The first chunk of tool call `tool` of choice `choice`: its id, name and first
    /// `arguments` (maybe `""`).
    pub(crate) fn tool_call(
        &mut self,
        out: &mut BytesMut,
        (choice, tool): (u32, usize),
        id: &str,
        name: &str,
        arguments: &str,
    ) {
        self.saw_content = true;
        self.estimated_completion_tokens += estimate_tokens(arguments);
        let delta = ToolDelta {
            index: tool,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments,
            },
        };
        self.chunk(out, choice, Delta::tool(delta), None);
    }

    /// A further `arguments` fragment of tool call `tool` (nothing for an empty one).
    pub(crate) fn arguments(
        &mut self,
        out: &mut BytesMut,
        (choice, tool): (u32, usize),
        arguments: &str,
    ) {
        if arguments.is_empty() {
            return;
        }
        self.estimated_completion_tokens += estimate_tokens(arguments);
        let delta = ToolDelta {
            index: tool,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments,
            },
        };
        self.chunk(out, choice, Delta::tool(delta), None);
    }

    /// The chunk with choice `choice`'s `finish_reason`.
    pub(crate) fn finish(&self, out: &mut BytesMut, choice: u32, reason: &'static str) {
        self.chunk(out, choice, Delta::default(), Some(reason));
    }

    /// The proper end: the usage chunk (when the client asked for it), then `[DONE]`.
    pub(crate) fn end(&mut self, out: &mut BytesMut, usage: UsageOut) {
        if self.include_usage {
            self.frame(out, &[], Some(Some(usage)));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.phase = Phase::Done;
    }

    /// The in-band error that ends a stream the provider failed (no `[DONE]`).
    pub(crate) fn fail(&mut self, out: &mut BytesMut, error: ApiError) {
        let body = OpenAiErrorBody::new(error.code, error.message, error.param);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body.to_json());
        out.extend_from_slice(b"\n\n");
        self.phase = Phase::Failed;
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
        // Serializing these plain structs into memory cannot fail; were it to, the chunk is
        // left out rather than sent half-written.
        if serde_json::to_writer((&mut *out).writer(), &chunk).is_ok() {
            out.extend_from_slice(b"\n\n");
        } else {
            out.truncate(start);
        }
    }
}

/// The tool calls of a provider that streams them as indexed content blocks (its index also
/// counts text blocks): OpenAI's tool-call index counts tool blocks only, from 0.
#[derive(Debug, Default)]
pub(crate) struct ToolBlocks(Vec<ToolBlock>);

#[derive(Debug)]
struct ToolBlock {
    /// The provider's content-block index.
    block: u64,
    /// A non-empty `arguments` fragment was written.
    sent_arguments: bool,
    /// The block's initial input, compact, sent at its end when no fragment came.
    initial_input: Option<String>,
}

impl ToolBlocks {
    /// A tool call starts in block `block`: writes its first chunk (id and name).
    pub(crate) fn open(
        &mut self,
        writer: &mut ChunkWriter,
        out: &mut BytesMut,
        block: u64,
        (id, name): (&str, &str),
        initial_input: Option<String>,
    ) {
        writer.tool_call(out, (0, self.0.len()), id, name, "");
        self.0.push(ToolBlock {
            block,
            sent_arguments: false,
            initial_input,
        });
    }

    /// An `arguments` fragment for block `block` (ignored if no tool call is open there).
    pub(crate) fn arguments(
        &mut self,
        writer: &mut ChunkWriter,
        out: &mut BytesMut,
        block: Option<u64>,
        fragment: &str,
    ) {
        let Some(i) = self.at(block) else { return };
        if fragment.is_empty() {
            return;
        }
        self.0[i].sent_arguments = true;
        writer.arguments(out, (0, i), fragment);
    }

    /// Block `block` ended: a tool call that got no fragment gets its initial input, else
    /// `{}` (OpenAI clients parse `arguments`; it is never left empty).
    pub(crate) fn close(
        &mut self,
        writer: &mut ChunkWriter,
        out: &mut BytesMut,
        block: Option<u64>,
    ) {
        let Some(i) = self.at(block) else { return };
        if !self.0[i].sent_arguments {
            let input = self.0[i].initial_input.take();
            self.arguments(writer, out, block, input.as_deref().unwrap_or("{}"));
        }
    }

    /// The position of the tool call in block `block`.
    fn at(&self, block: Option<u64>) -> Option<usize> {
        let block = block?;
        self.0.iter().rposition(|tool| tool.block == block)
    }
}
