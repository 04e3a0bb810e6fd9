//! OpenAI and OpenAI-compatible upstreams: the wire format is already OpenAI's, so the adapter
//! only meters. Non-streamed bodies pass through unchanged after their `usage` is read;
//! streams pass through event by event, with the usage chunk the gateway forced upstream
//! removed when the client did not ask for it.

use std::borrow::Cow;

use omg_shared::tokens::estimate_tokens;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::providers::json_scan::Cursor;
use crate::providers::{StreamState, Usage};
use crate::sse::event_data;

mod adapter;
pub(crate) use adapter::pass_through_answer;
pub use adapter::OpenAiAdapter;

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<UsageJson> for Usage {
    fn from(usage: UsageJson) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            images: 0,
        }
    }
}

/// Reads `usage` from a non-streamed response body. `Err` when the body is not a JSON object.
pub fn response_usage(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        usage: Option<UsageJson>,
    }
    serde_json::from_slice::<Probe>(body).map(|probe| probe.usage.map(Usage::from))
}

/// What to do with one upstream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// Send it to the client unchanged.
    Forward,
    /// Leave it out (the usage chunk the client did not ask for).
    Drop,
    /// A `data:` payload that is not a JSON object: the stream is broken; end it with an
    /// error rather than hand the client something its SDK cannot parse.
    Malformed,
}

/// Meters an OpenAI-format stream, event by event.
#[derive(Debug, Default)]
pub struct StreamMeter {
    client_wants_usage: bool,
    /// What was seen: `data: [DONE]` (`done`), a chunk with choices (`saw_content`), an
    /// in-band error event (`upstream_failed`), the usage reported by the upstream, and the
    /// completion tokens estimated from the content seen so far.
    pub state: StreamState,
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceProbe<'a>>>,
    #[serde(default)]
    usage: Option<UsageJson>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    /// Legacy completions stream `text`.
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallProbe<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallProbe<'a> {
    #[serde(default, borrow)]
    function: Option<FunctionProbe<'a>>,
}

#[derive(Deserialize)]
struct FunctionProbe<'a> {
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

impl StreamMeter {
    /// A meter; `client_wants_usage` is the client's own `stream_options.include_usage`.
    pub fn new(client_wants_usage: bool) -> Self {
        Self {
            client_wants_usage,
            ..Self::default()
        }
    }

    /// Inspects one whole event and says whether to forward it.
    pub fn process(&mut self, event: &[u8]) -> EventAction {
        let Some(data) = event_data(event) else {
            return EventAction::Forward; // comments and keep-alives
        };
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.state.done = true;
            return EventAction::Forward;
        }
        // The scan reads what metering needs without building the chunk; anything it does not
        // handle goes through serde_json, with the same outcome.
        let facts = match std::str::from_utf8(trimmed).ok().and_then(scan_chunk) {
            Some(facts) => facts,
            None => match parse_chunk(trimmed) {
                Some(facts) => facts,
                None => return EventAction::Malformed,
            },
        };
        if facts.error {
            self.state.upstream_failed = true;
            return EventAction::Forward;
        }
        self.state.estimated_completion_tokens += facts.tokens;
        if facts.choices > 0 {
            self.state.saw_content = true;
        }
        if let Some(usage) = facts.usage {
            self.state.usage = Some(usage);
            if facts.choices == 0 && !self.client_wants_usage {
                return EventAction::Drop;
            }
        }
        EventAction::Forward
    }
}

/// What metering takes from one stream chunk.
#[derive(Debug, Default, PartialEq, Eq)]
struct ChunkFacts {
    /// A non-null top-level `error`.
    error: bool,
    /// Number of `choices`.
    choices: usize,
    /// Estimated tokens of the content, text and tool-call arguments seen.
    tokens: u64,
    /// The chunk's `usage`, when present and not null.
    usage: Option<Usage>,
}

/// The reference reading of a chunk (serde_json, building the probe).
fn parse_chunk(json: &[u8]) -> Option<ChunkFacts> {
    let chunk = serde_json::from_slice::<ChunkProbe<'_>>(json).ok()?;
    let mut facts = ChunkFacts {
        error: chunk.error.is_some(),
        usage: chunk.usage.map(Usage::from),
        ..ChunkFacts::default()
    };
    let choices = chunk.choices.unwrap_or_default();
    facts.choices = choices.len();
    for choice in &choices {
        if let Some(text) = &choice.text {
            facts.tokens += estimate_tokens(text);
        }
        if let Some(delta) = &choice.delta {
            if let Some(content) = &delta.content {
                facts.tokens += estimate_tokens(content);
            }
            for call in delta.tool_calls.iter().flatten() {
                if let Some(arguments) = call.function.as_ref().and_then(|f| f.arguments.as_ref()) {
                    facts.tokens += estimate_tokens(arguments);
                }
            }
        }
    }
    Some(facts)
}

