//! Incremental Server-Sent Events framing: bytes in (split anywhere), whole events out.
//!
//! Upstreams write events across arbitrary TCP reads; translators and the usage meter need
//! whole events. [`SseSplitter`] keeps the unfinished tail (bounded) and returns each complete
//! event's raw bytes (terminator included) so pass-through forwards them unchanged.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

/// Largest event accepted; a longer one means a broken upstream.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Splits a byte stream into SSE events at blank lines (`\n\n`, `\r\n\r\n`, `\r\r`).
#[derive(Debug, Default)]
pub struct SseSplitter {
    pending: BytesMut,
    /// Where to resume scanning for a terminator (avoids rescanning long tails).
    scanned: usize,
}

/// The splitter's pending tail grew past [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream sent an SSE event larger than {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

impl SseSplitter {
    /// Feeds bytes; returns every event completed by them, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, EventTooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.pending, self.scanned) {
            events.push(self.pending.split_to(end).freeze());
            self.scanned = 0;
        }
        self.scanned = self.pending.len().saturating_sub(3);
        if self.pending.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(events)
    }

    /// Bytes of an unfinished event left when the stream ended.
    pub fn remainder(&self) -> &[u8] {
        &self.pending
    }

    /// Drops any unfinished event.
    pub fn clear(&mut self) {
        self.pending.advance(self.pending.len());
        self.scanned = 0;
    }
}

/// Index just past the first event terminator at or after `from`.
fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        // Jump to the next line ending: events are mostly long lines of JSON.
        i += memchr::memchr2(b'\n', b'\r', buf.get(i..)?)?;
        match buf[i] {
            b'\n' => {
                if buf.get(i + 1) == Some(&b'\n') {
                    return Some(i + 2);
                }
                if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                    return Some(i + 3);
                }
            }
            _ => {
                if buf.get(i + 1) == Some(&b'\r') {
                    return Some(i + 2);
                }
                if buf.get(i + 1) == Some(&b'\n') {
                    if buf.get(i + 2) == Some(&b'\r') && buf.get(i + 3) == Some(&b'\n') {
                        return Some(i + 4);
                    }
                    if buf.get(i + 2) == Some(&b'\n') {
                        return Some(i + 3);
                    }
                }
            }
        }
        i += 1;
    }
    None
}

/// The `data` payload of an event: `data:` lines joined with `\n` (a single leading space
/// after the colon removed), or `None` for comment-only or data-less events. Borrowed from
/// the event when it has a single `data:` line (the usual case).
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    for line in lines(event) {
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            match &mut data {
                Some(existing) => {
                    let joined = existing.to_mut();
                    joined.push(b'\n');
                    joined.extend_from_slice(rest);
                }
                None => data = Some(Cow::Borrowed(rest)),
            }
        }
    }
    data
}

/// Lines of an event, ended by `\r\n`, `\n` or `\r` (the SSE spec accepts all three).
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match (rest.get(end), rest.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(_), _) => 1,
            (None, _) => 0,
        };
        rest = &rest[end + skip..];
        Some(line)
    })
}

/// Frames a JSON payload as one SSE event.
pub fn data_event(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = SseSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            for event in splitter.push(chunk).unwrap_or_default() {
                out.push(event.to_vec());
            }
        }
        out
    }

    #[test]
    fn splits_on_all_terminators() {
        let events = split_all(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\r\n: x\n\n"]);
        assert_eq!(events.len(), 5);
        assert_eq!(event_data(&events[0]).as_deref(), Some(b"a".as_slice()));
        assert_eq!(event_data(&events[1]).as_deref(), Some(b"b".as_slice()));
        assert_eq!(event_data(&events[3]).as_deref(), Some(b"d".as_slice()));
        assert_eq!(event_data(&events[4]), None);
    }

    #[test]
    fn multi_line_data_joins() {
        assert_eq!(
            event_data(b"event: x\ndata: {\"a\":\ndata:1}\n\n").as_deref(),
            Some(b"{\"a\":\n1}".as_slice())
        );
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut splitter = SseSplitter::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(splitter.push(&big), Err(EventTooLarge));
    }

    proptest! {
        /// Whatever the chunk boundaries, the events and their bytes are the same.
        #[test]
        fn chunk_boundaries_do_not_matter(
            payloads in proptest::collection::vec("[a-z{}\":, ]{0,40}", 1..12),
            terminators in proptest::collection::vec(0usize..3, 12),
            cuts in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let mut stream = Vec::new();
            for (i, payload) in payloads.iter().enumerate() {
                stream.extend_from_slice(b"data: ");
                stream.extend_from_slice(payload.as_bytes());
                stream.extend_from_slice(match terminators[i % terminators.len()] {
                    0 => b"\n\n".as_slice(),
                    1 => b"\r\n\r\n".as_slice(),
                    _ => b"\r\r".as_slice(),
                });
            }
            let whole = split_all(&[&stream]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for point in points {
                pieces.push(&stream[last..point]);
                last = point;
            }
            pieces.push(&stream[last..]);
            let split = split_all(&pieces);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(whole.len(), payloads.len());
            prop_assert_eq!(whole.concat(), stream);
            for (event, payload) in whole.iter().zip(&payloads) {
                let data = event_data(event);
                prop_assert_eq!(data.as_deref(), Some(payload.as_bytes()));
            }
        }
    }
}
