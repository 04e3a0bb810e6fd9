//! A strict, allocation-free JSON cursor for reading a few fields out of hot-path documents
//! (one per streamed event) without building them.
//!
//! It accepts a subset of what `serde_json` accepts: whenever it meets something it does not
//! handle (escaped object keys, deep nesting, anything invalid) it gives up with `None`, and
//! the caller falls back to `serde_json`. So a `Some` answer is always one `serde_json` would
//! give too; see the property test in `providers::openai`.

/// Whether `json` has the object key `quoted` (with its quotes) anywhere: a byte search, no
/// parse. Inside a JSON string a quote is escaped, so `"key"` followed by `:` is always a key
/// (at some depth).
pub fn has_key(json: &[u8], quoted: &[u8]) -> bool {
    memchr::memmem::find_iter(json, quoted).any(|at| {
        json[at + quoted.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            == Some(&b':')
    })
}

/// Nesting deeper than this is left to `serde_json` (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// A string value as it appears in the document.
#[derive(Debug, Clone, Copy)]
pub struct RawStr<'a> {
    /// The bytes between the quotes, escapes not decoded.
    pub raw: &'a [u8],
    /// The quoted form, for decoding escapes with `serde_json`.
    pub quoted: &'a [u8],
    /// Whether it contains a backslash escape.
    pub escaped: bool,
}

/// A position in a document that must be valid UTF-8 (checked by [`Cursor::new`]).
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    /// Only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Consumes a `null` literal if one is next.
    pub fn null(&mut self) -> bool {
        self.skip_ws();
        if self.bytes[self.pos.min(self.bytes.len())..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A string value (the cursor must be at its opening quote, after whitespace).
    pub fn string(&mut self) -> Option<RawStr<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            let rest = self.bytes.get(self.pos..)?;
            let offset = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            self.pos += offset;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Some(RawStr {
                        raw: &self.bytes[start + 1..self.pos - 1],
                        quoted: &self.bytes[start..self.pos],
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    match self.bytes.get(self.pos + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = self.bytes.get(self.pos + 2..self.pos + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            // Surrogates must pair up; leave them to serde_json.
                            if matches!(hex[0], b'd' | b'D')
                                && matches!(hex[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
                            {
                                return None;
                            }
                            self.pos += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a raw control character
            }
        }
    }

    fn number(&mut self) -> Option<()> {
        let digits = |cursor: &mut Self| {
            let start = cursor.pos;
            while cursor.bytes.get(cursor.pos).is_some_and(u8::is_ascii_digit) {
                cursor.pos += 1;
            }
            cursor.pos > start
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        // A number runs up to a delimiter.
        match self.bytes.get(self.pos) {
            None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') => Some(()),
            Some(_) => None,
        }
    }

    /// Skips any value, checking it.
    pub fn skip_value(&mut self) -> Option<()> {
        self.skip(0)
    }

    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.object(|cursor, _| cursor.skip(depth + 1))
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.array(|cursor| cursor.skip(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// The bytes of the next value, checked.
    pub fn raw_value(&mut self) -> Option<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        self.skip_value()?;
        Some(&self.bytes[start..self.pos])
    }

    /// An object: `field(cursor, key)` must consume each value. Keys with escapes are not
    /// handled (`None`).
    pub fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        if self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            if key.escaped || self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            field(self, key.raw)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array: `element(cursor)` must consume each element.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.peek()? != b'[' {
            return None;
        }
        self.pos += 1;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn skips(text: &str) -> bool {
        let mut cursor = Cursor::new(text);
        cursor.skip_value().is_some() && cursor.at_end()
    }

    #[test]
    fn accepts_valid_json() {
        for text in [
            "0",
            "-0.5e+10",
            "12",
            "\"a\\u00e9\\n\"",
            "[]",
            "{}",
            " { \"a\" : [1, 2.5, true, false, null, {\"b\": \"c\"}] } ",
            "\"é\"",
        ] {
            assert!(skips(text), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_handle() {
        for text in [
            "",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "\"\\x\"",
            "\"a\nb\"",
            "\"\\ud83d\\ude00\"",
            "{\"\\u0061\":1}",
            "[1 2]",
            "nul",
            "1x",
        ] {
            assert!(!skips(text), "{text:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(!skips(&deep));
    }

    proptest! {
        /// Whatever the cursor accepts, serde_json accepts too.
        #[test]
        fn never_laxer_than_serde(text in "[\\[\\]{}\",:0-9.eE+\\-a-z\\\\ ]{0,24}") {
            if skips(&text) {
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(), "{text}");
            }
        }

        #[test]
        fn agrees_with_serde_on_documents(value in arb_json()) {
            let text = serde_json::to_string(&value).unwrap_or_default();
            prop_assert!(skips(&text), "{text}");
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            (-1e6f64..1e6).prop_map(|n| serde_json::json!(n)),
            "[a-z \"\\\\\n\t\u{e9}\u{1F600}]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
