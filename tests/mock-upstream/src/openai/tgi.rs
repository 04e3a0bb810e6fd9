//! Text Generation Inference's dialect of OpenAI's chat shapes (TGI 3.x, as recorded in the
//! gateway's Hugging Face fixtures): an empty `id`, fingerprint `3.1.2-native`, no role chunk
//! but `role: "assistant"` in every delta, the finish on a last delta with empty content. A
//! tool call has `id: "0"`, repeated in every delta with its `type` (the `name` null after
//! the first), finishes with `stop` (not `tool_calls`) on its last arguments piece, and has
//! `description: null` in a whole answer.

use super::{quote, tools, Answer, StreamEvents};

/// TGI's `system_fingerprint`.
pub(super) const FINGERPRINT: &str = "3.1.2-native";

/// TGI says `stop` where OpenAI says `tool_calls`.
fn finish_reason(a: &Answer<'_>) -> String {
    quote(if a.tool.is_some() {
        "stop"
    } else {
        a.finish_reason
    })
}

pub(super) fn chat_completion(a: &Answer<'_>) -> String {
    let message = match &a.tool {
        None => format!(
            r#"{{"role":"assistant","content":{}}}"#,
            quote(&a.chunks.concat())
        ),
        Some(tool) => format!(
            r#"{{"role":"assistant","tool_calls":[{{"id":"0","type":"function","function":{{"description":null,"name":{},"arguments":{}}}}}]}}"#,
            quote(tool.name),
            quote(tools::ARGUMENTS)
        ),
    };
    format!(
        r#"{{"object":"chat.completion","id":"","created":{},"model":{},"system_fingerprint":"{FINGERPRINT}","choices":[{{"index":0,"message":{message},"logprobs":null,"finish_reason":{}}}],"usage":{}}}"#,
        a.created,
        quote(a.model),
        finish_reason(a),
        a.usage.json()
    )
}

/// The delta of a tool call's arguments piece; the name only on the first.
fn tool_delta(name: Option<&str>, piece: &str) -> String {
    format!(
        r#"{{"role":"assistant","tool_calls":[{{"index":0,"id":"0","type":"function","function":{{"name":{},"arguments":{}}}}}]}}"#,
        name.map_or_else(|| "null".to_owned(), quote),
        quote(piece)
    )
}

fn choice(delta: &str, finish: &str) -> String {
    format!(r#"{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}"#)
}

/// Every delta but the finishing one.
pub(super) fn pieces(events: &StreamEvents<'_>) -> Vec<String> {
    match &events.answer.tool {
        Some(tool) => {
            let (_, head) = tools::ARGUMENT_PIECES.split_last().unwrap_or((&"", &[]));
            head.iter()
                .enumerate()
                .map(|(i, piece)| {
                    let name = (i == 0).then_some(tool.name);
                    events.chunk(&choice(&tool_delta(name, piece), "null"), "{}")
                })
                .collect()
        }
        None => events
            .answer
            .chunks
            .iter()
            .map(|text| {
                let delta = format!(r#"{{"role":"assistant","content":{}}}"#, quote(text));
                events.chunk(&choice(&delta, "null"), "{}")
            })
            .collect(),
    }
}

/// The finishing delta: the last arguments piece of a tool call, else empty content.
pub(super) fn finish(events: &StreamEvents<'_>) -> String {
    let reason = finish_reason(&events.answer);
    let delta = match &events.answer.tool {
        Some(tool) => {
            let last = tools::ARGUMENT_PIECES.last().copied().unwrap_or_default();
            let name = (tools::ARGUMENT_PIECES.len() == 1).then_some(tool.name);
            tool_delta(name, last)
        }
        None => r#"{"role":"assistant","content":""}"#.to_owned(),
    };
    events.chunk(&choice(&delta, &reason), "{}")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{Dialect, Flavour, ToolUse, Usage};
    use super::*;

    fn events(tool: bool) -> Vec<Value> {
        let chunks = super::super::chunks(2);
        let events = StreamEvents {
            answer: Answer {
                id: "chatcmpl-x",
                created: 1,
                model: "tgi",
                chunks: if tool { &[] } else { &chunks },
                tool: tool.then_some(ToolUse {
                    id: "call_x",
                    name: "get_weather",
                }),
                usage: Usage {
                    prompt: 1,
                    completion: 1,
                },
                finish_reason: if tool { "tool_calls" } else { "stop" },
                dialect: Dialect::Tgi,
            },
            flavour: Flavour::Chat,
            include_usage: false,
        };
        assert_eq!(events.role(), None);
        let mut all = events.pieces();
        all.push(events.finish());
        all.iter()
            .map(|chunk| serde_json::from_str(chunk).unwrap_or(Value::Null))
            .collect()
    }

    #[test]
    fn every_delta_repeats_the_role_and_the_call() {
        for tool in [false, true] {
            let events = events(tool);
            assert!(events.iter().all(|e| e["id"] == ""));
            assert!(events
                .iter()
                .all(|e| e["choices"][0]["delta"]["role"] == "assistant"));
            let last = events.last().map(|e| &e["choices"][0]);
            assert_eq!(
                last.map(|c| &c["finish_reason"]),
                Some(&Value::from("stop"))
            );
        }
        let all = events(true);
        let calls: Vec<&Value> = all
            .iter()
            .map(|e| &e["choices"][0]["delta"]["tool_calls"][0])
            .collect();
        assert!(calls
            .iter()
            .all(|c| c["id"] == "0" && c["type"] == "function"));
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert!(calls[1..].iter().all(|c| c["function"]["name"].is_null()));
        let arguments: String = calls
            .iter()
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, tools::ARGUMENTS);
    }
}
