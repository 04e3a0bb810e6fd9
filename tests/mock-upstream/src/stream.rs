//! Streamed answers: the event sequence is planned up front (events, delays, a cut), then a
//! spawned task feeds it through a channel to the response body, frame by frame, so each event
//! goes out as it is produced. JSON answers with `chunk-delay` or `cut-after` go the same way,
//! as timed pieces of their body.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};

use crate::behaviour::Behaviour;
use crate::body::StreamItem;
use crate::openai::{self, StreamEvents};

/// Frames buffered between the producing task and hyper.
const STREAM_BUFFER: usize = 8;

/// How long a `cut-after` stream waits after its last frame was taken by hyper before
/// aborting, so the frames already produced reach the socket before the connection dies.
const CUT_GRACE: Duration = Duration::from_millis(20);

/// Content chunks of `gated` streams let go by the test, one permit each (process-wide: a
/// test process runs one test under nextest).
static GATE: Semaphore = Semaphore::const_new(0);

/// Lets one more content chunk of a `gated` stream go (whichever stream of this process
/// waits first).
pub fn open_gate() {
    GATE.add_permits(1);
}

/// Starts producing the stream; the receiver is the response body's source.
pub(crate) fn start(
    events: &StreamEvents<'_>,
    behaviour: &Behaviour,
) -> mpsc::Receiver<StreamItem> {
    start_steps(plan_stream(events, behaviour))
}

/// Starts producing an already planned stream (the Anthropic routes plan their own).
pub(crate) fn start_steps(steps: Vec<Step>) -> mpsc::Receiver<StreamItem> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(produce(tx, steps));
    rx
}

/// Starts producing a JSON answer in `pieces` timed pieces (see [`plan_pieces`]).
pub(crate) fn start_pieces(
    body: Bytes,
    pieces: usize,
    behaviour: &Behaviour,
) -> mpsc::Receiver<StreamItem> {
    start_steps(plan_pieces(body, pieces, behaviour))
}

/// The body split into `pieces` (at least one) parts of about equal size, the chunk delay
/// before each; with `cut-after-<n>`, only the first `min(n, pieces - 1)` parts, then the cut,
/// so a cut answer is always incomplete.
fn plan_pieces(body: Bytes, pieces: usize, behaviour: &Behaviour) -> Vec<Step> {
    let pieces = pieces.clamp(1, body.len().max(1));
    let sent = match behaviour.cut_after {
        Some(n) => n.min(pieces - 1),
        None => pieces,
    };
    let mut steps = Vec::new();
    for i in 0..sent {
        if !behaviour.chunk_delay.is_zero() {
            steps.push(Step::Delay(behaviour.chunk_delay));
        }
        let start = body.len() * i / pieces;
        let end = body.len() * (i + 1) / pieces;
        steps.push(Step::Event(body.slice(start..end)));
    }
    if behaviour.cut_after.is_some() {
        steps.push(Step::Cut);
    }
    steps
}

/// One step of a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes to send (a whole SSE frame).
    Event(Bytes),
    Delay(Duration),
    /// Wait until the test opens the gate once more ([`open_gate`]).
    Gate,
    /// Drop the connection without the terminating chunk (ends the stream).
    Cut,
}

/// The whole stream, precomputed.
fn plan_stream(events: &StreamEvents<'_>, behaviour: &Behaviour) -> Vec<Step> {
    let event = |data: &str| Step::Event(Bytes::from(openai::sse(data)));
    let mut steps = Vec::new();
    if let Some(prelude) = events.prelude() {
        steps.push(event(&prelude));
    }
    if let Some(role) = events.role() {
        steps.push(event(&role));
    }
    for (i, piece) in events.pieces().iter().enumerate() {
        if behaviour.cut_after == Some(i) {
            break;
        }
        if !behaviour.chunk_delay.is_zero() {
            steps.push(Step::Delay(behaviour.chunk_delay));
        }
        if behaviour.gated {
            steps.push(Step::Gate);
        }
        steps.push(event(piece));
    }
    if behaviour.cut_after.is_some() {
        // After `cut_after` content (or tool argument) chunks, or after the last one when
        // there are fewer.
        steps.push(Step::Cut);
    } else {
        steps.push(event(&events.finish()));
        if events.include_usage {
            steps.push(event(&events.usage()));
        }
        steps.push(Step::Event(Bytes::from_static(b"data: [DONE]\n\n")));
    }
    if behaviour.malformed {
        let second = steps
            .iter()
            .position(|s| matches!(s, Step::Event(_)))
            .map_or(0, |first| first + 1);
        steps.insert(
            second,
            Step::Event(Bytes::from_static(b"data: {not json\n\n")),
        );
    }
    steps
}

