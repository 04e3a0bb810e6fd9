//! The shape bounds of a JSON body, checked in one linear pass over its bytes before anything
//! parses it: nesting depth, top-level keys, items per array and values in all. No allocation
//! beyond one frame per nesting level, so a hostile body costs at most one scan.
//!
//! The scan does not validate JSON (serde does, after); on malformed input it only stays
//! linear and bounded.

use omg_shared::error::ErrorCode;

use crate::error::{truncate, ApiError};

/// Deepest nesting accepted (serde_json's own limit, 128, stays behind it).
pub const MAX_DEPTH: usize = 64;
/// Most keys in the top-level object (OpenAI's requests have a few dozen parameters).
pub const MAX_TOP_LEVEL_KEYS: u64 = 256;
/// Most items in one array: a 256K-token prompt given as a token array still fits.
pub const MAX_ARRAY_ITEMS: u64 = 262_144;
/// Most JSON values (scalars, strings, arrays, objects) in the whole body.
pub const MAX_VALUES: u64 = 1_048_576;
/// Most JSON values in an Anthropic Messages body, which the ingress still reads into a tree
/// (no token arrays there): a quarter of [`MAX_VALUES`], a tree of some 16 MB at most.
pub const MAX_ANTHROPIC_VALUES: u64 = 262_144;

/// Which bound a body broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// [`MAX_DEPTH`].
    Depth,
    /// [`MAX_TOP_LEVEL_KEYS`].
    TopLevelKeys,
    /// [`MAX_ARRAY_ITEMS`].
    ArrayItems,
    /// [`MAX_VALUES`].
    Values,
}

/// One open container.
struct Frame {
    array: bool,
    /// Items so far (arrays).
    items: u64,
    /// Objects: the next string is a key.
    expect_key: bool,
}

/// The scan's state.
struct Scan<'a> {
    bytes: &'a [u8],
    stack: Vec<Frame>,
    values: u64,
    max_values: u64,
    top_keys: u64,
    /// The top-level key whose value is being read (raw bytes, escapes kept).
    top_key: Option<&'a [u8]>,
}

/// Checks a body against the bounds; the error names the top-level field the offending part
/// belongs to.
pub fn check(bytes: &[u8]) -> Result<(), ApiError> {
    check_with(bytes, MAX_VALUES)
}

/// [`check`] with another cap on the values (the Anthropic ingress).
pub fn check_with(bytes: &[u8], max_values: u64) -> Result<(), ApiError> {
    let mut scan = Scan {
        max_values,
        bytes,
        stack: Vec::with_capacity(16),
        values: 0,
        top_keys: 0,
        top_key: None,
    };
    scan.run()
        .map_err(|exceeded| refusal(exceeded, scan.top_key, max_values))
}

impl<'a> Scan<'a> {
    fn run(&mut self) -> Result<(), Exceeded> {
        let bytes = self.bytes;
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'"' => {
                    let end = string_end(bytes, at);
                    if self.stack.last().is_some_and(|f| !f.array && f.expect_key) {
                        self.key(&bytes[at + 1..end.saturating_sub(1).max(at + 1)])?;
                    } else {
                        self.value()?;
                    }
                    at = end;
                    continue;
                }
                b'{' | b'[' => {
                    self.value()?;
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(Exceeded::Depth);
                    }
                    let array = bytes[at] == b'[';
                    self.stack.push(Frame {
                        array,
                        items: 0,
                        expect_key: !array,
                    });
                }
                b'}' | b']' => {
                    self.stack.pop();
                }
                b':' => {
                    if let Some(frame) = self.stack.last_mut() {
                        frame.expect_key = false;
                    }
                }
                b',' => {
                    if let Some(frame) = self.stack.last_mut() {
                        frame.expect_key = !frame.array;
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => {
                    // A number or literal: one value up to the next delimiter.
                    self.value()?;
                    while at + 1 < bytes.len() && !is_delimiter(bytes[at + 1]) {
                        at += 1;
                    }
                }
            }
            at += 1;
        }
        Ok(())
    }

    /// A value starts at the current position.
    fn value(&mut self) -> Result<(), Exceeded> {
        self.values += 1;
        if self.values > self.max_values {
            return Err(Exceeded::Values);
        }
        if let Some(frame) = self.stack.last_mut().filter(|f| f.array) {
            frame.items += 1;
            if frame.items > MAX_ARRAY_ITEMS {
                return Err(Exceeded::ArrayItems);
            }
        }
        Ok(())
    }

    /// An object key (its raw bytes between the quotes).
    fn key(&mut self, raw: &'a [u8]) -> Result<(), Exceeded> {
        if self.stack.len() == 1 {
            self.top_key = Some(raw);
            self.top_keys += 1;
            if self.top_keys > MAX_TOP_LEVEL_KEYS {
                self.top_key = None;
                return Err(Exceeded::TopLevelKeys);
            }
        }
        if let Some(frame) = self.stack.last_mut() {
            frame.expect_key = false;
        }
        Ok(())
    }
}

