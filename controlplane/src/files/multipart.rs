//! A streaming `multipart/form-data` reader (RFC 7578 over RFC 2046), for uploads such as
//! `POST /v1/files`: parts come out one at a time, and a part's body comes out in pieces as the
//! request body arrives, so a file is never whole in memory.
//!
//! Decisions (what is accepted is exactly what this module documents):
//! - **Line endings are CRLF only**, in boundary lines and headers alike. A body delimiter is
//!   `CRLF--boundary`, so a client that wrote bare LF would not be understood there anyway;
//!   accepting bare LF only in headers would be half a dialect. Every mainstream client (httpx,
//!   requests, curl, browsers, Go, Node) writes CRLF. A bare CR or LF inside a header line is
//!   `MalformedHeaders`.
//! - **Preamble**: only CR and LF bytes may come before the first boundary line; anything else
//!   is refused (`Preamble`): no legitimate client sends one, and text there is ignored by some
//!   parsers and not others. The **epilogue** after the closing boundary is not read.
//! - **Transport padding** (spaces and tabs) between a boundary and its CRLF is skipped.
//! - **Headers** are UTF-8 (`MalformedHeaders` otherwise), `Name: value` lines without folding,
//!   at most [`Limits::max_part_headers`] bytes per part including the blank line that ends
//!   them. `Content-Disposition: form-data; name="…"` is required (`MissingName`);
//!   `filename="…"` (quoted-string escapes undone) and RFC 5987 `filename*=UTF-8''…` (preferred
//!   when both are sent) give [`PartHeaders::filename`], returned raw: the caller sanitises it.
//!   `Content-Type` is returned as sent; other headers are ignored; a repeated
//!   `Content-Disposition`, `Content-Type` or parameter is refused (ambiguous).
//! - **Boundary**: 1 to 70 characters of RFC 2046's `bchars`, not ending in a space, quoted or
//!   not in the `Content-Type` header ([`boundary`]).
//! - **Bounds**: memory is at most the header limit plus the largest incoming chunk plus the
//!   delimiter length, whatever the input; body bytes are handed out as they arrive except the
//!   last few that could begin a delimiter split across chunks. Time is linear: each search
//!   covers the new bytes plus fewer than a delimiter's length of held ones.
//! - **Errors** are final: after one, every call returns it again, except `FieldTooLarge` and
//!   `NotUtf8` from [`MultipartReader::read_text`], which concern one field.

use std::fmt::Display;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use memchr::memmem::{self, Finder};

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// What a multipart body may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest header block of one part, in bytes, including the blank line ending it.
    pub max_part_headers: usize,
    /// The most parts a body may have.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_part_headers: 8 * 1024,
            max_parts: 16,
        }
    }
}

/// The headers of one part that a form upload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeaders {
    /// The form field's name (`Content-Disposition` `name`).
    pub name: String,
    /// The file name as sent (`filename*` decoded, else `filename`); never a path to trust.
    pub filename: Option<String>,
    /// The part's `Content-Type`, as sent.
    pub content_type: Option<String>,
}

/// Why a multipart body (or its `Content-Type`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the content type is not multipart/form-data")]
    NotMultipart,
    #[error("the multipart content type has no boundary")]
    MissingBoundary,
    #[error("the multipart boundary is invalid")]
    InvalidBoundary,
    #[error("bytes other than CR/LF before the first multipart boundary")]
    Preamble,
    #[error("multipart part headers are too large")]
    HeadersTooLarge,
    #[error("malformed multipart part headers")]
    MalformedHeaders,
    #[error("a multipart part has no form-data name")]
    MissingName,
    #[error("too many multipart parts")]
    TooManyParts,
    #[error("a multipart text field is too large")]
    FieldTooLarge,
    #[error("a multipart text field is not UTF-8")]
    NotUtf8,
    #[error("the multipart body ended before its closing boundary")]
    Truncated,
    #[error("the request body failed: {0}")]
    Body(String),
}

