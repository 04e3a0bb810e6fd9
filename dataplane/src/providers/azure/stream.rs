//! Azure's chat and completion streams: OpenAI's chunks, forwarded event by event and metered
//! as for OpenAI, with Azure's content filter annotations made safe for OpenAI clients.
//!
//! Besides OpenAI's chunks Azure sends annotation chunks: the leading prompt filter chunk
//! (`choices: []`, `prompt_filter_results`), and, with annotations or the asynchronous filter
//! on, chunks whose choices carry only `content_filter_results` (and
//! `content_filter_offsets`) — no `delta` (`text` for completions), an empty `id`, `object`
//! and `model`, `created: 0` — anywhere in the stream, also after the finish chunk. OpenAI
//! clients break on them (a choice without `delta`, a chunk of another id). So:
//!
//! - the leading prompt filter chunk is left out (a later chunk without choices is the
//!   provider's: it passes);
//! - an annotation is left out, unless one of its choices has a `finish_reason` (the
//!   asynchronous filter's `content_filter`, the only sign that the answer was cut): that one
//!   is rewritten into a chunk OpenAI clients read — each choice given an empty `delta` (`text:
//!   ""`), and the stream's `id`, `object`, `created` and `model` (from its first chunk; the
//!   gateway's own when none came yet).
//!
//! Which events are annotations is decided by `serde_json`, but only for events that have no
//! `"delta"` or `"text"` key anywhere (a byte search): an unescaped `"delta"` followed by `:`
//! is an object key, so every event with content skips the parse, and none is ever taken for
//! an annotation by mistake.

use bytes::BytesMut;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::providers::adapter::{Call, StreamFault, StreamTranslator};
use crate::providers::json_scan::has_key;
use crate::providers::openai::{EventAction, StreamMeter};
use crate::providers::StreamState;
use crate::request::Route;
use crate::sse::{data_event, event_data, SseSplitter};

/// An Azure OpenAI stream as the client gets it (see the module docs).
pub(super) struct AzureStream {
    splitter: SseSplitter,
    meter: StreamMeter,
    /// Legacy completions (`text` choices) rather than chat (`delta` choices).
    completions: bool,
    /// The identity of the stream's first forwarded chunk, which rewritten annotations take
    /// (read once).
    identity: Option<Identity>,
    /// `chatcmpl-<request id>` / `cmpl-<request id>`: the id when no chunk gave one.
    fallback_id: String,
    fallback_model: String,
    fallback_created: i64,
}

/// What one Azure event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `choices: []` without `usage` or `error`: the prompt filter chunk.
    PromptFilter,
    /// Choices without content (filter results only); `finish`: one of them has a
    /// `finish_reason`.
    Annotation { finish: bool },
    /// Anything else: OpenAI's (content, usage, errors, `[DONE]`, comments, malformed events,
    /// which the meter refuses).
    Other,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    choices: Option<Vec<ChoiceProbe>>,
    #[serde(default)]
    usage: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe {
    #[serde(default)]
    delta: Option<IgnoredAny>,
    #[serde(default)]
    text: Option<IgnoredAny>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

/// Classifies one event (its raw bytes, `data:` line included).
pub(super) fn classify(event: &[u8]) -> Kind {
    let Some(data) = event_data(event) else {
        return Kind::Other;
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" || has_key(data, b"\"delta\"") || has_key(data, b"\"text\"") {
        return Kind::Other;
    }
    let Ok(probe) = serde_json::from_slice::<Probe>(data) else {
        return Kind::Other;
    };
    if probe.usage.is_some() || probe.error.is_some() {
        return Kind::Other;
    }
    match probe.choices {
        Some(choices) if choices.is_empty() => Kind::PromptFilter,
        Some(choices)
            if choices
                .iter()
                .all(|choice| choice.delta.is_none() && choice.text.is_none()) =>
        {
            Kind::Annotation {
                finish: choices.iter().any(|choice| choice.finish_reason.is_some()),
            }
        }
        _ => Kind::Other,
    }
}

/// The identity fields of a chunk.
#[derive(Clone, Default, Deserialize)]
struct Identity {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    created: Option<Value>,
    #[serde(default)]
    model: Option<Value>,
}

/// A value worth keeping: not null, `""` or `0`.
fn present(value: Option<Value>) -> Option<Value> {
    value.filter(|value| match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Number(number) => number.as_f64() != Some(0.0),
        _ => true,
    })
}

