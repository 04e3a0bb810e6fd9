//! Incremental decoding of the AWS event-stream binary framing
//! (`application/vnd.amazon.eventstream`), the body of Bedrock's streamed answers.
//!
//! ```text
//! [total_len u32 BE][headers_len u32 BE][prelude_crc u32 BE = CRC32(first 8 bytes)]
//! [headers: headers_len bytes][payload: total_len - headers_len - 16 bytes]
//! [message_crc u32 BE = CRC32(every preceding byte of the message)]
//! header := name_len u8 | name | value_type u8 | value
//! ```
//!
//! Bytes may arrive split anywhere; [`Decoder::push`] buffers the unfinished tail (bounded by
//! [`MAX_MESSAGE_BYTES`]) and returns each complete message. A checksum mismatch or an
//! impossible length is fatal: the stream cannot be resynchronised.

use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted (AWS's own limit: 16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest headers section accepted (AWS's own limit: 128 KiB).
pub const MAX_HEADERS_BYTES: usize = 128 * 1024;
/// Prelude (two lengths and their CRC) plus the trailing message CRC.
const OVERHEAD: usize = 16;
const PRELUDE: usize = 12;

/// Why the stream cannot be decoded further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A prelude or message CRC32 does not match.
    #[error("event-stream checksum mismatch")]
    Checksum,
    /// A length is impossible or over the limits.
    #[error("event-stream frame of invalid size")]
    Size,
    /// The headers section cannot be parsed.
    #[error("event-stream headers are malformed")]
    Headers,
}

/// A header value (only strings are read by the translator; others are kept for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Type 7.
    String(String),
    /// Type 6.
    Bytes(Bytes),
    /// Types 0-5, 8 (booleans, integers, timestamps), as an integer.
    Int(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers in order.
    pub headers: Vec<(String, HeaderValue)>,
    /// The payload (JSON for Bedrock's events and exceptions).
    pub payload: Bytes,
}

impl Message {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// The incremental decoder. One per stream.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: BytesMut,
    /// The pending message's total length, once its prelude was checked.
    expected: Option<usize>,
}

impl Decoder {
    /// Feeds bytes (split anywhere) and returns every message they complete, in order. After
    /// an `Err` the decoder must not be used again.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut messages = Vec::new();
        self.push_into(bytes, &mut messages).map(|()| messages)
    }

    /// [`push`](Self::push) appending to `messages`: on `Err`, `messages` holds the messages
    /// decoded before the bad frame.
    pub fn push_into(
        &mut self,
        bytes: &[u8],
        messages: &mut Vec<Message>,
    ) -> Result<(), FrameError> {
        self.pending.extend_from_slice(bytes);
        loop {
            let total = match self.expected {
                Some(total) => total,
                None => {
                    if self.pending.len() < PRELUDE {
                        break;
                    }
                    let total = self.prelude()?;
                    self.expected = Some(total);
                    total
                }
            };
            if self.pending.len() < total {
                break;
            }
            let frame = self.pending.split_to(total).freeze();
            self.expected = None;
            messages.push(decode(frame)?);
        }
        Ok(())
    }

    /// Whether a partial message is buffered.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Checks the buffered prelude; the message's total length.
    fn prelude(&self) -> Result<usize, FrameError> {
        let p = &self.pending[..PRELUDE];
        let total = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let headers = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
        let crc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if crc32fast::hash(&p[..8]) != crc {
            return Err(FrameError::Checksum);
        }
        if !(OVERHEAD..=MAX_MESSAGE_BYTES).contains(&total)
            || headers > MAX_HEADERS_BYTES
            || headers > total - OVERHEAD
        {
            return Err(FrameError::Size);
        }
        Ok(total)
    }
}

/// Decodes one whole frame (prelude already checked).
fn decode(frame: Bytes) -> Result<Message, FrameError> {
    let total = frame.len();
    let crc_at = total - 4;
    let crc = u32::from_be_bytes([
        frame[crc_at],
        frame[crc_at + 1],
        frame[crc_at + 2],
        frame[crc_at + 3],
    ]);
    if crc32fast::hash(&frame[..crc_at]) != crc {
        return Err(FrameError::Checksum);
    }
    let headers_len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    let mut headers_bytes = frame.slice(PRELUDE..PRELUDE + headers_len);
    let payload = frame.slice(PRELUDE + headers_len..crc_at);
    let mut headers = Vec::new();
    while headers_bytes.has_remaining() {
        headers.push(header(&mut headers_bytes)?);
    }
    Ok(Message { headers, payload })
}

