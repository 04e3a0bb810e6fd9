//! Chat answers of Text Generation Inference's OpenAI-compatible route (and the Inference
//! Providers router), made safe for OpenAI clients.
//!
//! TGI (3.x) writes OpenAI's shapes with differences that break OpenAI clients:
//! - every stream delta repeats `role: "assistant"`, and every tool-call delta repeats the
//!   call's `id`, `type` and a `name` of null. The OpenAI SDKs' stream accumulators
//!   (`client.chat.completions.stream`, LangChain's chunk merging) concatenate repeated
//!   strings: the role becomes `assistantassistant…` and the call's id `000…`;
//! - a tool call ends with `finish_reason: "stop"` where OpenAI says `tool_calls`, which
//!   agent loops key on;
//! - the completion's `id` is empty.
//!
//! So, per choice: `role` stays only on its first delta; a tool call's `id`, `type` and
//! `name` stay only on its first delta, and a null `name` is left out; `stop` after a tool
//! call becomes `tool_calls`; an empty `id` becomes `chatcmpl-<request id>`. An answer these
//! rules do not change (an OpenAI-correct one, e.g. from a router provider) passes byte for byte. Only
//! chunks that could need a rule are parsed: those with a `"role"`, `"tool_calls"` or empty
//! `"id"`, and every chunk once a tool call was seen (its finish chunk).

use std::collections::HashSet;

use bytes::BytesMut;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::providers::adapter::{Answer, Call, StreamFault, StreamTranslator};
use crate::providers::json_scan::has_key;
use crate::providers::openai::{pass_through_answer, EventAction, StreamMeter};
use crate::providers::StreamState;
use crate::sse::{data_event, event_data, SseSplitter};

/// `chatcmpl-<request id>`: the id of an answer that came without one.
fn fallback_id(call: &Call<'_>) -> String {
    format!("chatcmpl-{}", call.request_id)
}

/// Whether a rule may apply to an answer or chunk without a `role` (a byte search): it has
/// tool calls or an empty `id`.
fn may_need_rules(json: &[u8]) -> bool {
    has_key(json, b"\"tool_calls\"") || memchr::memmem::find(json, b"\"id\":\"\"").is_some()
}

/// Fills an empty `id` of `chunk`; true when it did.
fn fill_id(chunk: &mut Map<String, Value>, fallback: &str) -> bool {
    match chunk.get_mut("id") {
        Some(id) if id.as_str() == Some("") => {
            *id = Value::from(fallback);
            true
        }
        _ => false,
    }
}

/// The `index` of a choice or tool call (0 when absent, as TGI sends one choice).
fn index(value: &Map<String, Value>) -> u64 {
    value.get("index").and_then(Value::as_u64).unwrap_or(0)
}

/// A non-streamed chat answer: a tool call's `stop` made `tool_calls`, an empty `id` filled.
pub(super) fn answer(call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
    let passed = pass_through_answer(body)?;
    if !may_need_rules(body) {
        return Ok(passed);
    }
    let Ok(mut chunk) = serde_json::from_slice::<Map<String, Value>>(body) else {
        return Ok(passed);
    };
    let mut changed = fill_id(&mut chunk, &fallback_id(call));
    for choice in choices(&mut chunk) {
        let called = choice
            .get("message")
            .and_then(|message| message.get("tool_calls"))
            .and_then(Value::as_array)
            .is_some_and(|calls| !calls.is_empty());
        changed |= called && finish_as_tool_calls(choice);
    }
    if !changed {
        return Ok(passed);
    }
    let body = serde_json::to_vec(&chunk).unwrap_or_else(|_| body.to_vec());
    Ok(Answer {
        body,
        usage: passed.usage,
    })
}

/// The choices of a chunk or answer that are objects.
fn choices(chunk: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    chunk
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `finish_reason: "stop"` becomes `tool_calls`; true when it did.
fn finish_as_tool_calls(choice: &mut Map<String, Value>) -> bool {
    match choice.get_mut("finish_reason") {
        Some(reason) if reason.as_str() == Some("stop") => {
            *reason = Value::from("tool_calls");
            true
        }
        _ => false,
    }
}

/// A TGI chat stream as the client gets it (see the module docs); metered as OpenAI's.
pub(super) struct TgiStream {
    splitter: SseSplitter,
    meter: StreamMeter,
    fallback_id: String,
    /// Choices whose `role` was sent.
    roles: HashSet<u64>,
    /// (choice, tool call) pairs whose first delta was sent.
    calls: HashSet<(u64, u64)>,
    /// Choices that made a tool call.
    called: HashSet<u64>,
}

impl TgiStream {
    pub(super) fn new(call: &Call<'_>) -> Self {
        Self {
            splitter: SseSplitter::default(),
            meter: StreamMeter::new(call.body.include_usage),
            fallback_id: fallback_id(call),
            roles: HashSet::new(),
            calls: HashSet::new(),
            called: HashSet::new(),
        }
    }

    /// The event rewritten when a rule changes it; `None` to send it as it came.
    fn rewrite(&mut self, event: &[u8]) -> Option<Vec<u8>> {
        let data = event_data(event)?;
        let data = data.trim_ascii();
        if self.called.is_empty() && !has_key(data, b"\"role\"") && !may_need_rules(data) {
            return None;
        }
        let mut chunk = serde_json::from_slice::<Map<String, Value>>(data).ok()?;
        let mut changed = fill_id(&mut chunk, &self.fallback_id);
        for choice in choices(&mut chunk) {
            changed |= self.normalize_choice(choice);
        }
        changed
            .then(|| serde_json::to_vec(&chunk).ok())
            .flatten()
            .map(|json| data_event(&json))
    }

    /// Applies the rules to one stream choice; true when it changed.
    fn normalize_choice(&mut self, choice: &mut Map<String, Value>) -> bool {
        let at = index(choice);
        let mut changed = false;
        if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
            if delta.contains_key("role") && !self.roles.insert(at) {
                delta.remove("role");
                changed = true;
            }
            let calls = delta
                .get_mut("tool_calls")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut);
            for call in calls {
                self.called.insert(at);
                let first = self.calls.insert((at, index(call)));
                if !first {
                    changed |= call.remove("id").is_some();
                    changed |= call.remove("type").is_some();
                }
                if let Some(function) = call.get_mut("function").and_then(Value::as_object_mut) {
                    // A repeated name would be concatenated too; a null one is noise.
                    if !first || function.get("name").is_some_and(Value::is_null) {
                        changed |= function.remove("name").is_some();
                    }
                }
            }
        }
        if self.called.contains(&at) {
            changed |= finish_as_tool_calls(choice);
        }
        changed
    }
}

impl StreamTranslator for TgiStream {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        let events = self
            .splitter
            .push(bytes)
            .map_err(|_| StreamFault::OVERSIZED)?;
        for event in events {
            let rewritten = self.rewrite(&event);
            let event = rewritten.as_deref().unwrap_or(&event);
            match self.meter.process(event) {
                EventAction::Forward => out.extend_from_slice(event),
                EventAction::Drop => {}
                EventAction::Malformed => return Err(StreamFault::MALFORMED),
            }
        }
        Ok(())
    }

    fn state(&self) -> &StreamState {
        &self.meter.state
    }
}
