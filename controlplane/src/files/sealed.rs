//! Sealed files: AES-256-GCM in fixed-size chunks, so stored file contents are encrypted and
//! decrypted as streams in both directions, with bounded memory.
//!
//! # Format (a storage format: changing it needs a new magic)
//!
//! ```text
//! header = "OMGSEAL1" (8 bytes) || prefix (7 random bytes, from the system CSPRNG)
//! chunk i = AES-256-GCM(key, nonce = prefix || i as u32 big-endian || last as u8,
//!                       aad = header, plaintext_i) = ciphertext_i || tag (16 bytes)
//! file = header || chunk 0 || chunk 1 || … || chunk n-1
//! ```
//!
//! Every chunk holds exactly [`CHUNK`] plaintext bytes except the last, which holds 0 to
//! [`CHUNK`] bytes and is the only one sealed with `last = 1`. Chunk counters start at 0. An
//! empty file is the header and one empty last chunk; a file of exactly k × [`CHUNK`] bytes
//! ends with a full last chunk (no empty chunk after it). So [`sealed_len`] is
//! `15 + n + 16 × max(1, ⌈n / CHUNK⌉)`.
//!
//! What it detects: a changed byte anywhere (`Tampered`; in the magic, `NotSealed`); chunks
//! reordered, repeated or taken from another file (the counter, and the per-file random prefix
//! in both nonce and AAD: `Tampered`); a file cut at a chunk boundary (no last chunk:
//! `Truncated`) or inside one (`Tampered`: indistinguishable from a changed short last
//! chunk); bytes after a full-size last chunk (`TrailingData`); a wrong key (`Tampered`).
//!
//! Nonces: 56 random bits per file and a 32-bit counter. A file is at most 2^32 chunks
//! (256 TiB); a [`Sealer`] refuses to seal more rather than reuse a nonce. Keys are
//! per-deployment secrets (callers derive or look them up); this module never logs them.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

/// The plaintext bytes of every chunk but the last.
pub const CHUNK: usize = 65536;
/// The first bytes of every sealed file.
pub const MAGIC: &[u8; 8] = b"OMGSEAL1";
/// The header: the magic and the random nonce prefix.
pub const HEADER_LEN: usize = MAGIC.len() + PREFIX_LEN;
/// The authentication tag after each chunk's ciphertext.
pub const TAG_LEN: usize = 16;

const PREFIX_LEN: usize = 7;
/// A full chunk as stored.
const SEALED_CHUNK: usize = CHUNK + TAG_LEN;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the system random number generator failed")]
    Random,
    #[error("not a sealed file (bad magic)")]
    NotSealed,
    #[error("a sealed chunk failed authentication (changed, reordered, from another file, or the wrong key)")]
    Tampered,
    #[error("the sealed file ends before its last chunk")]
    Truncated,
    #[error("bytes follow the last chunk of the sealed file")]
    TrailingData,
    #[error("the source stream failed: {0}")]
    Source(String),
    /// More than 2^32 chunks (256 TiB): sealing more would reuse a nonce.
    #[error("the file is too large to seal (more than 2^32 chunks)")]
    TooLarge,
    /// The cipher refused the key (cannot happen for 32 bytes).
    #[error("the key is not an AES-256 key")]
    Key,
}

/// The stored size of a plaintext of `plain_len` bytes (`u64::MAX` if it would not fit).
pub fn sealed_len(plain_len: u64) -> u64 {
    exact_sealed_len(plain_len).unwrap_or(u64::MAX)
}

fn exact_sealed_len(plain_len: u64) -> Option<u64> {
    let chunks = plain_len.div_ceil(CHUNK as u64).max(1);
    (HEADER_LEN as u64)
        .checked_add(plain_len)?
        .checked_add(chunks.checked_mul(TAG_LEN as u64)?)
}

/// The plaintext size of a sealed file of `sealed_len` bytes; `None` if no plaintext seals to
/// that size (a stored object's size tells its plaintext size without opening it).
pub fn plain_len(sealed_len: u64) -> Option<u64> {
    let body = sealed_len.checked_sub(HEADER_LEN as u64)?;
    let chunks = body.div_ceil(SEALED_CHUNK as u64).max(1);
    let plain = body.checked_sub(chunks * TAG_LEN as u64)?;
    (exact_sealed_len(plain) == Some(sealed_len)).then_some(plain)
}

fn cipher(key: &[u8; 32]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .ok()
        .map(LessSafeKey::new)
}