/// Feeds the planned stream to hyper; stops as soon as the client is gone.
async fn produce(tx: mpsc::Sender<StreamItem>, steps: Vec<Step>) {
    for step in steps {
        match step {
            Step::Event(bytes) => {
                if tx.send(Ok(bytes)).await.is_err() {
                    return;
                }
            }
            Step::Delay(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = tx.closed() => return,
                }
            }
            Step::Gate => {
                tokio::select! {
                    permit = GATE.acquire() => {
                        if let Ok(permit) = permit {
                            permit.forget();
                        }
                    }
                    () = tx.closed() => return,
                }
            }
            Step::Cut => {
                // Wait until hyper has taken every frame (it then flushes them), give the
                // flush a moment, then fail the body so hyper drops the connection without
                // the terminating zero-size chunk.
                let Ok(mut permits) = tx.reserve_many(tx.max_capacity()).await else {
                    return;
                };
                tokio::time::sleep(CUT_GRACE).await;
                if let Some(permit) = permits.next() {
                    permit.send(Err(io::Error::other("mock upstream: cut-after")));
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{Answer, Dialect, Flavour, Usage};

    fn plan(flavour: Flavour, n: usize, include_usage: bool, spec: &str) -> Vec<String> {
        plan_in(Dialect::OpenAi, flavour, n, include_usage, spec)
    }

    fn plan_in(
        dialect: Dialect,
        flavour: Flavour,
        n: usize,
        include_usage: bool,
        spec: &str,
    ) -> Vec<String> {
        let chunks = openai::chunks(n);
        let events = StreamEvents {
            answer: Answer {
                id: "x",
                created: 1,
                model: "m",
                chunks: &chunks,
                tool: None,
                usage: Usage {
                    prompt: 1,
                    completion: 1,
                },
                finish_reason: "stop",
                dialect,
            },
            flavour,
            include_usage,
        };
        let mut behaviour = Behaviour::default();
        behaviour.apply(spec);
        plan_stream(&events, &behaviour)
            .into_iter()
            .map(|step| match step {
                Step::Event(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if text.contains("{not json") {
                        "bad".to_owned()
                    } else if text.contains("prompt_filter_results") {
                        "prompt-filters".to_owned()
                    } else if text.contains("[DONE]") {
                        "done".to_owned()
                    } else if text.contains("\"choices\":[]") {
                        "usage".to_owned()
                    } else if text.contains("\"stop\"") {
                        "finish".to_owned()
                    } else if text.contains("\"role\"") {
                        "role".to_owned()
                    } else {
                        "content".to_owned()
                    }
                }
                Step::Delay(_) => "delay".to_owned(),
                Step::Gate => "gate".to_owned(),
                Step::Cut => "cut".to_owned(),
            })
            .collect()
    }

    #[test]
    fn stream_plans() {
        assert_eq!(
            plan(Flavour::Chat, 2, false, ""),
            ["role", "content", "content", "finish", "done"]
        );
        assert_eq!(
            plan(Flavour::Chat, 1, true, "chunk-delay-5"),
            ["role", "delay", "content", "finish", "usage", "done"]
        );
        assert_eq!(
            plan(Flavour::Chat, 3, false, "cut-after-1"),
            ["role", "content", "cut"]
        );
        assert_eq!(
            plan(Flavour::Chat, 2, false, "cut-after-9"),
            ["role", "content", "content", "cut"]
        );
        assert_eq!(
            plan(Flavour::Chat, 1, false, "malformed"),
            ["role", "bad", "content", "finish", "done"]
        );
        assert_eq!(
            plan(Flavour::Completion, 2, true, "malformed"),
            ["content", "bad", "content", "finish", "usage", "done"]
        );
        assert_eq!(plan(Flavour::Completion, 1, false, "cut-after-0"), ["cut"]);
        assert_eq!(
            plan_in(Dialect::Azure, Flavour::Chat, 1, true, ""),
            [
                "prompt-filters",
                "role",
                "content",
                "finish",
                "usage",
                "done"
            ]
        );
        assert_eq!(
            plan_in(Dialect::Azure, Flavour::Completion, 2, false, "malformed"),
            [
                "prompt-filters",
                "bad",
                "content",
                "content",
                "finish",
                "done"
            ]
        );
    }

    fn pieces(body: &'static str, n: usize, spec: &str) -> Vec<String> {
        let mut behaviour = Behaviour::default();
        behaviour.apply(spec);
        plan_pieces(Bytes::from_static(body.as_bytes()), n, &behaviour)
            .into_iter()
            .map(|step| match step {
                Step::Event(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Step::Delay(_) => "delay".to_owned(),
                Step::Gate => "gate".to_owned(),
                Step::Cut => "cut".to_owned(),
            })
            .collect()
    }

    #[test]
    fn json_piece_plans() {
        assert_eq!(
            pieces("abcdefghij", 3, "chunk-delay-5"),
            ["delay", "abc", "delay", "def", "delay", "ghij"]
        );
        assert_eq!(
            pieces("abcdefghij", 3, "cut-after-2"),
            ["abc", "def", "cut"]
        );
        // A cut answer is always incomplete.
        assert_eq!(
            pieces("abcdefghij", 3, "cut-after-7"),
            ["abc", "def", "cut"]
        );
        assert_eq!(pieces("abcdefghij", 1, "cut-after-1"), ["cut"]);
        assert_eq!(pieces("ab", 5, ""), ["a", "b"]);
        assert_eq!(pieces("ab", 0, ""), ["ab"]);
    }
}