/// The same reading as [`parse_chunk`] in one pass over the text, building nothing; `None`
/// when the chunk holds anything it does not handle.
fn scan_chunk(json: &str) -> Option<ChunkFacts> {
    let mut facts = ChunkFacts::default();
    let mut cursor = Cursor::new(json);
    let mut seen = [false; 3];
    cursor.object(|cursor, key| {
        match key {
            b"choices" => {
                once(&mut seen[0])?;
                if !cursor.null() {
                    cursor.array(|cursor| {
                        facts.choices += 1;
                        scan_choice(cursor, &mut facts.tokens)
                    })?;
                }
            }
            b"usage" => {
                once(&mut seen[1])?;
                if !cursor.null() {
                    if cursor.peek()? != b'{' {
                        return None;
                    }
                    let raw = cursor.raw_value()?;
                    facts.usage = Some(serde_json::from_slice::<UsageJson>(raw).ok()?.into());
                }
            }
            b"error" => {
                once(&mut seen[2])?;
                if !cursor.null() {
                    facts.error = true;
                    cursor.skip_value()?;
                }
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    cursor.at_end().then_some(facts)
}

/// One element of `choices` (an object; the array form serde also takes is left to it).
fn scan_choice(cursor: &mut Cursor<'_>, tokens: &mut u64) -> Option<()> {
    let mut seen = [false; 2];
    cursor.object(|cursor, key| {
        match key {
            b"delta" => {
                once(&mut seen[0])?;
                if !cursor.null() {
                    scan_delta(cursor, tokens)?;
                }
            }
            b"text" => {
                once(&mut seen[1])?;
                *tokens += optional_text_tokens(cursor)?;
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })
}

fn scan_delta(cursor: &mut Cursor<'_>, tokens: &mut u64) -> Option<()> {
    let mut seen = [false; 2];
    cursor.object(|cursor, key| {
        match key {
            b"content" => {
                once(&mut seen[0])?;
                *tokens += optional_text_tokens(cursor)?;
            }
            b"tool_calls" => {
                once(&mut seen[1])?;
                if !cursor.null() {
                    cursor.array(|cursor| {
                        let mut seen_function = false;
                        cursor.object(|cursor, key| {
                            if key != b"function" {
                                return cursor.skip_value();
                            }
                            once(&mut seen_function)?;
                            if cursor.null() {
                                return Some(());
                            }
                            let mut seen_arguments = false;
                            cursor.object(|cursor, key| {
                                if key != b"arguments" {
                                    return cursor.skip_value();
                                }
                                once(&mut seen_arguments)?;
                                *tokens += optional_text_tokens(cursor)?;
                                Some(())
                            })
                        })
                    })?;
                }
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })
}

/// Estimated tokens of a string-or-null value.
fn optional_text_tokens(cursor: &mut Cursor<'_>) -> Option<u64> {
    if cursor.null() {
        return Some(0);
    }
    let text = cursor.string()?;
    if text.escaped {
        let decoded = serde_json::from_slice::<Cow<'_, str>>(text.quoted).ok()?;
        return Some(estimate_tokens(&decoded));
    }
    // The cursor runs over a `str` and stops at ASCII quotes, so this is valid UTF-8.
    Some(estimate_tokens(std::str::from_utf8(text.raw).ok()?))
}

/// Serde refuses a known field given twice; so does the scan (leaving it to serde).
fn once(seen: &mut bool) -> Option<()> {
    if std::mem::replace(seen, true) {
        None
    } else {
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_usage_from_json() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(
            response_usage(body).ok().flatten(),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                cached_tokens: 2,
                cache_write_tokens: 0,
                images: 0,
            })
        );
        assert_eq!(response_usage(br#"{"data":[]}"#).ok().flatten(), None);
        assert!(response_usage(b"<html>").is_err());
    }

    #[test]
    fn strips_the_usage_chunk_only_when_not_asked() {
        let usage_chunk =
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
        let content = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello world\"}}],\"usage\":null}\n\n";
        let mut meter = StreamMeter::new(false);
        assert_eq!(meter.process(content), EventAction::Forward);
        assert_eq!(meter.state.estimated_completion_tokens, 3);
        assert_eq!(meter.process(usage_chunk), EventAction::Drop);
        assert_eq!(meter.process(b"data: [DONE]\n\n"), EventAction::Forward);
        assert!(meter.state.done);
        assert_eq!(meter.state.usage.map(|u| u.completion_tokens), Some(2));
        let mut asked = StreamMeter::new(true);
        assert_eq!(asked.process(usage_chunk), EventAction::Forward);
    }

    #[test]
    fn scans_typical_chunks_without_serde() {
        for chunk in [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hello world"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\": 1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"text":"legacy \u00e9","finish_reason":null}]}"#,
            r#"{"error":{"message":"x"}}"#,
        ] {
            let scanned = scan_chunk(chunk);
            assert!(scanned.is_some(), "{chunk}");
            assert_eq!(scanned, parse_chunk(chunk.as_bytes()), "{chunk}");
        }
    }

    /// JSON text for a chunk-like document, with odd shapes mixed in.
    fn arb_chunk() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            Just(r#""hello world""#),
            Just(r#""w0 ""#),
            Just(r#""""#),
            Just(r#""\n\t\u00e9 x \"q\"""#),
            Just(r#""é ü 日本""#),
            Just(r#""\ud83d\ude00""#),
            Just("null"),
            Just("7"),
            Just("[\"a\"]"),
        ];
        let function = prop_oneof![
            text.clone()
                .prop_map(|t| format!(r#"{{"name":"f","arguments":{t}}}"#)),
            text.clone()
                .prop_map(|t| format!(r#"{{"arguments":{t},"arguments":{t}}}"#)),
            Just("null".to_owned()),
            Just("3".to_owned()),
        ];
        let call = prop_oneof![
            function.prop_map(|f| format!(r#"{{"index":0,"id":"c","function":{f}}}"#)),
            Just("null".to_owned()),
        ];
        let tool_calls = prop_oneof![
            proptest::collection::vec(call, 0..3).prop_map(|c| format!("[{}]", c.join(","))),
            Just("null".to_owned()),
            Just("{}".to_owned()),
        ];
        let delta_field = prop_oneof![
            text.clone().prop_map(|t| format!(r#""content":{t}"#)),
            tool_calls.prop_map(|t| format!(r#""tool_calls":{t}"#)),
            Just(r#""role":"assistant""#.to_owned()),
            Just(r#""refusal":null"#.to_owned()),
        ];
        let delta = prop_oneof![
            proptest::collection::vec(delta_field, 0..4)
                .prop_map(|f| format!("{{{}}}", f.join(","))),
            Just("null".to_owned()),
            Just("3".to_owned()),
        ];
        let choice_field = prop_oneof![
            delta.prop_map(|d| format!(r#""delta":{d}"#)),
            text.clone().prop_map(|t| format!(r#""text":{t}"#)),
            Just(r#""index":0"#.to_owned()),
            Just(r#""finish_reason":"stop""#.to_owned()),
            Just(r#""logprobs":{"content":[{"token":"a","logprob":-0.5e-3}]}"#.to_owned()),
        ];
        let choice = prop_oneof![
            proptest::collection::vec(choice_field, 0..4)
                .prop_map(|f| format!("{{{}}}", f.join(","))),
            Just("null".to_owned()),
            Just(r#"[null,"hi"]"#.to_owned()),
        ];
        let top_field = prop_oneof![
            proptest::collection::vec(choice, 0..3)
                .prop_map(|c| format!(r#""choices":[{}]"#, c.join(","))),
            Just(r#""choices":null"#.to_owned()),
            Just(r#""choices":{"a":1}"#.to_owned()),
            Just(r#""usage":null"#.to_owned()),
            Just(r#""usage":{"prompt_tokens":3,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2}}"#.to_owned()),
            Just(r#""usage":{"prompt_tokens":-1}"#.to_owned()),
            Just(r#""usage":[1,2]"#.to_owned()),
            Just(r#""error":null"#.to_owned()),
            Just(r#""error":{"message":"boom"}"#.to_owned()),
            Just(r#""error":"boom""#.to_owned()),
            Just(r#""id":"chatcmpl-1","created":1700000000,"model":"m""#.to_owned()),
            Just(r#""ch\u006fices":[]"#.to_owned()),
            Just(r#""x":[1,{"y":[true,false]},01]"#.to_owned()),
        ];
        (
            proptest::collection::vec(top_field, 0..5),
            prop_oneof![Just(""), Just(" "), Just("x"), Just("}")],
        )
            .prop_map(|(fields, tail)| format!("{{{}}}{tail}", fields.join(",")))
    }

    proptest::proptest! {
        /// The scan never disagrees with serde_json; it only declines.
        #[test]
        fn scan_agrees_with_serde(chunk in arb_chunk()) {
            if let Some(scanned) = scan_chunk(&chunk) {
                proptest::prop_assert_eq!(Some(scanned), parse_chunk(chunk.as_bytes()), "{}", chunk);
            }
        }
    }

    #[test]
    fn notices_in_band_errors_and_ignores_comments() {
        let mut meter = StreamMeter::new(false);
        assert_eq!(meter.process(b": ping\n\n"), EventAction::Forward);
        assert_eq!(
            meter.process(b"data: {\"error\":{\"message\":\"x\"}}\n\n"),
            EventAction::Forward
        );
        assert!(meter.state.upstream_failed);
    }

    #[test]
    fn payloads_that_are_not_json_objects_are_malformed() {
        let mut meter = StreamMeter::new(false);
        assert_eq!(
            meter.process(b"data: {not json\n\n"),
            EventAction::Malformed
        );
        assert_eq!(meter.process(b"data: 42\n\n"), EventAction::Malformed);
        assert_eq!(
            meter.process(b"data: {\"id\":\"x\"}\n\n"),
            EventAction::Forward
        );
    }
}
