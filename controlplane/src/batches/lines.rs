//! The input file, line by line (pure): [`LineSplitter`] cuts a byte stream into lines with a
//! bounded buffer (an over-long line is reported, its rest skipped, never held), and
//! [`check_line`] validates one line against the batch — a JSON object, a unique string
//! `custom_id`, `method` `POST`, `url` equal to the batch's endpoint, an object `body` within
//! `batches.max_line_kb` naming a `model` the key may use, not streamed.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest `custom_id` accepted (OpenAI's limit is not published; 512 keeps the uniqueness
/// index small).
pub const MAX_CUSTOM_ID: usize = 512;

/// Problems listed in a failed batch's `errors` (the rest are counted in the last entry).
pub const MAX_LISTED_ERRORS: usize = 100;

/// One problem of the input file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    /// 1-based line number (`None` for the file as a whole).
    pub line: Option<i32>,
}

impl LineError {
    fn at(line: i32, code: &'static str, param: Option<&'static str>, message: String) -> Self {
        Self {
            code,
            message,
            param,
            line: Some(line),
        }
    }
}

/// A valid line, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidLine {
    pub line: i32,
    pub custom_id: String,
    pub url: String,
    /// The `body` value's bytes exactly as in the file (what is sent and digested).
    pub body: Vec<u8>,
    pub model: String,
}

/// What a line is checked against.
pub struct LineRules<'a> {
    /// The batch's endpoint, e.g. `/v1/chat/completions`.
    pub endpoint: &'a str,
    /// `batches.max_line_kb` in bytes.
    pub max_body_bytes: usize,
    /// Whether the batch's key may use a model alias.
    pub may_use: &'a (dyn Fn(&str) -> bool + Sync),
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow)]
    custom_id: Option<&'a RawValue>,
    method: Option<String>,
    url: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

/// Validates line number `line` (its bytes without the newline). `seen` holds the custom ids
/// of the lines before (with their line numbers); a valid line's id is added.
pub fn check_line(
    line: i32,
    bytes: &[u8],
    rules: &LineRules<'_>,
    seen: &mut HashMap<String, i32>,
) -> Result<ValidLine, LineError> {
    let invalid = |code, param, message: String| LineError::at(line, code, param, message);
    let raw: RawLine<'_> = serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            "invalid_json_line",
            None,
            format!("This line is not a JSON object of a request ({e})."),
        )
    })?;
    let custom_id =
        custom_id(raw.custom_id).map_err(|m| invalid("invalid_custom_id", Some("custom_id"), m))?;
    if let Some(first) = seen.get(&custom_id) {
        return Err(invalid(
            "duplicate_custom_id",
            Some("custom_id"),
            format!(
                "The custom_id `{custom_id}` is already used on line {first}; each must be unique."
            ),
        ));
    }
    match raw.method.as_deref() {
        Some("POST") => {}
        other => {
            return Err(invalid(
                "invalid_method",
                Some("method"),
                format!("The method must be `POST`, not {}.", shown(other)),
            ))
        }
    }
    let url = raw.url.unwrap_or_default();
    if url != rules.endpoint {
        return Err(invalid(
            "invalid_url",
            Some("url"),
            format!(
                "The url `{url}` does not match the batch's endpoint `{}`.",
                rules.endpoint
            ),
        ));
    }
    let body = raw.body.map(RawValue::get).unwrap_or("");
    let model = check_body(body, rules).map_err(|(code, param, m)| invalid(code, param, m))?;
    seen.insert(custom_id.clone(), line);
    Ok(ValidLine {
        line,
        custom_id,
        url,
        body: body.as_bytes().to_vec(),
        model,
    })
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "missing".to_owned(), |v| format!("`{v}`"))
}

fn custom_id(raw: Option<&RawValue>) -> Result<String, String> {
    let id = raw
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
        .ok_or_else(|| "Each line needs a string `custom_id`.".to_owned())?;
    if id.is_empty() || id.len() > MAX_CUSTOM_ID {
        return Err(format!(
            "The custom_id must be 1 to {MAX_CUSTOM_ID} bytes long."
        ));
    }
    Ok(id)
}

type BodyProblem = (&'static str, Option<&'static str>, String);

/// The body's model, once the body is an object within the size cap, naming a model the key
/// may use, not streamed.
fn check_body(body: &str, rules: &LineRules<'_>) -> Result<String, BodyProblem> {
    if body.len() > rules.max_body_bytes {
        return Err((
            "line_too_large",
            Some("body"),
            format!(
                "The body is {} bytes; at most {} bytes (batches.max_line_kb) are accepted.",
                body.len(),
                rules.max_body_bytes
            ),
        ));
    }
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(body).map_err(|_| {
            (
                "invalid_body",
                Some("body"),
                "The body must be a JSON object of the endpoint's request.".to_owned(),
            )
        })?;
    let model = match object.get("model") {
        Some(serde_json::Value::String(model)) if !model.is_empty() => model.clone(),
        _ => {
            return Err((
                "missing_required_parameter",
                Some("body.model"),
                "The body needs a string `model`.".to_owned(),
            ))
        }
    };
    if !(rules.may_use)(&model) {
        return Err((
            "model_not_found",
            Some("body.model"),
            format!("The model `{model}` does not exist or the batch's API key may not use it."),
        ));
    }
    if object.get("stream") == Some(&serde_json::Value::Bool(true)) {
        return Err((
            "stream_not_supported",
            Some("body.stream"),
            "Batch requests cannot be streamed; remove `stream: true`.".to_owned(),
        ));
    }
    Ok(model)
}

