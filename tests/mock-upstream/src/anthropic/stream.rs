//! The Messages API's event stream, planned up front: `message_start`, the text block
//! (`content_block_start`, `ping`, a `text_delta` per chunk, `content_block_stop`), the
//! `tool_use` block (`input_json_delta` pieces), `message_delta`, `message_stop`; with the
//! scripted delays, cut, malformed line and `error` event.

use bytes::Bytes;

use super::{Plan, TOOL_INPUT_PIECES};
use crate::behaviour::Behaviour;
use crate::openai::quote;
use crate::stream::Step;

/// One event of the stream, before pacing and faults.
enum Event {
    /// An event other than a delta.
    Frame(&'static str, String),
    /// A `content_block_delta`: a content chunk (delays and cuts count these).
    Delta(String),
}

/// `event: <name>\ndata: <json>\n\n`.
fn frame(name: &str, data: &str) -> Step {
    Step::Event(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

/// The events of `plan`, in order.
fn events(plan: &Plan) -> Vec<Event> {
    let mut events = vec![Event::Frame(
        "message_start",
        format!(
            r#"{{"type":"message_start","message":{{"id":{},"type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{}}}}}"#,
            quote(&plan.id),
            quote(&plan.model),
            plan.usage(1)
        ),
    )];
    let ping = || Event::Frame("ping", r#"{"type":"ping"}"#.to_owned());
    let mut index = 0;
    if !plan.text.is_empty() {
        events.push(Event::Frame(
            "content_block_start",
            format!(
                r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"text","text":""}}}}"#
            ),
        ));
        events.push(ping());
        for text in &plan.text {
            events.push(Event::Delta(format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":{}}}}}"#,
                quote(text)
            )));
        }
        events.push(Event::Frame(
            "content_block_stop",
            format!(r#"{{"type":"content_block_stop","index":{index}}}"#),
        ));
        index += 1;
    }
    if let Some((id, name)) = &plan.tool {
        events.push(Event::Frame(
            "content_block_start",
            format!(
                r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"tool_use","id":{},"name":{},"input":{{}}}}}}"#,
                quote(id),
                quote(name)
            ),
        ));
        if index == 0 {
            events.push(ping());
        }
        for piece in TOOL_INPUT_PIECES {
            events.push(Event::Delta(format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                quote(piece)
            )));
        }
        events.push(Event::Frame(
            "content_block_stop",
            format!(r#"{{"type":"content_block_stop","index":{index}}}"#),
        ));
    }
    if plan.text.is_empty() && plan.tool.is_none() {
        events.push(ping());
    }
    events.push(Event::Frame(
        "message_delta",
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":{},"stop_sequence":{}}},"usage":{{"output_tokens":{}}}}}"#,
            quote(plan.stop_reason),
            plan.stop_sequence_json(),
            plan.output_tokens
        ),
    ));
    events.push(Event::Frame(
        "message_stop",
        r#"{"type":"message_stop"}"#.to_owned(),
    ));
    events
}

/// The whole stream with the behaviour's pacing and faults: a delay before each delta;
/// `cut-after-<n>` drops the connection after `n` deltas (after the last one when there are
/// fewer); `stream-error` sends an `error` event after the first delta and ends; `malformed`
/// makes the second event's data not JSON.
pub(super) fn plan(plan: &Plan, behaviour: &Behaviour) -> Vec<Step> {
    let events = events(plan);
    let deltas: Vec<usize> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| matches!(e, Event::Delta(_)).then_some(i))
        .collect();
    // The event before which the stream is cut, or ends with an error.
    let after_delta = |n: usize| match n.checked_sub(1) {
        Some(k) => deltas.get(k).map_or(events.len(), |i| i + 1),
        None => deltas.first().copied().unwrap_or(1),
    };
    let cut_at = behaviour
        .cut_after
        .map(|n| after_delta(n.min(deltas.len())));
    let error_at = behaviour.stream_error.then(|| after_delta(1));
    let mut steps = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        if cut_at == Some(i) {
            steps.push(Step::Cut);
            break;
        }
        if error_at == Some(i) {
            steps.push(frame(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ));
            break;
        }
        match event {
            Event::Frame(name, data) => steps.push(frame(name, &data)),
            Event::Delta(data) => {
                if !behaviour.chunk_delay.is_zero() {
                    steps.push(Step::Delay(behaviour.chunk_delay));
                }
                steps.push(frame("content_block_delta", &data));
            }
        }
    }
    if behaviour.malformed {
        let second = steps
            .iter()
            .position(|s| matches!(s, Step::Event(_)))
            .map_or(0, |first| first + 1);
        steps.insert(
            second,
            Step::Event(Bytes::from_static(
                b"event: content_block_delta\ndata: {not json\n\n",
            )),
        );
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: usize, tool: bool, spec: &str) -> Vec<String> {
        let plan = Plan {
            id: "msg_mock_1".to_owned(),
            model: "m".to_owned(),
            text: crate::openai::chunks(text),
            tool: tool.then(|| ("toolu_mock_1".to_owned(), "get_weather".to_owned())),
            stop_reason: "end_turn",
            stop_sequence: None,
            input_tokens: 1,
            cache: super::super::cache::CacheUse::default(),
            output_tokens: 1,
        };
        let mut behaviour = Behaviour::default();
        behaviour.apply(spec);
        super::plan(&plan, &behaviour)
            .into_iter()
            .map(|step| match step {
                Step::Event(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let name = text
                        .strip_prefix("event: ")
                        .and_then(|t| t.split('\n').next())
                        .unwrap_or("?")
                        .to_owned();
                    if text.contains("{not json") {
                        "bad".to_owned()
                    } else if text.contains("input_json_delta") {
                        "json".to_owned()
                    } else if text.contains("text_delta") {
                        "text".to_owned()
                    } else {
                        name
                    }
                }
                Step::Delay(_) => "delay".to_owned(),
                Step::Gate => "gate".to_owned(),
                Step::Cut => "cut".to_owned(),
            })
            .collect()
    }

    #[test]
    fn event_plans() {
        let start = ["message_start", "content_block_start", "ping"];
        let end = ["content_block_stop", "message_delta", "message_stop"];
        assert_eq!(
            plan_of(2, false, ""),
            [&start[..], &["text", "text"], &end].concat()
        );
        assert_eq!(
            plan_of(1, true, ""),
            [
                &start[..],
                &["text", "content_block_stop", "content_block_start"],
                &["json"; 4],
                &end
            ]
            .concat()
        );
        assert_eq!(
            plan_of(0, true, "cut-after-2"),
            [&start[..], &["json", "json", "cut"]].concat()
        );
        assert_eq!(
            plan_of(2, false, "cut-after-9+chunk-delay-5"),
            [&start[..], &["delay", "text", "delay", "text", "cut"]].concat()
        );
        assert_eq!(
            plan_of(2, false, "cut-after-0"),
            [&start[..], &["cut"]].concat()
        );
        assert_eq!(
            plan_of(3, false, "stream-error"),
            [&start[..], &["text", "error"]].concat()
        );
        assert_eq!(
            plan_of(1, false, "malformed"),
            [&["message_start", "bad"][..], &start[1..], &["text"], &end].concat()
        );
        assert_eq!(
            plan_of(0, false, ""),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }
}
