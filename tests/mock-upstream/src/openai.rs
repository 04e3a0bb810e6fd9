//! OpenAI-shaped bodies: errors, completions (whole and as stream events, maybe calling a
//! tool), embeddings, the model list, plus the deterministic text, token counts and vectors
//! they carry. Completions come in two dialects: OpenAI's and Azure OpenAI's (content filter
//! annotations).
//!
//! Bodies are written with `format!` so their key order is exactly OpenAI's, whatever
//! `serde_json` features the workspace enables.

use serde_json::Value;

use crate::azure;

mod tgi;
pub(crate) mod tools;

/// The only model listed by `GET /v1/models`.
pub(crate) const MODEL_LIST: &str = r#"{"object":"list","data":[{"id":"gpt-test","object":"model","created":1700000000,"owned_by":"mock"}]}"#;

/// Dimensions of every mock embedding.
pub(crate) const EMBEDDING_DIMS: usize = 8;

/// A JSON string literal.
pub(crate) fn quote(text: &str) -> String {
    Value::from(text).to_string()
}

/// `{"error":{...}}` with all four keys.
pub(crate) fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> String {
    let or_null = |v: Option<&str>| v.map_or_else(|| "null".to_owned(), quote);
    format!(
        r#"{{"error":{{"message":{},"type":{},"param":{},"code":{}}}}}"#,
        quote(message),
        quote(kind),
        or_null(param),
        or_null(code)
    )
}

/// Token counts of one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    pub(crate) fn json(self) -> String {
        format!(
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
            self.prompt,
            self.completion,
            self.prompt + self.completion
        )
    }
}

/// The content chunks: `w0 `, `w1 `, …, `w{n-1}.`.
pub(crate) fn chunks(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i + 1 == n {
                format!("w{i}.")
            } else {
                format!("w{i} ")
            }
        })
        .collect()
}

pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Whitespace-separated words of every message's text (string content or text parts).
pub(crate) fn chat_prompt_tokens(messages: &[Value]) -> u64 {
    let mut count = 0;
    for message in messages {
        match message.get("content") {
            Some(Value::String(text)) => count += words(text),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(text) = part
                        .as_str()
                        .or_else(|| part.get("text").and_then(Value::as_str))
                    {
                        count += words(text);
                    }
                }
            }
            _ => {}
        }
    }
    count.max(1)
}

/// Words of prompt/input strings; token arrays count one per token.
pub(crate) fn input_tokens(input: &Value) -> u64 {
    fn count(value: &Value) -> u64 {
        match value {
            Value::String(text) => words(text),
            Value::Number(_) => 1,
            Value::Array(items) => items.iter().map(count).sum(),
            _ => 0,
        }
    }
    count(input).max(1)
}

/// Whose flavour of OpenAI's completion shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    /// Azure OpenAI: `prompt_filter_results` in the answer (a stream's first chunk, with no
    /// choices) and `content_filter_results` in every choice.
    Azure,
    /// Text Generation Inference's OpenAI route (chat; see `tgi`).
    Tgi,
}

/// A tool call an answer makes (with [`tools::ARGUMENTS`]).
pub(crate) struct ToolUse<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

/// What a completion answer is made of.
pub(crate) struct Answer<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    /// The text's pieces (none when the answer calls a tool).
    pub chunks: &'a [String],
    /// Chat only: the answer is this tool call, `finish_reason` `tool_calls`.
    pub tool: Option<ToolUse<'a>>,
    pub usage: Usage,
    /// `stop`, `tool_calls`, or `content_filter` (`content-filter-completion`).
    pub finish_reason: &'a str,
    pub dialect: Dialect,
}

impl Answer<'_> {
    fn azure(&self) -> bool {
        self.dialect == Dialect::Azure
    }

    /// `,"content_filter_results":…` of a whole answer's choice (Azure), else nothing.
    fn choice_filters(&self) -> String {
        if self.azure() {
            format!(
                r#","content_filter_results":{}"#,
                azure::completion_filter_results(self.finish_reason)
            )
        } else {
            String::new()
        }
    }

    /// `,"prompt_filter_results":[…]` (Azure), else nothing.
    fn prompt_filters(&self) -> String {
        if self.azure() {
            format!(
                r#","prompt_filter_results":{}"#,
                azure::PROMPT_FILTER_RESULTS
            )
        } else {
            String::new()
        }
    }
}