/// The identity of a chunk (`None` for comments, `[DONE]` and anything not an object).
fn identity(event: &[u8]) -> Option<Identity> {
    let data = event_data(event)?;
    if !data.trim_ascii().starts_with(b"{") {
        return None;
    }
    serde_json::from_slice::<Identity>(&data).ok()
}

impl AzureStream {
    /// The translator of one streamed call (chat or legacy completions).
    pub(super) fn new(call: &Call<'_>) -> Self {
        let completions = *call.route == Route::Completions;
        Self {
            splitter: SseSplitter::default(),
            meter: StreamMeter::new(call.body.include_usage),
            completions,
            identity: None,
            fallback_id: format!(
                "{}-{}",
                if completions { "cmpl" } else { "chatcmpl" },
                call.request_id
            ),
            fallback_model: call.alias.to_owned(),
            fallback_created: call.created,
        }
    }

    /// An annotation with a `finish_reason` as a chunk OpenAI clients read; `None` when it
    /// is not a JSON object (the meter then refuses the original).
    fn rewrite(&self, event: &[u8]) -> Option<Vec<u8>> {
        let data = event_data(event)?;
        let mut chunk: Map<String, Value> = serde_json::from_slice(&data).ok()?;
        let first = self.identity.clone().unwrap_or_default();
        let own = |key: &str| present(chunk.get(key).cloned());
        let object = if self.completions {
            "text_completion"
        } else {
            "chat.completion.chunk"
        };
        let fields = [
            (
                "id",
                present(first.id)
                    .or_else(|| own("id"))
                    .unwrap_or_else(|| Value::from(self.fallback_id.as_str())),
            ),
            (
                "object",
                present(first.object)
                    .or_else(|| own("object"))
                    .unwrap_or_else(|| Value::from(object)),
            ),
            (
                "created",
                present(first.created)
                    .or_else(|| own("created"))
                    .unwrap_or_else(|| Value::from(self.fallback_created)),
            ),
            (
                "model",
                present(first.model)
                    .or_else(|| own("model"))
                    .unwrap_or_else(|| Value::from(self.fallback_model.as_str())),
            ),
        ];
        for (key, value) in fields {
            chunk.insert(key.to_owned(), value);
        }
        let (field, empty) = if self.completions {
            ("text", Value::from(""))
        } else {
            ("delta", Value::Object(Map::new()))
        };
        for choice in chunk
            .get_mut("choices")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(choice) = choice.as_object_mut() {
                choice.entry(field).or_insert_with(|| empty.clone());
            }
        }
        serde_json::to_vec(&chunk)
            .ok()
            .map(|json| data_event(&json))
    }

    /// Meters one event and forwards it when the meter says so.
    fn forward(&mut self, event: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        match self.meter.process(event) {
            EventAction::Forward => out.extend_from_slice(event),
            EventAction::Drop => {}
            EventAction::Malformed => return Err(StreamFault::MALFORMED),
        }
        Ok(())
    }
}

impl StreamTranslator for AzureStream {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        let events = self
            .splitter
            .push(bytes)
            .map_err(|_| StreamFault::OVERSIZED)?;
        for event in events {
            match classify(&event) {
                Kind::PromptFilter if !self.meter.state.saw_content => {}
                Kind::Annotation { finish: false } => {}
                Kind::Annotation { finish: true } => match self.rewrite(&event) {
                    Some(chunk) => self.forward(&chunk, out)?,
                    None => self.forward(&event, out)?,
                },
                Kind::PromptFilter | Kind::Other => {
                    if self.identity.is_none() {
                        self.identity = identity(&event);
                    }
                    self.forward(&event, out)?;
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> &StreamState {
        &self.meter.state
    }
}