/// The index just past the string starting at `start` (an opening quote), or the end of the
/// input when it is not closed.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while let Some(found) = memchr::memchr2(b'"', b'\\', &bytes[at.min(bytes.len())..]) {
        let index = at + found;
        if bytes[index] == b'"' {
            return index + 1;
        }
        at = index + 2;
        if at >= bytes.len() {
            break;
        }
    }
    bytes.len()
}

fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b',' | b']' | b'}' | b'"' | b'[' | b'{' | b':' | b' ' | b'\t' | b'\r' | b'\n'
    )
}

/// The 400 for a broken bound.
fn refusal(exceeded: Exceeded, top_key: Option<&[u8]>, max_values: u64) -> ApiError {
    let field = top_key.map(String::from_utf8_lossy);
    let within = field
        .as_deref()
        .map(|name| format!(" (in `{}`)", truncate(name, 64)))
        .unwrap_or_default();
    let message = match exceeded {
        Exceeded::Depth => {
            format!("The request body is nested more than {MAX_DEPTH} levels deep{within}.")
        }
        Exceeded::TopLevelKeys => {
            format!("The request body has more than {MAX_TOP_LEVEL_KEYS} top-level parameters.")
        }
        Exceeded::ArrayItems => {
            format!("An array of the request body has more than {MAX_ARRAY_ITEMS} items{within}.")
        }
        Exceeded::Values => format!(
            "The request body has more than {max_values} JSON values{within}; split the request."
        ),
    };
    let error = ApiError::new(ErrorCode::RequestTooComplex, message);
    match field.as_deref().and_then(known_param) {
        Some(param) => error.with_param(param),
        None => error,
    }
}

/// The request parameters errors can name (a body's own key names are not `'static`).
const PARAMS: [&str; 40] = [
    "model",
    "messages",
    "prompt",
    "input",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "response_format",
    "stop",
    "stop_sequences",
    "logit_bias",
    "metadata",
    "system",
    "n",
    "best_of",
    "stream",
    "stream_options",
    "prediction",
    "audio",
    "modalities",
    "web_search_options",
    "user",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "service_tier",
    "reasoning_effort",
    "thinking",
    "encoding_format",
    "dimensions",
    "size",
    "mcp_servers",
    "container",
];

/// `name` as one of [`PARAMS`].
pub fn known_param(name: &str) -> Option<&'static str> {
    PARAMS.iter().copied().find(|param| *param == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> Option<(ErrorCode, Option<&'static str>)> {
        check(body.as_bytes()).err().map(|e| (e.code, e.param))
    }

    #[test]
    fn ordinary_bodies_pass() {
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"a \"quoted\" [x] {y}"}]}"#,
            r#"{"model":"m","input":[[1,2,3],[4,5]],"n":-1.5e3,"stream":true,"x":null}"#,
            "not json at all",
            "{\"unterminated",
            "",
        ] {
            assert_eq!(refused(body), None, "{body}");
        }
    }

    #[test]
    fn each_bound_is_a_clear_400_naming_the_field() {
        let deep = format!(
            r#"{{"model":"m","messages":{}{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(
            refused(&deep),
            Some((ErrorCode::RequestTooComplex, Some("messages")))
        );
        let ok_deep = format!(
            r#"{{"messages":{}{}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(refused(&ok_deep), None);

        let keys: String = (0..=MAX_TOP_LEVEL_KEYS)
            .map(|i| format!(r#""k{i}":0"#))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            refused(&format!("{{{keys}}}")),
            Some((ErrorCode::RequestTooComplex, None))
        );
        // Keys of nested objects are not top-level keys.
        let nested = format!(r#"{{"metadata":{{{keys}}}}}"#);
        assert_eq!(refused(&nested), None);

        let items = vec!["0"; MAX_ARRAY_ITEMS as usize + 1].join(",");
        assert_eq!(
            refused(&format!(r#"{{"input":[{items}]}}"#)),
            Some((ErrorCode::RequestTooComplex, Some("input")))
        );
        let chunk = vec!["0"; 200_000].join(",");
        let many = vec![format!("[{chunk}]"); 6].join(",");
        assert_eq!(
            refused(&format!(r#"{{"prompt":[{many}]}}"#)),
            Some((ErrorCode::RequestTooComplex, Some("prompt")))
        );
    }

    #[test]
    fn the_anthropic_ingress_has_a_lower_value_cap() {
        let items = vec!["0"; MAX_ANTHROPIC_VALUES as usize].join(",");
        let body = format!(r#"{{"metadata":[{items}]}}"#);
        assert!(check(body.as_bytes()).is_ok());
        let refused = check_with(body.as_bytes(), MAX_ANTHROPIC_VALUES).err();
        assert_eq!(refused.map(|e| e.code), Some(ErrorCode::RequestTooComplex));
    }

    #[test]
    fn escapes_inside_strings_do_not_confuse_the_scan() {
        let body = r#"{"a\"b":"\\","c":["\\\"[[[["]}"#;
        assert_eq!(refused(body), None);
        assert!(string_end(br#""ab\"#, 0) == 4);
    }
}