/// A non-streamed chat completion.
pub(crate) fn chat_completion(a: &Answer<'_>) -> String {
    if a.dialect == Dialect::Tgi {
        return tgi::chat_completion(a);
    }
    let content = match &a.tool {
        None => quote(&a.chunks.concat()),
        Some(tool) => format!(
            r#"null,"tool_calls":[{{"id":{},"type":"function","function":{{"name":{},"arguments":{}}}}}]"#,
            quote(tool.id),
            quote(tool.name),
            quote(tools::ARGUMENTS)
        ),
    };
    format!(
        r#"{{"id":{},"object":"chat.completion","created":{},"model":{},"choices":[{{"index":0,"message":{{"role":"assistant","content":{},"refusal":null}},"logprobs":null,"finish_reason":{}{}}}]{},"usage":{},"system_fingerprint":"fp_mock"}}"#,
        quote(a.id),
        a.created,
        quote(a.model),
        content,
        quote(a.finish_reason),
        a.choice_filters(),
        a.prompt_filters(),
        a.usage.json()
    )
}

/// A non-streamed legacy completion.
pub(crate) fn text_completion(a: &Answer<'_>) -> String {
    format!(
        r#"{{"id":{},"object":"text_completion","created":{},"model":{},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":{}{}}}]{},"usage":{},"system_fingerprint":"fp_mock"}}"#,
        quote(a.id),
        a.created,
        quote(a.model),
        quote(&a.chunks.concat()),
        quote(a.finish_reason),
        a.choice_filters(),
        a.prompt_filters(),
        a.usage.json()
    )
}

/// Which stream shape to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour {
    Chat,
    Completion,
}

/// Builds the `data:` payloads of one stream.
pub(crate) struct StreamEvents<'a> {
    pub answer: Answer<'a>,
    pub flavour: Flavour,
    /// Every chunk carries `"usage":null` and a usage chunk follows the finish chunk.
    pub include_usage: bool,
}

