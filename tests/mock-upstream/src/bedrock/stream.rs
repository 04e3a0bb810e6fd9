//! ConverseStream's answer as AWS event-stream frames (real CRC32s): `messageStart`, the
//! text deltas, `contentBlockStop`, the tool block (`contentBlockStart`, `toolUse.input`
//! pieces, `contentBlockStop`), `messageStop`, then `metadata` with the usage. Each delta
//! frame goes out in two pieces split mid-frame; scripted delays, cuts, a malformed payload,
//! an in-stream `throttlingException` and a corrupted CRC.

use bytes::Bytes;

use super::{Plan, TOOL_INPUT_PIECES};
use crate::behaviour::Behaviour;
use crate::openai::quote;
use crate::stream::Step;

/// One message: string headers, payload, both CRCs.
pub(crate) fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = u32::try_from(head.len() + payload.len() + 16).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn event(kind: &str, payload: &str) -> Vec<u8> {
    frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// One event of the stream.
enum Event {
    Frame(Vec<u8>),
    /// A `contentBlockDelta` (delays, cuts and faults count these).
    Delta(Vec<u8>),
}

fn events(plan: &Plan) -> Vec<Event> {
    let mut events = vec![Event::Frame(event(
        "messageStart",
        r#"{"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ","role":"assistant"}"#,
    ))];
    let mut index = 0;
    if !plan.text.is_empty() {
        for text in &plan.text {
            events.push(Event::Delta(event(
                "contentBlockDelta",
                &format!(
                    r#"{{"contentBlockIndex":{index},"delta":{{"text":{}}},"p":"abcd"}}"#,
                    quote(text)
                ),
            )));
        }
        events.push(Event::Frame(event(
            "contentBlockStop",
            &format!(r#"{{"contentBlockIndex":{index},"p":"ab"}}"#),
        )));
        index += 1;
    }
    if let Some((id, name)) = &plan.tool {
        events.push(Event::Frame(event(
            "contentBlockStart",
            &format!(
                r#"{{"contentBlockIndex":{index},"start":{{"toolUse":{{"toolUseId":{},"name":{}}}}},"p":"abc"}}"#,
                quote(id),
                quote(name)
            ),
        )));
        for piece in TOOL_INPUT_PIECES {
            events.push(Event::Delta(event(
                "contentBlockDelta",
                &format!(r#"{{"contentBlockIndex":{index},"delta":{{"toolUse":{{"input":{}}}}},"p":"a"}}"#, quote(piece)),
            )));
        }
        events.push(Event::Frame(event(
            "contentBlockStop",
            &format!(r#"{{"contentBlockIndex":{index},"p":"abcdef"}}"#),
        )));
    }
    events.push(Event::Frame(event(
        "messageStop",
        &format!(
            r#"{{"p":"abcdefgh","stopReason":{}}}"#,
            quote(plan.stop_reason)
        ),
    )));
    events.push(Event::Frame(event(
        "metadata",
        &format!(
            r#"{{"metrics":{{"latencyMs":42}},"p":"abc","usage":{}}}"#,
            plan.usage()
        ),
    )));
    events
}

/// The whole stream with the behaviour's pacing and faults.
pub(super) fn plan(plan: &Plan, behaviour: &Behaviour) -> Vec<Step> {
    let events = events(plan);
    let total = events
        .iter()
        .filter(|e| matches!(e, Event::Delta(_)))
        .count();
    // `cut-after-<n>`: after `n` deltas, or after the last one when there are fewer.
    let cut_at = behaviour.cut_after.map(|n| n.min(total));
    let mut steps = Vec::new();
    let mut deltas = 0;
    for event in events {
        match event {
            Event::Frame(bytes) => {
                if cut_at == Some(deltas) && deltas == total && total > 0 {
                    steps.push(Step::Cut);
                    return steps;
                }
                steps.push(Step::Event(Bytes::from(bytes)));
            }
            Event::Delta(mut bytes) => {
                if cut_at == Some(deltas) {
                    steps.push(Step::Cut);
                    return steps;
                }
                if behaviour.stream_error && deltas == 1 {
                    steps.push(Step::Event(Bytes::from(frame(
                        &[
                            (":exception-type", "throttlingException"),
                            (":content-type", "application/json"),
                            (":message-type", "exception"),
                        ],
                        br#"{"message":"Too many tokens, please wait before trying again."}"#,
                    ))));
                    return steps;
                }
                if behaviour.corrupt_crc && deltas == 1 {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                }
                if !behaviour.chunk_delay.is_zero() {
                    steps.push(Step::Delay(behaviour.chunk_delay));
                }
                // Split mid-frame: the decoder must join the pieces.
                let bytes = Bytes::from(bytes);
                let middle = bytes.len() / 2;
                steps.push(Step::Event(bytes.slice(..middle)));
                steps.push(Step::Event(bytes.slice(middle..)));
                deltas += 1;
            }
        }
    }
    if behaviour.malformed {
        let at = steps.len().min(1);
        steps.insert(
            at,
            Step::Event(Bytes::from(event("contentBlockDelta", "{not json"))),
        );
    }
    steps
}
