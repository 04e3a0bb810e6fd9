//! Fuzz entry points of the data plane: everything that reads bytes from a client or a
//! provider.
//!
//! Each function takes arbitrary bytes, must never panic on its own, and asserts the
//! invariants it can check; a failed assertion is a finding. The fuzz targets
//! (`fuzz/fuzz_targets/`, cargo-fuzz) are one-line calls of these, and this crate's tests
//! replay every committed corpus file (`fuzz/corpus/<target>/`) through them, so a crash
//! found once stays a test (`docs/fuzzing.md`). Compiled only for tests and with the
//! `fuzzing` feature.
//!
//! Inputs that feed a stream start with a small header ([`Input`]): a selector byte (which
//! provider, which route), then the points where the payload is cut into the pieces fed one
//! after the other; every stream entry point checks that the outcome does not depend on
//! those cuts (nor on feeding one byte at a time).

#![allow(clippy::panic)]

mod request;
mod stream;

use bytes::Bytes;

use crate::providers::bedrock::eventstream::{Decoder, FrameError, Message};
use crate::sse::{data_event, event_data, SseSplitter};

pub use request::{anthropic_ingress, request};
pub use stream::{response, stream};

/// A stream input: `[selector][n][n cut points, u16 big-endian][payload]`.
#[derive(Debug)]
pub struct Input<'a> {
    /// Chooses what is fuzzed (a provider, a route, a mode); each target reads its bits.
    pub selector: u8,
    /// Where the payload is cut (each taken modulo `payload.len() + 1`).
    pub cuts: Vec<usize>,
    /// The bytes fed.
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads the header; a short input is an empty payload.
    pub fn read(data: &'a [u8]) -> Self {
        let selector = data.first().copied().unwrap_or(0);
        let count = usize::from(data.get(1).copied().unwrap_or(0) % 16);
        let rest = data.get(2..).unwrap_or_default();
        let count = count.min(rest.len() / 2);
        let cuts = rest[..count * 2]
            .chunks_exact(2)
            .map(|pair| usize::from(u16::from_be_bytes([pair[0], pair[1]])))
            .collect();
        Self {
            selector,
            cuts,
            payload: &rest[count * 2..],
        }
    }

    /// The header of an input with this selector and no cut (seeds).
    pub fn header(selector: u8) -> Vec<u8> {
        vec![selector, 0]
    }

    /// The payload in pieces, cut where the input says.
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        cut(self.payload, &self.cuts)
    }
}

/// `input` cut at `points` (any order; each taken modulo `input.len() + 1`).
pub fn cut<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::with_capacity(points.len() + 1);
    let mut last = 0;
    for point in points {
        pieces.push(&input[last..point]);
        last = point;
    }
    pieces.push(&input[last..]);
    pieces
}

/// One byte per piece.
pub fn bytewise(input: &[u8]) -> Vec<&[u8]> {
    input.chunks(1).collect()
}

/// What the SSE splitter made of a stream fed in pieces.
#[derive(Debug, PartialEq)]
struct Framed {
    events: Vec<Bytes>,
    remainder: Vec<u8>,
    too_large: bool,
}

fn frame_sse(pieces: &[&[u8]]) -> Framed {
    let mut splitter = SseSplitter::default();
    let mut events = Vec::new();
    for piece in pieces {
        match splitter.push(piece) {
            Ok(more) => events.extend(more),
            Err(_) => {
                return Framed {
                    events,
                    remainder: Vec::new(),
                    too_large: true,
                }
            }
        }
    }
    Framed {
        events,
        remainder: splitter.remainder().to_vec(),
        too_large: false,
    }
}