impl StreamEvents<'_> {
    fn head(&self) -> String {
        let object = match self.flavour {
            Flavour::Chat => "chat.completion.chunk",
            Flavour::Completion => "text_completion",
        };
        let (id, fingerprint) = match self.answer.dialect {
            Dialect::Tgi => ("", tgi::FINGERPRINT),
            _ => (self.answer.id, "fp_mock"),
        };
        format!(
            r#"{{"id":{},"object":"{object}","created":{},"model":{},"system_fingerprint":"{fingerprint}""#,
            quote(id),
            self.answer.created,
            quote(self.answer.model)
        )
    }

    /// A chunk with one choice: `choice` is the choice's JSON without its closing brace, to
    /// which Azure's `filters` (the object of `content_filter_results`) are added.
    fn chunk(&self, choice: &str, filters: &str) -> String {
        let usage = if self.include_usage {
            r#","usage":null"#
        } else {
            ""
        };
        let filters = if self.answer.azure() {
            format!(r#","content_filter_results":{filters}"#)
        } else {
            String::new()
        };
        format!(
            r#"{},"choices":[{choice}{filters}}}]{usage}}}"#,
            self.head()
        )
    }

    /// Azure's first chunk: the prompt's filter results, no choices, empty `id` and `model`;
    /// `None` for OpenAI.
    pub(crate) fn prelude(&self) -> Option<String> {
        self.answer.azure().then(|| {
            format!(
                r#"{{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":{}}}"#,
                azure::PROMPT_FILTER_RESULTS
            )
        })
    }

    /// The chat stream's first chunk (`role`, empty content; or the tool call's id and name,
    /// no arguments yet); `None` for completions and TGI.
    pub(crate) fn role(&self) -> Option<String> {
        if self.answer.dialect == Dialect::Tgi {
            return None;
        }
        match (self.flavour, &self.answer.tool) {
            (Flavour::Chat, None) => Some(self.chunk(
                r#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null"#,
                "{}",
            )),
            (Flavour::Chat, Some(tool)) => Some(self.chunk(
                &format!(
                    r#"{{"index":0,"delta":{{"role":"assistant","content":null,"tool_calls":[{{"index":0,"id":{},"type":"function","function":{{"name":{},"arguments":""}}}}],"refusal":null}},"logprobs":null,"finish_reason":null"#,
                    quote(tool.id),
                    quote(tool.name)
                ),
                "{}",
            )),
            (Flavour::Completion, _) => None,
        }
    }

    /// The chunks after the first: one per text piece, or one per piece of the tool call's
    /// arguments.
    pub(crate) fn pieces(&self) -> Vec<String> {
        if self.answer.dialect == Dialect::Tgi && self.flavour == Flavour::Chat {
            return tgi::pieces(self);
        }
        match (self.flavour, &self.answer.tool) {
            (Flavour::Chat, Some(_)) => tools::ARGUMENT_PIECES
                .iter()
                .map(|piece| self.tool_arguments(piece))
                .collect(),
            _ => self
                .answer
                .chunks
                .iter()
                .map(|text| self.content(text))
                .collect(),
        }
    }

    /// The chunk carrying a piece of the tool call's arguments.
    fn tool_arguments(&self, piece: &str) -> String {
        self.chunk(
            &format!(
                r#"{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":{}}}}}]}},"logprobs":null,"finish_reason":null"#,
                quote(piece)
            ),
            "{}",
        )
    }

    /// The chunk carrying content chunk `text`.
    fn content(&self, text: &str) -> String {
        let filters = azure::completion_filter_results("stop");
        match self.flavour {
            Flavour::Chat => self.chunk(
                &format!(
                    r#"{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null"#,
                    quote(text)
                ),
                &filters,
            ),
            Flavour::Completion => self.chunk(
                &format!(
                    r#"{{"text":{},"index":0,"logprobs":null,"finish_reason":null"#,
                    quote(text)
                ),
                &filters,
            ),
        }
    }

    /// The chunk with the `finish_reason`.
    pub(crate) fn finish(&self) -> String {
        if self.answer.dialect == Dialect::Tgi && self.flavour == Flavour::Chat {
            return tgi::finish(self);
        }
        let reason = quote(self.answer.finish_reason);
        let filters = if self.answer.finish_reason != "content_filter" {
            "{}".to_owned()
        } else {
            azure::completion_filter_results(self.answer.finish_reason)
        };
        match self.flavour {
            Flavour::Chat => self.chunk(
                &format!(r#"{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":{reason}"#),
                &filters,
            ),
            Flavour::Completion => self.chunk(
                &format!(r#"{{"text":"","index":0,"logprobs":null,"finish_reason":{reason}"#),
                &filters,
            ),
        }
    }

    /// The trailing usage chunk (`choices: []`).
    pub(crate) fn usage(&self) -> String {
        format!(
            r#"{},"choices":[],"usage":{}}}"#,
            self.head(),
            self.answer.usage.json()
        )
    }
}

/// One SSE event frame.
pub(crate) fn sse(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// Value `j` of embedding `i`.
fn embedding_value(i: usize, j: usize) -> f64 {
    ((i * EMBEDDING_DIMS + j) as f64 + 1.0) / 100.0
}

/// The embeddings response for `items` inputs.
pub(crate) fn embeddings(model: &str, items: usize, base64: bool, prompt_tokens: u64) -> String {
    let data: Vec<String> = (0..items)
        .map(|i| {
            let embedding = if base64 {
                let bytes: Vec<u8> = (0..EMBEDDING_DIMS)
                    .flat_map(|j| (embedding_value(i, j) as f32).to_le_bytes())
                    .collect();
                quote(&base64_encode(&bytes))
            } else {
                let values: Vec<String> = (0..EMBEDDING_DIMS)
                    .map(|j| Value::from(embedding_value(i, j)).to_string())
                    .collect();
                format!("[{}]", values.join(","))
            };
            format!(r#"{{"object":"embedding","index":{i},"embedding":{embedding}}}"#)
        })
        .collect();
    format!(
        r#"{{"object":"list","data":[{}],"model":{},"usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}}}"#,
        data.join(","),
        quote(model)
    )
}

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn token_counts_are_words_with_a_minimum_of_one() {
        let messages = serde_json::json!([
            {"role": "system", "content": "be  brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": null}
        ]);
        assert_eq!(
            chat_prompt_tokens(messages.as_array().map(Vec::as_slice).unwrap_or_default()),
            5
        );
        assert_eq!(chat_prompt_tokens(&[]), 1);
        assert_eq!(input_tokens(&serde_json::json!("a b c")), 3);
        assert_eq!(input_tokens(&serde_json::json!(["a b", "c"])), 3);
        assert_eq!(input_tokens(&serde_json::json!([[1, 2], [3]])), 3);
        assert_eq!(input_tokens(&serde_json::json!("")), 1);
    }

    #[test]
    fn chunks_end_with_a_full_stop() {
        assert_eq!(chunks(3), ["w0 ", "w1 ", "w2."]);
        assert!(chunks(0).is_empty());
    }

    #[test]
    fn errors_always_have_four_keys() {
        let body: Value =
            serde_json::from_str(&error_body("m \"q\"", "t", Some("p"), None)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "m \"q\"", "type": "t", "param": "p", "code": null}})
        );
    }
}
