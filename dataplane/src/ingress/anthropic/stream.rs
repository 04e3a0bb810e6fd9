//! OpenAI `chat.completion.chunk` events → Anthropic Messages stream events.
//!
//! Fed whatever the data plane writes to a `/v1/messages` client (bytes split anywhere):
//! chunks become `message_start`, `content_block_start` / `_delta` / `_stop` (text and
//! `tool_use` with `input_json_delta`), `message_delta` (stop reason and usage) and
//! `message_stop` at `[DONE]`; an in-band OpenAI error event becomes an `error` event. In
//! native mode (an Anthropic deployment answered in Anthropic's own events) everything passes
//! unchanged except the gateway's own in-band errors, which are rewritten the same way.

use bytes::BytesMut;
use serde_json::{json, Value};

use super::error::error_event;
use super::response::{message_id, stop_reason, usage};
use crate::sse::{event_data, SseSplitter};

/// The open content block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, by its OpenAI `tool_calls[].index`.
    Tool(u64),
}

/// The converter of one response.
#[derive(Debug)]
pub struct EventConverter {
    native: bool,
    alias: String,
    request_id: String,
    splitter: SseSplitter,
    started: bool,
    finished: bool,
    open: Option<Block>,
    next_index: u64,
    stop_reason: &'static str,
    usage: Value,
}

impl EventConverter {
    /// A converter for an answer translated from OpenAI chunks.
    pub fn translating(alias: &str, request_id: &str) -> Self {
        Self::new(false, alias, request_id)
    }

    /// A converter for an answer already in Anthropic's events.
    pub fn native(alias: &str, request_id: &str) -> Self {
        Self::new(true, alias, request_id)
    }

    fn new(native: bool, alias: &str, request_id: &str) -> Self {
        Self {
            native,
            alias: alias.to_owned(),
            request_id: request_id.to_owned(),
            splitter: SseSplitter::default(),
            started: false,
            finished: false,
            open: None,
            next_index: 0,
            stop_reason: "end_turn",
            usage: usage(&Value::Null),
        }
    }

    /// Whether the answer is passed through (an Anthropic deployment served it).
    pub fn is_native(&self) -> bool {
        self.native
    }

    /// Converts what the data plane writes; `out` gets the client's bytes.
    pub fn push(&mut self, bytes: &[u8], out: &mut BytesMut) {
        let events = match self.splitter.push(bytes) {
            Ok(events) => events,
            Err(_) => {
                // Only the gateway's own writes come here, whole events; never expected.
                self.splitter.clear();
                out.extend_from_slice(&error_event(502, "The stream could not be relayed."));
                return;
            }
        };
        for event in events {
            self.event(&event, out);
        }
    }

    fn event(&mut self, raw: &[u8], out: &mut BytesMut) {
        let data = event_data(raw);
        let payload = data.as_deref().and_then(|d| std::str::from_utf8(d).ok());
        if self.native {
            match payload.and_then(gateway_error) {
                Some((status, message)) => out.extend_from_slice(&error_event(status, &message)),
                None => out.extend_from_slice(raw),
            }
            return;
        }
        let Some(payload) = payload else { return };
        if payload.trim() == "[DONE]" {
            self.finish(out);
            return;
        }
        if let Some((status, message)) = gateway_error(payload) {
            out.extend_from_slice(&error_event(status, &message));
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(payload) else {
            return;
        };
        self.start(out);
        if let Some(reported) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage(reported);
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta");
        if let Some(text) = delta
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.open_block(Block::Text, None, out);
            self.emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": self.current(), "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for call in delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let function = call.get("function");
            if self.open != Some(Block::Tool(index)) {
                let start = json!({
                    "type": "tool_use",
                    "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
                    "name": function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or(""),
                    "input": {},
                });
                self.open_block(Block::Tool(index), Some(start), out);
            }
            if let Some(arguments) = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                self.emit(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.current(), "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                );
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = stop_reason(Some(finish));
            self.close_block(out);
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "type": "message_start",
            "message": {
                "id": message_id(&self.request_id),
                "type": "message",
                "role": "assistant",
                "model": self.alias,
                "content": [],
                "stop_reason": Value::Null,
                "stop_sequence": Value::Null,
                "usage": usage(&Value::Null),
            },
        });
        self.emit(out, "message_start", &message);
    }

    fn current(&self) -> u64 {
        self.next_index.saturating_sub(1)
    }

    fn open_block(&mut self, block: Block, start: Option<Value>, out: &mut BytesMut) {
        if self.open == Some(block) {
            return;
        }
        self.close_block(out);
        let content_block = start.unwrap_or_else(|| json!({"type": "text", "text": ""}));
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some(block);
        self.emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        );
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            let index = self.current();
            self.emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        self.close_block(out);
        self.finished = true;
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": Value::Null},
            "usage": self.usage,
        });
        self.emit(out, "message_delta", &delta);
        self.emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn emit(&self, out: &mut BytesMut, name: &str, data: &Value) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(data.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

/// An OpenAI-shaped in-band error (`{"error": {...}}` without Anthropic's `type`): its
/// status (from the code) and message.
fn gateway_error(payload: &str) -> Option<(u16, String)> {
    if !payload.contains("\"error\"") {
        return None;
    }
    let value: Value = serde_json::from_str(payload).ok()?;
    if value.get("type").is_some() {
        return None;
    }
    let error = value.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("The upstream failed.")
        .to_owned();
    let status = match error.get("code").and_then(Value::as_str) {
        Some("upstream_timeout") => 504,
        Some("rate_limit_exceeded") => 429,
        _ => 502,
    };
    Some((status, message))
}