impl MultipartError {
    /// A sentence for the client saying what is wrong and what to send instead.
    pub fn message(&self) -> String {
        match self {
            Self::NotMultipart => {
                "the request body must be multipart/form-data: send Content-Type: multipart/form-data; boundary=..."
                    .into()
            }
            Self::MissingBoundary => {
                "the Content-Type header has no boundary parameter: send multipart/form-data; boundary=...".into()
            }
            Self::InvalidBoundary => {
                "the multipart boundary must be 1 to 70 characters among letters, digits and '()+_,-./:=? and space, not ending in a space".into()
            }
            Self::Preamble => {
                "the multipart body must begin with its first boundary line (--boundary); it has other bytes before it".into()
            }
            Self::HeadersTooLarge => "the headers of a multipart part are too large".into(),
            Self::MalformedHeaders => {
                "a multipart part is malformed: each boundary line ends with CRLF, then come `Name: value` header lines ending with CRLF (UTF-8, Content-Disposition: form-data with name and optional filename, each header and parameter once), then an empty line".into()
            }
            Self::MissingName => {
                "a multipart part has no Content-Disposition: form-data header with a name parameter".into()
            }
            Self::TooManyParts => "the multipart body has too many parts".into(),
            Self::FieldTooLarge => "a multipart text field is too long".into(),
            Self::NotUtf8 => "a multipart text field is not valid UTF-8".into(),
            Self::Truncated => {
                "the multipart body ended before its closing boundary (--boundary--): the upload was cut short or is malformed".into()
            }
            Self::Body(reason) => format!("the request body could not be read: {reason}"),
        }
    }
}

/// The boundary of a `multipart/form-data` `Content-Type` header value.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let (essence, params) = split_first_value(content_type);
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    let params = parse_params(params).ok_or(MultipartError::InvalidBoundary)?;
    let mut boundaries = params.into_iter().filter(|(name, _)| name == "boundary");
    let (_, boundary) = boundaries.next().ok_or(MultipartError::MissingBoundary)?;
    if boundaries.next().is_some() {
        // Parsers disagree on which of two boundaries wins: refuse the ambiguity.
        return Err(MultipartError::InvalidBoundary);
    }
    validate_boundary(&boundary)?;
    Ok(boundary)
}

/// RFC 2046: 1 to 70 `bchars`, the last not a space.
fn validate_boundary(boundary: &str) -> Result<(), MultipartError> {
    let bytes = boundary.as_bytes();
    let bchar = |b: &u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(b);
    if bytes.is_empty()
        || bytes.len() > MAX_BOUNDARY
        || !bytes.iter().all(bchar)
        || bytes.ends_with(b" ")
    {
        return Err(MultipartError::InvalidBoundary);
    }
    Ok(())
}

/// Where the reader is in the body.
#[derive(Debug)]
enum State {
    /// Before the first boundary line.
    Start,
    /// Just after a boundary: `--` (the end) or padding and CRLF (a part follows).
    AfterBoundary,
    /// After a boundary line: a part's headers.
    Headers,
    /// In a part's body.
    Body,
    /// The closing boundary was read.
    Done,
    /// A failure, returned again on every call.
    Failed(MultipartError),
}

/// Reads a `multipart/form-data` body from a stream of chunks (see the module doc).
pub struct MultipartReader<S> {
    body: S,
    /// `CRLF--boundary`: what ends a part's body. Its only CR is its first byte.
    delimiter: Finder<'static>,
    limits: Limits,
    /// Bytes received and not yet handed out.
    buf: BytesMut,
    state: State,
    parts: usize,
}