/// A piece [`LineSplitter`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A complete line (without its `\n`, a trailing `\r` removed) and its number.
    Line(i32, Vec<u8>),
    /// Line `n` was longer than the cap; its bytes were skipped.
    TooLong(i32),
}

/// Cuts a byte stream into lines, holding at most `cap` bytes of one line. Blank lines are
/// counted but not handed out.
pub struct LineSplitter {
    cap: usize,
    buffer: Vec<u8>,
    number: i32,
    overflow: bool,
}

impl LineSplitter {
    /// A splitter holding at most `cap` bytes of a line.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            buffer: Vec::new(),
            number: 0,
            overflow: false,
        }
    }

    /// Feeds a chunk; the lines it completed go to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Piece>) {
        while !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    self.take(&chunk[..end]);
                    self.close(out);
                    chunk = &chunk[end + 1..];
                }
                None => {
                    self.take(chunk);
                    chunk = &[];
                }
            }
        }
    }

    /// Ends the stream: a last line without `\n` is handed out.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if !self.buffer.is_empty() || self.overflow {
            self.close(out);
        }
    }

    /// Lines seen so far (blank ones included).
    pub fn lines(&self) -> i32 {
        self.number
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buffer.len() + bytes.len() > self.cap {
            self.overflow = true;
            self.buffer = Vec::new();
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    fn close(&mut self, out: &mut Vec<Piece>) {
        self.number = self.number.saturating_add(1);
        if self.overflow {
            out.push(Piece::TooLong(self.number));
        } else {
            let mut line = std::mem::take(&mut self.buffer);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(Piece::Line(self.number, line));
            }
        }
        self.overflow = false;
        self.buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LineRules<'static> {
        LineRules {
            endpoint: "/v1/chat/completions",
            max_body_bytes: 200,
            may_use: &|model: &str| model == "mock-chat",
        }
    }

    fn check(line: &str, seen: &mut HashMap<String, i32>) -> Result<ValidLine, LineError> {
        check_line(7, line.as_bytes(), &rules(), seen)
    }

    const OK: &str = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"mock-chat", "messages":[]}}"#;

    #[test]
    fn a_valid_line_keeps_its_body_bytes() {
        let mut seen = HashMap::new();
        let valid = check(OK, &mut seen).unwrap();
        assert_eq!(valid.custom_id, "a");
        assert_eq!(valid.model, "mock-chat");
        assert_eq!(valid.body, br#"{"model":"mock-chat", "messages":[]}"#);
        assert_eq!(seen.get("a"), Some(&7));
        let again = check(OK, &mut seen).unwrap_err();
        assert_eq!(again.code, "duplicate_custom_id");
        assert!(again.message.contains("line 7"));
    }

    #[test]
    fn each_problem_has_its_code_param_and_line() {
        let cases = [
            ("not json", "invalid_json_line", None),
            ("[1]", "invalid_json_line", None),
            (
                r#"{"custom_id":5,"method":"POST"}"#,
                "invalid_custom_id",
                Some("custom_id"),
            ),
            (
                r#"{"custom_id":"","method":"POST"}"#,
                "invalid_custom_id",
                Some("custom_id"),
            ),
            (
                r#"{"custom_id":"b","method":"GET","url":"/v1/chat/completions"}"#,
                "invalid_method",
                Some("method"),
            ),
            (
                r#"{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{}}"#,
                "invalid_url",
                Some("url"),
            ),
            (
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":[1]}"#,
                "invalid_body",
                Some("body"),
            ),
            (
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions"}"#,
                "invalid_body",
                Some("body"),
            ),
            (
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"messages":[]}}"#,
                "missing_required_parameter",
                Some("body.model"),
            ),
            (
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"other"}}"#,
                "model_not_found",
                Some("body.model"),
            ),
            (
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"mock-chat","stream":true}}"#,
                "stream_not_supported",
                Some("body.stream"),
            ),
        ];
        for (line, code, param) in cases {
            let error = check(line, &mut HashMap::new()).unwrap_err();
            assert_eq!((error.code, error.param), (code, param), "{line}");
            assert_eq!(error.line, Some(7));
        }
        let long = format!(
            r#"{{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{{"model":"mock-chat","x":"{}"}}}}"#,
            "y".repeat(300)
        );
        assert_eq!(
            check(&long, &mut HashMap::new()).unwrap_err().code,
            "line_too_large"
        );
    }

    fn split(chunks: &[&[u8]], cap: usize) -> Vec<Piece> {
        let mut splitter = LineSplitter::new(cap);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    #[test]
    fn lines_are_cut_across_chunks_and_numbered() {
        let pieces = split(&[b"ab", b"c\n\nde\r\n", b"  \nf"], 10);
        assert_eq!(
            pieces,
            vec![
                Piece::Line(1, b"abc".to_vec()),
                Piece::Line(3, b"de".to_vec()),
                Piece::Line(5, b"f".to_vec()),
            ]
        );
        assert_eq!(split(&[b"a\n"], 10), vec![Piece::Line(1, b"a".to_vec())]);
    }

    #[test]
    fn an_over_long_line_is_reported_and_skipped_without_being_held() {
        let pieces = split(&[b"0123", b"456789abc", b"def\nok\n", b"0123456789x"], 8);
        assert_eq!(
            pieces,
            vec![
                Piece::TooLong(1),
                Piece::Line(2, b"ok".to_vec()),
                Piece::TooLong(3)
            ]
        );
    }
}