/// The SSE framer (`crate::sse`): the same events whatever the cuts, nothing lost or added
/// (events plus the unfinished tail are the input), every event ends at its first blank
/// line, and a framed `data:` payload without line breaks comes back as it was.
pub fn sse(data: &[u8]) {
    let input = Input::read(data);
    let whole = frame_sse(&[input.payload]);
    assert_eq!(frame_sse(&input.pieces()), whole, "depends on the cuts");
    assert_eq!(
        frame_sse(&bytewise(input.payload)),
        whole,
        "differs byte by byte"
    );
    let mut joined: Vec<u8> = whole.events.iter().flat_map(|e| e.to_vec()).collect();
    joined.extend_from_slice(&whole.remainder);
    assert_eq!(joined, input.payload, "bytes lost or added");
    for event in &whole.events {
        // An event is complete, and the splitter finds nothing earlier in it.
        let again = frame_sse(&[event.as_ref()]);
        assert_eq!(again.events.len(), 1, "event {event:?} splits again");
        assert!(again.remainder.is_empty());
        let _ = event_data(event);
    }
    if !input.payload.contains(&b'\n') && !input.payload.contains(&b'\r') {
        let framed = frame_sse(&[data_event(input.payload).as_slice()]);
        assert_eq!(framed.events.len(), 1);
        let data = event_data(&framed.events[0]);
        assert_eq!(
            data.as_deref(),
            Some(input.payload),
            "data: does not round trip"
        );
    }
}

/// An AWS event-stream message with these raw header bytes and payload, with correct
/// lengths and checksums.
pub fn eventstream_frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = u32::try_from(headers.len() + payload.len() + 16).unwrap_or(u32::MAX);
    let headers_len = u32::try_from(headers.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(headers.len() + payload.len() + 16);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&headers_len.to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Takes `[u16 length][bytes]` from the front of `rest` (shorter if `rest` ends first).
fn take_field<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let len = match rest {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    };
    let body = rest.get(2..).unwrap_or_default();
    let (field, tail) = body.split_at(len.min(body.len()));
    *rest = tail;
    field
}

/// An event-stream record: raw header bytes and payload.
pub type Record<'a> = (&'a [u8], &'a [u8]);

/// Records `[u16 len][raw headers][u16 len][payload]`… as valid frames, and the records.
pub fn eventstream_records(mut rest: &[u8]) -> (Vec<u8>, Vec<Record<'_>>) {
    let mut bytes = Vec::new();
    let mut records = Vec::new();
    while !rest.is_empty() {
        let headers = take_field(&mut rest);
        let payload = take_field(&mut rest);
        bytes.extend(eventstream_frame(headers, payload));
        records.push((headers, payload));
    }
    (bytes, records)
}

fn decode_frames(pieces: &[&[u8]]) -> (Vec<Message>, Result<bool, FrameError>) {
    let mut decoder = Decoder::default();
    let mut messages = Vec::new();
    for piece in pieces {
        if let Err(error) = decoder.push_into(piece, &mut messages) {
            return (messages, Err(error));
        }
    }
    (messages, Ok(decoder.has_partial()))
}

/// The AWS event-stream decoder (Bedrock's stream framing): the same messages and the same
/// error whatever the cuts. Selector bit 0 set: the payload is records made into frames with
/// valid checksums ([`eventstream_records`]), and each message decoded from them carries
/// its record's payload.
pub fn eventstream(data: &[u8]) {
    let input = Input::read(data);
    let (bytes, records) = if input.selector & 1 == 1 {
        eventstream_records(input.payload)
    } else {
        (input.payload.to_vec(), Vec::new())
    };
    let cuts = cut(&bytes, &input.cuts);
    let whole = decode_frames(&[bytes.as_slice()]);
    assert_eq!(decode_frames(&cuts), whole, "depends on the cuts");
    assert_eq!(
        decode_frames(&bytewise(&bytes)),
        whole,
        "differs byte by byte"
    );
    let (messages, result) = &whole;
    for (message, (_, payload)) in messages.iter().zip(&records) {
        assert_eq!(message.payload.as_ref(), *payload, "payload changed");
    }
    if input.selector & 1 == 1 && result.is_ok() {
        assert_eq!(messages.len(), records.len(), "a valid frame was lost");
        assert_eq!(result, &Ok(false), "a valid stream left a partial frame");
    }
}

#[cfg(test)]
pub(crate) mod replay;