impl<S, E> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    /// A reader of `body` delimited by `boundary` (as returned by [`boundary`]; another one
    /// makes every call fail with `InvalidBoundary`).
    pub fn new(body: S, boundary: &str, limits: Limits) -> Self {
        let state = match validate_boundary(boundary) {
            Ok(()) => State::Start,
            Err(e) => State::Failed(e),
        };
        Self {
            body,
            delimiter: Finder::new(format!("\r\n--{boundary}").as_bytes()).into_owned(),
            limits,
            buf: BytesMut::new(),
            state,
            parts: 0,
        }
    }

    /// The next part's headers; `Ok(None)` after the closing boundary. Skips the rest of
    /// the current part's body if it was not read.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        let result = self.advance_to_part().await;
        self.fail_on(result)
    }

    /// The next piece of the current part's body; `Ok(None)` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        let result = self.body_chunk().await;
        self.fail_on(result)
    }

    /// The current part's body whole as UTF-8, refusing more than `max` bytes (text fields).
    pub async fn read_text(&mut self, max: usize) -> Result<String, MultipartError> {
        let mut text = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if text.len() + chunk.len() > max {
                return Err(MultipartError::FieldTooLarge);
            }
            text.extend_from_slice(&chunk);
        }
        String::from_utf8(text).map_err(|_| MultipartError::NotUtf8)
    }

    fn fail_on<T>(&mut self, result: Result<T, MultipartError>) -> Result<T, MultipartError> {
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    async fn advance_to_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        loop {
            match &self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done => return Ok(None),
                State::Start => self.first_boundary().await?,
                State::Body => while self.body_chunk().await?.is_some() {},
                State::AfterBoundary => {
                    if self.boundary_end().await? {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    if self.parts == self.limits.max_parts {
                        return Err(MultipartError::TooManyParts);
                    }
                    self.state = State::Headers;
                }
                State::Headers => {
                    let headers = self.headers().await?;
                    self.parts += 1;
                    self.state = State::Body;
                    return Ok(Some(headers));
                }
            }
        }
    }

    /// Appends the next non-empty chunk of the body to the buffer; `Truncated` at its end.
    async fn more(&mut self) -> Result<(), MultipartError> {
        loop {
            match self.body.next().await {
                None => return Err(MultipartError::Truncated),
                Some(Err(e)) => return Err(MultipartError::Body(e.to_string())),
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => {
                    self.buf.extend_from_slice(&chunk);
                    return Ok(());
                }
            }
        }
    }

    /// Skips CR/LF bytes, then reads `--boundary`.
    async fn first_boundary(&mut self) -> Result<(), MultipartError> {
        loop {
            let blank = self
                .buf
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(self.buf.len());
            self.buf.advance(blank);
            let dash_boundary = &self.delimiter.needle()[2..];
            let seen = self.buf.len().min(dash_boundary.len());
            if self.buf[..seen] != dash_boundary[..seen] {
                return Err(MultipartError::Preamble);
            }
            if seen == dash_boundary.len() {
                self.buf.advance(seen);
                self.state = State::AfterBoundary;
                return Ok(());
            }
            self.more().await?;
        }
    }

    /// After a boundary: `true` for the closing `--`; otherwise skips the padding and CRLF.
    async fn boundary_end(&mut self) -> Result<bool, MultipartError> {
        loop {
            let padding = self
                .buf
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(self.buf.len());
            self.buf.advance(padding);
            match (self.buf.first(), self.buf.get(1)) {
                (None, _) | (Some(b'-' | b'\r'), None) => self.more().await?,
                (Some(b'-'), Some(b'-')) => return Ok(true),
                (Some(b'\r'), Some(b'\n')) => {
                    self.buf.advance(2);
                    return Ok(false);
                }
                _ => return Err(MultipartError::MalformedHeaders),
            }
        }
    }

    /// Reads and parses a part's header block (CRLF CRLF-terminated, or a lone CRLF).
    async fn headers(&mut self) -> Result<PartHeaders, MultipartError> {
        let max = self.limits.max_part_headers;
        let mut scanned: usize = 0;
        loop {
            if self.buf.starts_with(b"\r\n") {
                if 2 > max {
                    return Err(MultipartError::HeadersTooLarge);
                }
                self.buf.advance(2);
                return parse_headers(b"");
            }
            let from = scanned.saturating_sub(3);
            if let Some(at) = memmem::find(&self.buf[from..], b"\r\n\r\n") {
                let end = from + at;
                if end + 4 > max {
                    return Err(MultipartError::HeadersTooLarge);
                }
                let block = self.buf.split_to(end + 4);
                return parse_headers(&block[..end]);
            }
            if self.buf.len() >= max {
                return Err(MultipartError::HeadersTooLarge);
            }
            scanned = self.buf.len();
            self.more().await?;
        }
    }

    async fn body_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Body => {}
            _ => return Ok(None),
        }
        loop {
            if let Some(at) = self.delimiter.find(&self.buf) {
                if at == 0 {
                    self.buf.advance(self.delimiter.needle().len());
                    self.state = State::AfterBoundary;
                    return Ok(None);
                }
                return Ok(Some(self.buf.split_to(at).freeze()));
            }
            let ready = self.buf.len() - self.partial_delimiter_len();
            if ready > 0 {
                return Ok(Some(self.buf.split_to(ready).freeze()));
            }
            self.more().await?;
        }
    }

    /// The length of the buffer's longest suffix that begins the delimiter (which does not
    /// occur whole in the buffer). As the delimiter's only CR is its first byte, the only
    /// candidate is the last CR among the final `delimiter - 1` bytes.
    fn partial_delimiter_len(&self) -> usize {
        let needle = self.delimiter.needle();
        let from = self.buf.len().saturating_sub(needle.len() - 1);
        match memchr::memrchr(b'\r', &self.buf[from..]) {
            Some(at) if needle.starts_with(&self.buf[from + at..]) => self.buf.len() - from - at,
            _ => 0,
        }
    }
}

