//! OpenAI `chat.completion.chunk` events, serialized from borrowed parts: [`ChunkWriter`]
//! writes them for a provider's stream translator (and counts what it wrote), [`ToolBlocks`]
//! numbers the tool calls of providers that stream them as content blocks.

use bytes::{BufMut, BytesMut};
use omg_shared::error::OpenAiErrorBody;
use omg_shared::tokens::estimate_tokens;
use serde::Serialize;

use super::response::{completion_id, UsageOut};
use crate::error::ApiError;
use crate::providers::{StreamState, Usage};

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

/// Writes one answer's chunks (`data: {chunk}\n\n`), named and dated alike, with `usage:
/// null` on each when the client asked for usage, and its end (`[DONE]` or an in-band
/// error); keeps the stream's [`StreamState`]: whether it ended, whether content was written,
/// the completion tokens written (estimated) and the usage its translator reports.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    model: String,
    id: String,
    created: i64,
    include_usage: bool,
    state: StreamState,
    /// The translator could not read the provider's stream; nothing more is translated.
    broken: bool,
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
            state: StreamState::default(),
            broken: false,
        }
    }

    /// Names the chunks after the provider's answer id (`chatcmpl-<id>`).
    pub(crate) fn name(&mut self, provider_id: &str) {
        self.id = completion_id(Some(provider_id), "");
    }

    /// The stream's state so far.
    pub(crate) fn state(&self) -> &StreamState {
        &self.state
    }

    /// Records the usage the provider reported so far.
    pub(crate) fn report_usage(&mut self, usage: Usage) {
        self.state.usage = Some(usage);
    }

    /// Whether the stream goes on (neither ended nor broken).
    pub(crate) fn is_open(&self) -> bool {
        !(self.state.done || self.state.upstream_failed || self.broken)
    }

    /// The translator cannot read the provider's stream: nothing more is translated.
    pub(crate) fn break_off(&mut self) {
        self.broken = true;
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
        self.state.saw_content = true;
        self.state.estimated_completion_tokens += estimate_tokens(text);
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
        self.state.saw_content = true;
        self.state.estimated_completion_tokens += estimate_tokens(arguments);
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
        self.state.estimated_completion_tokens += estimate_tokens(arguments);
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
        self.state.done = true;
    }

    /// The in-band error that ends a stream the provider failed (no `[DONE]`).
    pub(crate) fn fail(&mut self, out: &mut BytesMut, error: ApiError) {
        let body = OpenAiErrorBody::new(error.code, error.message, error.param);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body.to_json());
        out.extend_from_slice(b"\n\n");
        self.state.upstream_failed = true;
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