fn nonce(header: &[u8], counter: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..PREFIX_LEN].copy_from_slice(&header[MAGIC.len()..HEADER_LEN]);
    nonce[PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// Encrypts a plaintext pushed in pieces of any size into the sealed format.
pub struct Sealer {
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
    header_sent: bool,
    /// The next chunk's counter; `None` once 2^32 chunks were sealed.
    counter: Option<u32>,
    /// Plaintext not sealed yet: at most [`CHUNK`] bytes.
    pending: Vec<u8>,
}

impl Sealer {
    /// A sealer with a fresh random nonce prefix.
    pub fn new(key: &[u8; 32]) -> Result<Self, SealError> {
        let mut prefix = [0u8; PREFIX_LEN];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| SealError::Random)?;
        Self::with_prefix(key, prefix)
    }

    fn with_prefix(key: &[u8; 32], prefix: [u8; PREFIX_LEN]) -> Result<Self, SealError> {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()..].copy_from_slice(&prefix);
        Ok(Self {
            key: cipher(key).ok_or(SealError::Key)?,
            header,
            header_sent: false,
            counter: Some(0),
            pending: Vec::with_capacity(CHUNK + TAG_LEN),
        })
    }

    /// Takes more plaintext; returns the header (the first time) and the chunks now complete.
    /// A full chunk is held until more plaintext or [`Sealer::finish`] says whether it is the
    /// last. Past 2^32 chunks nothing more is sealed (the output then opens as `Truncated`;
    /// [`seal_stream`] fails with `TooLarge`).
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        if !self.header_sent {
            self.header_sent = true;
            out.push(Bytes::copy_from_slice(&self.header));
        }
        while !data.is_empty() {
            if self.pending.len() == CHUNK {
                match self.seal_pending(false) {
                    Some(chunk) => out.push(chunk),
                    // The counter is spent: drop the rest rather than reuse a nonce.
                    None => break,
                }
            }
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        out
    }

    /// The last chunk (with the header before it if nothing was pushed).
    pub fn finish(mut self) -> Bytes {
        let last = self.seal_pending(true).unwrap_or_default();
        if self.header_sent {
            return last;
        }
        let mut out = Vec::with_capacity(HEADER_LEN + last.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&last);
        out.into()
    }

    /// Seals the pending plaintext as the next chunk; `None` once the counter is spent.
    fn seal_pending(&mut self, last: bool) -> Option<Bytes> {
        let counter = self.counter?;
        let mut chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK + TAG_LEN));
        let sealed = self.key.seal_in_place_append_tag(
            nonce(&self.header, counter, last),
            Aad::from(&self.header),
            &mut chunk,
        );
        self.counter = counter.checked_add(1).filter(|_| sealed.is_ok());
        sealed.ok().map(|()| chunk.into())
    }
}

/// Decrypts a sealed file pushed in pieces of any size.
pub struct Opener {
    /// `None` only if the cipher refused the key (cannot happen): every chunk is `Tampered`.
    key: Option<LessSafeKey>,
    /// The header bytes received so far.
    header: Vec<u8>,
    /// The next chunk's counter; `None` after 2^32 chunks (no further chunk can be valid).
    counter: Option<u32>,
    /// Sealed bytes of the chunk being received: at most one sealed chunk.
    pending: Vec<u8>,
    failed: Option<SealError>,
}