/// Parses a header block: `Name: value` lines joined by CRLF (empty for no headers).
fn parse_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let text = std::str::from_utf8(block).map_err(|_| MultipartError::MalformedHeaders)?;
    let mut disposition = None;
    let mut content_type = None;
    for line in text.split("\r\n").filter(|_| !text.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(MultipartError::MalformedHeaders)?;
        if name.is_empty() || !name.bytes().all(is_tchar) || value.contains(['\r', '\n']) {
            return Err(MultipartError::MalformedHeaders);
        }
        let value = value.trim_matches([' ', '\t']);
        let slot = if name.eq_ignore_ascii_case("content-disposition") {
            &mut disposition
        } else if name.eq_ignore_ascii_case("content-type") {
            &mut content_type
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(MultipartError::MalformedHeaders);
        }
    }
    let (name, filename) = content_disposition(disposition.ok_or(MultipartError::MissingName)?)?;
    Ok(PartHeaders {
        name,
        filename,
        content_type: content_type.map(str::to_owned),
    })
}

/// `form-data; name="…"; filename="…"; filename*=…` → (name, filename).
fn content_disposition(value: &str) -> Result<(String, Option<String>), MultipartError> {
    let (kind, params) = split_first_value(value);
    if kind.is_empty() || !kind.bytes().all(is_tchar) {
        return Err(MultipartError::MalformedHeaders);
    }
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(MultipartError::MissingName);
    }
    let params = parse_params(params).ok_or(MultipartError::MalformedHeaders)?;
    let (mut name, mut filename, mut extended) = (None, None, None);
    for (key, value) in params {
        let slot = match key.as_str() {
            "name" => &mut name,
            "filename" => &mut filename,
            "filename*" => &mut extended,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(MultipartError::MalformedHeaders);
        }
    }
    let name = name.ok_or(MultipartError::MissingName)?;
    let filename = match extended {
        Some(ext) => Some(decode_ext_value(&ext).ok_or(MultipartError::MalformedHeaders)?),
        None => filename,
    };
    Ok((name, filename))
}

/// RFC 5987 `charset'language'percent-encoded` with charset UTF-8 or ISO-8859-1.
fn decode_ext_value(value: &str) -> Option<String> {
    let mut fields = value.splitn(3, '\'');
    let (charset, _language, encoded) = (fields.next()?, fields.next()?, fields.next()?);
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

/// `value; params` → (trimmed value, `; params`).
fn split_first_value(header: &str) -> (&str, &str) {
    let (first, params) = header.split_at(header.find(';').unwrap_or(header.len()));
    (first.trim_matches([' ', '\t']), params)
}

/// `; name=value` parameters (RFC 9110 §5.6.6), names lower-cased, values tokens or quoted
/// strings (escapes undone). Lenient about whitespace around `=` and empty `;;`. `None` when
/// malformed.
fn parse_params(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Some(params);
        }
        rest = rest.strip_prefix(';')?.trim_start_matches([' ', '\t']);
        if rest.is_empty() || rest.starts_with(';') {
            continue;
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        let after = after.trim_start_matches([' ', '\t']);
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
                if end == 0 {
                    return None;
                }
                (after[..end].to_owned(), &after[end..])
            }
        };
        params.push((name.to_ascii_lowercase(), value));
        rest = tail;
    }
}

/// The rest of a quoted string after its opening quote → (its value, what follows it).
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &quoted[at + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