fn header(buf: &mut Bytes) -> Result<(String, HeaderValue), FrameError> {
    let take = |buf: &mut Bytes, n: usize| -> Result<Bytes, FrameError> {
        if buf.remaining() < n {
            return Err(FrameError::Headers);
        }
        Ok(buf.split_to(n))
    };
    let name_len = usize::from(take(buf, 1)?[0]);
    let name = String::from_utf8(take(buf, name_len)?.to_vec()).map_err(|_| FrameError::Headers)?;
    let kind = take(buf, 1)?[0];
    let int = |bytes: Bytes| -> i64 {
        let mut padded = [0u8; 8];
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        if negative {
            padded = [0xff; 8];
        }
        padded[8 - bytes.len()..].copy_from_slice(&bytes);
        i64::from_be_bytes(padded)
    };
    let value = match kind {
        0 => HeaderValue::Int(1),
        1 => HeaderValue::Int(0),
        2 => HeaderValue::Int(int(take(buf, 1)?)),
        3 => HeaderValue::Int(int(take(buf, 2)?)),
        4 => HeaderValue::Int(int(take(buf, 4)?)),
        5 | 8 => HeaderValue::Int(int(take(buf, 8)?)),
        6 | 7 => {
            let len = take(buf, 2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let value = take(buf, len)?;
            if kind == 6 {
                HeaderValue::Bytes(value)
            } else {
                HeaderValue::String(
                    String::from_utf8(value.to_vec()).map_err(|_| FrameError::Headers)?,
                )
            }
        }
        9 => {
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&take(buf, 16)?);
            HeaderValue::Uuid(uuid)
        }
        _ => return Err(FrameError::Headers),
    };
    Ok((name, value))
}

/// Encodes a message with string headers (tests and fixtures; the mock has its own encoder).
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = (head.len() + payload.len() + OVERHEAD) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    #[test]
    fn decodes_whole_and_split_messages() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event("contentBlockDelta", r#"{"delta":{"text":"hi"}}"#));
        for split in 0..bytes.len() {
            let mut decoder = Decoder::default();
            let mut messages = decoder.push(&bytes[..split]).unwrap();
            messages.extend(decoder.push(&bytes[split..]).unwrap());
            assert_eq!(messages.len(), 2, "split at {split}");
            assert_eq!(messages[0].header(":event-type"), Some("messageStart"));
            assert_eq!(messages[1].payload.as_ref(), br#"{"delta":{"text":"hi"}}"#);
            assert!(!decoder.has_partial());
        }
        // One byte at a time.
        let mut decoder = Decoder::default();
        let count: usize = bytes
            .iter()
            .map(|b| decoder.push(std::slice::from_ref(b)).unwrap().len())
            .sum();
        assert_eq!(count, 2);
    }

    #[test]
    fn checksum_mismatches_are_fatal() {
        let good = event("messageStart", r#"{"role":"assistant"}"#);
        // A payload byte flipped: the message CRC fails.
        let mut bad = good.clone();
        let at = bad.len() - 6;
        bad[at] ^= 0x01;
        assert_eq!(Decoder::default().push(&bad), Err(FrameError::Checksum));
        // A length flipped: the prelude CRC fails before the length is trusted.
        let mut bad = good.clone();
        bad[3] ^= 0x40;
        assert_eq!(Decoder::default().push(&bad), Err(FrameError::Checksum));
        // The prelude alone is enough to fail.
        assert_eq!(
            Decoder::default().push(&bad[..12]),
            Err(FrameError::Checksum)
        );
    }

    #[test]
    fn impossible_sizes_are_refused() {
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&((MAX_MESSAGE_BYTES + 1) as u32).to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(Decoder::default().push(&prelude), Err(FrameError::Size));
        let mut small = Vec::new();
        small.extend_from_slice(&15u32.to_be_bytes());
        small.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&small);
        small.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(Decoder::default().push(&small), Err(FrameError::Size));
    }

    #[test]
    fn typed_headers_are_skipped_correctly() {
        // An i32 header (type 4) and a bool (type 0) before the string header.
        let mut head = vec![4u8];
        head.extend_from_slice(b"size");
        head.push(4);
        head.extend_from_slice(&(-2i32).to_be_bytes());
        head.push(1);
        head.push(b'b');
        head.push(0);
        let string = encode(&[(":event-type", "metadata")], b"{}");
        let string_head = &string[12..string.len() - 6];
        head.extend_from_slice(string_head);
        let total = (head.len() + 2 + OVERHEAD) as u32;
        let mut out = total.to_be_bytes().to_vec();
        out.extend_from_slice(&(head.len() as u32).to_be_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(b"{}");
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        let messages = Decoder::default().push(&out).unwrap();
        assert_eq!(messages[0].headers[0].1, HeaderValue::Int(-2));
        assert_eq!(messages[0].headers[1].1, HeaderValue::Int(1));
        assert_eq!(messages[0].header(":event-type"), Some("metadata"));
    }
}