impl Opener {
    /// An opener for files sealed with `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: cipher(key),
            header: Vec::with_capacity(HEADER_LEN),
            counter: Some(0),
            pending: Vec::with_capacity(SEALED_CHUNK),
            failed: None,
        }
    }

    /// Takes more sealed bytes; returns the plaintext of the chunks now known to be whole and
    /// not the last. After an error, returns it again.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>, SealError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.take(data);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The plaintext of the last chunk; `Truncated` if the file ended before it.
    pub fn finish(self) -> Result<Bytes, SealError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.header.len() < HEADER_LEN || self.pending.len() < TAG_LEN {
            return Err(SealError::Truncated);
        }
        match self.open(true) {
            Some(plain) => Ok(plain),
            // A whole chunk that is not the last: the file was cut after it.
            None if self.open(false).is_some() => Err(SealError::Truncated),
            None => Err(SealError::Tampered),
        }
    }

    fn take(&mut self, mut data: &[u8]) -> Result<Vec<Bytes>, SealError> {
        if self.header.len() < HEADER_LEN {
            let take = (HEADER_LEN - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            let magic = self.header.len().min(MAGIC.len());
            if self.header[..magic] != MAGIC[..magic] {
                return Err(SealError::NotSealed);
            }
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.pending.len() == SEALED_CHUNK {
                out.push(self.open_inner_chunk()?);
            }
            let take = (SEALED_CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(out)
    }

    /// Opens the pending full chunk, which more bytes follow, so it must not be the last.
    fn open_inner_chunk(&mut self) -> Result<Bytes, SealError> {
        match self.open(false) {
            Some(plain) => {
                self.counter = self.counter.and_then(|c| c.checked_add(1));
                self.pending.clear();
                Ok(plain)
            }
            None if self.open(true).is_some() => Err(SealError::TrailingData),
            None => Err(SealError::Tampered),
        }
    }

    /// The plaintext of the pending chunk sealed with `last`, if it authenticates.
    fn open(&self, last: bool) -> Option<Bytes> {
        let (key, counter) = (self.key.as_ref()?, self.counter?);
        let mut chunk = self.pending.clone();
        let nonce = nonce(&self.header, counter, last);
        let plain_len = key
            .open_in_place(nonce, Aad::from(&self.header), &mut chunk)
            .ok()?
            .len();
        chunk.truncate(plain_len);
        Some(chunk.into())
    }
}

/// A [`Sealer`] or [`Opener`] as a step of a stream.
trait Codec {
    fn feed(&mut self, data: &[u8]) -> Result<Vec<Bytes>, SealError>;
    fn end(self) -> Result<Bytes, SealError>;
}

impl Codec for Sealer {
    fn feed(&mut self, data: &[u8]) -> Result<Vec<Bytes>, SealError> {
        let out = self.push(data);
        self.counter.map(|_| out).ok_or(SealError::TooLarge)
    }

    fn end(self) -> Result<Bytes, SealError> {
        match self.counter {
            Some(_) => Ok(self.finish()),
            None => Err(SealError::TooLarge),
        }
    }
}

impl Codec for Opener {
    fn feed(&mut self, data: &[u8]) -> Result<Vec<Bytes>, SealError> {
        self.push(data)
    }

    fn end(self) -> Result<Bytes, SealError> {
        self.finish()
    }
}

/// Encrypts a plaintext stream into the sealed format. Ends after the first error.
pub fn seal_stream<S, E>(key: [u8; 32], plain: S) -> impl Stream<Item = Result<Bytes, SealError>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    pump(Sealer::new(&key), plain)
}

/// Decrypts a sealed stream. Plaintext comes out a chunk at a time, each only after it
/// authenticated; the stream ends with an error (and no more plaintext) if the file is not
/// whole and untouched, so a consumer must treat what it got before an error as void.
pub fn open_stream<S, E>(key: [u8; 32], sealed: S) -> impl Stream<Item = Result<Bytes, SealError>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    pump(Ok(Opener::new(&key)), sealed)
}

struct Pump<C, S> {
    codec: Option<C>,
    source: Pin<Box<S>>,
    ready: VecDeque<Bytes>,
    failed: Option<SealError>,
}

fn pump<C, S, E>(
    codec: Result<C, SealError>,
    source: S,
) -> impl Stream<Item = Result<Bytes, SealError>>
where
    C: Codec,
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    let (codec, failed) = match codec {
        Ok(codec) => (Some(codec), None),
        Err(e) => (None, Some(e)),
    };
    let pump = Pump {
        codec,
        source: Box::pin(source),
        ready: VecDeque::new(),
        failed,
    };
    futures_util::stream::unfold(pump, |mut pump| async move {
        loop {
            if let Some(bytes) = pump.ready.pop_front() {
                return Some((Ok(bytes), pump));
            }
            if let Some(e) = pump.failed.take() {
                pump.codec = None;
                return Some((Err(e), pump));
            }
            let codec = pump.codec.as_mut()?;
            let step = match pump.source.next().await {
                Some(Ok(data)) => codec.feed(&data),
                Some(Err(e)) => Err(SealError::Source(e.to_string())),
                None => match pump.codec.take() {
                    Some(codec) => codec.end().map(|last| vec![last]),
                    None => Ok(Vec::new()),
                },
            };
            match step {
                Ok(out) => pump.ready.extend(out.into_iter().filter(|b| !b.is_empty())),
                Err(e) => pump.failed = Some(e),
            }
        }
    })
}

#[cfg(test)]
mod tests;
