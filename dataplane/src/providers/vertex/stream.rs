//! Gemini's SSE stream (`streamGenerateContent?alt=sse`) → OpenAI `chat.completion.chunk`
//! events.
//!
//! Every `data:` event is a whole `GenerateContentResponse` carrying only the new parts. There
//! is no terminal event: the stream ends when the upstream closes it. So the finish chunk of
//! a candidate goes out when its `finishReason` arrives, and the usage chunk and `[DONE]` when
//! the glue reports the clean end of the body ([`GeminiStream::finish`](StreamTranslator::finish)) after at least
//! one candidate finished. `usageMetadata` may repeat; the last one wins.

use bytes::BytesMut;

use super::error::classify;
use super::ids;
use super::response::{finish_reason, prompt_blocked, GeminiUsage, GenerateContentResponse};
use crate::providers::adapter::{StreamFault, StreamState, StreamTranslator};
use crate::providers::chat::response::UsageOut;
use crate::providers::chat::stream::ChunkWriter;
use crate::sse::{event_data, SseSplitter};

/// One OpenAI choice (one Gemini candidate) being streamed.
#[derive(Debug, Default)]
struct ChoiceState {
    index: u32,
    tool_calls: usize,
    finished: bool,
}

/// Translates one Gemini stream into OpenAI chunks. One per request.
#[derive(Debug)]
pub struct GeminiStream {
    splitter: SseSplitter,
    writer: ChunkWriter,
    id_set: bool,
    usage: Option<GeminiUsage>,
    choices: Vec<ChoiceState>,
    /// Function calls numbered over the whole answer (`call_<n>`).
    calls: usize,
}

impl GeminiStream {
    /// A translator for one request: `alias_model` is echoed as `model`; chunks are named
    /// `chatcmpl-<responseId>` (`chatcmpl-<request_id>` when Gemini gives none);
    /// `include_usage` is the client's own `stream_options.include_usage`.
    pub fn new(alias_model: &str, request_id: &str, created: i64, include_usage: bool) -> Self {
        Self {
            splitter: SseSplitter::default(),
            writer: ChunkWriter::new(alias_model, request_id, created, include_usage),
            id_set: false,
            usage: None,
            choices: Vec::new(),
            calls: 0,
        }
    }

    /// Feeds upstream bytes, split anywhere, appending the OpenAI events they complete.
    fn push_events(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        if !self.writer.is_open() {
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
            if !self.writer.is_open() {
                self.splitter.clear();
                break;
            }
        }
        Ok(())
    }

    /// The upstream closed the stream: ends the answer (usage chunk if asked, `[DONE]`) when
    /// a candidate finished; otherwise the answer is incomplete and nothing is written.
    fn end_of_body(&mut self, out: &mut BytesMut) {
        if !self.writer.is_open() {
            return;
        }
        // A last event without its blank line still counts.
        let rest = self.splitter.remainder().to_vec();
        if !rest.is_empty() {
            self.splitter.clear();
            if self.event(&rest, out).is_err() {
                self.writer.break_off();
                return;
            }
        }
        if !self.writer.is_open() || !self.choices.iter().any(|c| c.finished) {
            return;
        }
        let usage = self.usage.unwrap_or_default();
        self.writer.end(out, UsageOut::from(usage));
    }

    fn broken(&mut self, fault: StreamFault) -> StreamFault {
        self.writer.break_off();
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
            self.writer.fail(out, classify(None, error));
            return Ok(());
        }
        if !self.id_set {
            self.id_set = true;
            if let Some(id) = &response.response_id {
                self.writer.name(id);
            }
        }
        if let Some(metadata) = response.usage_metadata {
            let usage = GeminiUsage::from(metadata);
            self.usage = Some(usage);
            self.writer.report_usage(usage.usage);
        }
        if response.candidates.is_empty() {
            if let Some(reason) = response.block_reason() {
                self.writer.fail(out, prompt_blocked(reason));
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
                    let call_at = (candidate.index, self.choices[at].tool_calls);
                    self.choices[at].tool_calls += 1;
                    let arguments = call.arguments();
                    self.writer
                        .tool_call(out, call_at, &id, &call.name, &arguments);
                } else if let Some(text) = part.visible_text() {
                    self.writer.text(out, candidate.index, text);
                }
            }
            if let Some(reason) = candidate.finish_reason.as_deref() {
                if !self.choices[at].finished {
                    self.choices[at].finished = true;
                    let reason = finish_reason(Some(reason), self.choices[at].tool_calls > 0);
                    self.writer.finish(out, candidate.index, reason);
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
        self.writer.role(out, index);
        self.choices.len() - 1
    }
}

impl StreamTranslator for GeminiStream {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        self.push_events(bytes, out)
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.end_of_body(out);
    }

    fn state(&self) -> &StreamState {
        self.writer.state()
    }
}
