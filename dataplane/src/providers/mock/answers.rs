//! The mock's answers: deterministic OpenAI-shaped bodies and stream events. The text is a
//! fixed word sequence whose starting word depends on the prompt, so the same request always
//! gets the same answer; the number of chunks and token counts come from [`MockSettings`].

use omg_shared::mock::MockSettings;
use omg_shared::tokens::estimate_tokens;

use crate::providers::Usage;
use crate::request::text::Text;
use crate::sse::data_event;

const WORDS: [&str; 16] = [
    "Open",
    "Model",
    "Gateway",
    "answers",
    "deterministically",
    "for",
    "tests",
    "and",
    "demos",
    "with",
    "streamed",
    "tokens",
    "that",
    "look",
    "real",
    "enough",
];

/// Everything the mock needs from the request.
#[derive(Debug, Clone)]
pub struct MockRequest<'a> {
    /// The alias as the client sent it (echoed as `model`).
    pub model: &'a str,
    /// The prompt text's start (see `request::text::Text`).
    pub prompt: &'a str,
    /// Response id.
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
}

/// The answer's content chunks and token counts.
pub fn plan(settings: &MockSettings, prompt: &Text) -> (Vec<String>, Usage) {
    let seed = prompt.head().bytes().fold(0usize, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let count = usize::try_from(settings.chunks).unwrap_or(1).max(1);
    let chunks: Vec<String> = (0..count)
        .map(|i| {
            let word = WORDS[(seed + i) % WORDS.len()];
            if i + 1 == count {
                format!("{word}.")
            } else {
                format!("{word} ")
            }
        })
        .collect();
    let usage = Usage {
        prompt_tokens: settings
            .prompt_tokens
            .unwrap_or_else(|| prompt.estimate().max(1)),
        completion_tokens: settings.completion_tokens.unwrap_or(settings.chunks),
        cached_tokens: 0,
        cache_write_tokens: 0,
        images: 0,
    };
    (chunks, usage)
}

fn usage_json(usage: &Usage) -> String {
    format!(
        r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.prompt_tokens + usage.completion_tokens
    )
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A non-streamed chat completion.
pub fn chat_completion(request: &MockRequest<'_>, chunks: &[String], usage: &Usage) -> Vec<u8> {
    format!(
        r#"{{"id":{},"object":"chat.completion","created":{},"model":{},"choices":[{{"index":0,"message":{{"role":"assistant","content":{},"refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{},"system_fingerprint":"fp_omg_mock"}}"#,
        json_string(request.id),
        request.created,
        json_string(request.model),
        json_string(&chunks.concat()),
        usage_json(usage)
    )
    .into_bytes()
}

/// A non-streamed legacy completion.
pub fn text_completion(request: &MockRequest<'_>, chunks: &[String], usage: &Usage) -> Vec<u8> {
    format!(
        r#"{{"id":{},"object":"text_completion","created":{},"model":{},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":"stop"}}],"usage":{}}}"#,
        json_string(request.id),
        request.created,
        json_string(request.model),
        json_string(&chunks.concat()),
        usage_json(usage)
    )
    .into_bytes()
}

/// Builds the SSE events of a streamed answer, in order, as separately sendable frames.
#[derive(Debug)]
pub struct StreamEvents {
    prefix: String,
    chat: bool,
    include_usage: bool,
}

impl StreamEvents {
    /// Events for a chat (`chat = true`) or legacy completions stream.
    pub fn new(request: &MockRequest<'_>, chat: bool, include_usage: bool) -> Self {
        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let prefix = format!(
            r#"{{"id":{},"object":"{object}","created":{},"model":{}"#,
            json_string(request.id),
            request.created,
            json_string(request.model)
        );
        Self {
            prefix,
            chat,
            include_usage,
        }
    }

    fn usage_field(&self) -> &'static str {
        if self.include_usage {
            r#","usage":null"#
        } else {
            ""
        }
    }

    /// The first event (chat: the assistant role), if the format has one.
    pub fn role(&self) -> Option<Vec<u8>> {
        self.chat.then(|| {
            data_event(
                format!(
                    r#"{},"system_fingerprint":"fp_omg_mock","choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]{}}}"#,
                    self.prefix,
                    self.usage_field()
                )
                .as_bytes(),
            )
        })
    }

    /// One content chunk.
    pub fn content(&self, text: &str) -> Vec<u8> {
        let choice = if self.chat {
            format!(
                r#"{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}"#,
                json_string(text)
            )
        } else {
            format!(
                r#"{{"text":{},"index":0,"logprobs":null,"finish_reason":null}}"#,
                json_string(text)
            )
        };
        data_event(
            format!(
                r#"{},"choices":[{choice}]{}}}"#,
                self.prefix,
                self.usage_field()
            )
            .as_bytes(),
        )
    }

    /// The closing events: finish reason, the usage chunk when asked, `[DONE]`.
    pub fn finish(&self, usage: &Usage) -> Vec<u8> {
        let choice = if self.chat {
            r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#
        } else {
            r#"{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}"#
        };
        let mut out = data_event(
            format!(
                r#"{},"choices":[{choice}]{}}}"#,
                self.prefix,
                self.usage_field()
            )
            .as_bytes(),
        );
        if self.include_usage {
            out.extend(data_event(
                format!(
                    r#"{},"choices":[],"usage":{}}}"#,
                    self.prefix,
                    usage_json(usage)
                )
                .as_bytes(),
            ));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }
}

/// An embeddings response: one deterministic unit vector per input, written into one buffer
/// (an answer for many inputs is not held twice).
pub fn embeddings(
    model: &str,
    inputs: &[impl AsRef<str>],
    dims: u64,
    base64: bool,
) -> (Vec<u8>, Usage) {
    let dims = usize::try_from(dims).unwrap_or(8).max(1);
    let per_item = 48 + if base64 { dims * 6 } else { dims * 12 };
    let mut body = String::with_capacity(inputs.len().saturating_mul(per_item).saturating_add(128));
    body.push_str(r#"{"object":"list","data":["#);
    let mut prompt_tokens: u64 = 0;
    for (index, input) in inputs.iter().enumerate() {
        let input = input.as_ref();
        prompt_tokens = prompt_tokens.saturating_add(estimate_tokens(input).max(1));
        let vector = unit_vector(input, dims);
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            json_string(&base64_encode(&bytes))
        } else {
            serde_json::to_string(&vector).unwrap_or_else(|_| "[]".to_owned())
        };
        if index > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"object":"embedding","index":{index},"embedding":{embedding}}}"#
        ));
    }
    body.push_str(&format!(
        r#"],"model":{},"usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}}}"#,
        json_string(model)
    ));
    (
        body.into_bytes(),
        Usage {
            prompt_tokens,
            completion_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
        },
    )
}

/// The deterministic unit vector of one input.
fn unit_vector(input: &str, dims: usize) -> Vec<f32> {
    let seed = input.bytes().fold(17u64, |acc, b| {
        acc.wrapping_mul(131).wrapping_add(u64::from(b))
    });
    let raw: Vec<f32> = (0..dims)
        .map(|j| {
            let x = seed.wrapping_add((j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.iter().map(|v| v / norm).collect()
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    crate::providers::embeddings::base64_f32_bytes(bytes)
}

/// Side of the mock's square images, in pixels.
const IMAGE_SIDE: u32 = 8;

/// `n` deterministic images for a prompt, as an OpenAI image answer: real PNGs (a square
/// of one colour derived from the prompt and the image's index), base64 or `data:` URLs.
pub fn images(
    prompt: &str,
    n: u64,
    format: Option<crate::request::ImageFormat>,
    created: i64,
) -> crate::providers::Answer {
    let seed = prompt.bytes().fold(17u32, |acc, b| {
        acc.wrapping_mul(131).wrapping_add(u32::from(b))
    });
    let encoded: Vec<String> = (0..n)
        .map(|index| {
            let colour = seed.wrapping_add((index as u32).wrapping_mul(0x9e37_79b9));
            base64_encode(&png(IMAGE_SIDE, colour.to_be_bytes()))
        })
        .collect();
    let generated: Vec<crate::providers::images::Generated<'_>> = encoded
        .iter()
        .map(|b64| crate::providers::images::Generated {
            b64,
            media_type: "image/png",
            revised_prompt: None,
        })
        .collect();
    crate::providers::images::answer(created, format, &generated)
}

/// A `side`×`side` RGB PNG of one colour (zlib with stored deflate blocks: no compressor).
fn png(side: u32, rgb: [u8; 4]) -> Vec<u8> {
    // Each row: filter byte 0 (none), then the pixels.
    let mut row = vec![0u8];
    for _ in 0..side {
        row.extend_from_slice(&rgb[..3]);
    }
    let raw = row.repeat(side as usize);
    // zlib: header, one final stored block (raw is far below 65,535 bytes), Adler-32.
    let mut zlib = vec![0x78, 0x01, 0x01];
    let len = u16::try_from(raw.len()).unwrap_or(u16::MAX);
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(&raw[..usize::from(len)]);
    let (mut a, mut b) = (1u32, 0u32);
    for byte in &raw[..usize::from(len)] {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    };
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    chunk(b"IHDR", &header);
    chunk(b"IDAT", &zlib);
    chunk(b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_images_are_valid_pngs_and_deterministic() {
        let answer = images("a red fox", 2, None, 5);
        let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
        let first = json["data"][0]["b64_json"].as_str().expect("b64");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(first)
            .expect("base64");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82])); // IEND's CRC
        assert_ne!(json["data"][0], json["data"][1]);
        assert_eq!(answer.body, images("a red fox", 2, None, 5).body);
        assert_eq!(answer.usage.map(|u| u.images), Some(2));
    }
    use crate::providers::openai::{EventAction, StreamMeter};
    use crate::sse::SseSplitter;

    fn request() -> MockRequest<'static> {
        MockRequest {
            model: "mock-chat",
            prompt: "hello",
            id: "chatcmpl-1",
            created: 1,
        }
    }

    #[test]
    fn answers_are_deterministic_and_metered() {
        let settings = MockSettings {
            chunks: 4,
            ..MockSettings::default()
        };
        let (chunks, usage) = plan(&settings, &Text::of("hello"));
        assert_eq!(plan(&settings, &Text::of("hello")).0, chunks);
        assert_eq!(chunks.len(), 4);
        assert_eq!(usage.completion_tokens, 4);
        let body: serde_json::Value =
            serde_json::from_slice(&chat_completion(&request(), &chunks, &usage))
                .unwrap_or_default();
        assert_eq!(body["choices"][0]["message"]["content"], chunks.concat());
        assert_eq!(body["usage"]["total_tokens"], usage.prompt_tokens + 4);
    }

    #[test]
    fn streams_are_valid_openai_sse() {
        let settings = MockSettings {
            chunks: 3,
            ..MockSettings::default()
        };
        let (chunks, usage) = plan(&settings, &Text::of("hello"));
        for include_usage in [false, true] {
            let events = StreamEvents::new(&request(), true, include_usage);
            let mut bytes = events.role().unwrap_or_default();
            chunks.iter().for_each(|c| bytes.extend(events.content(c)));
            bytes.extend(events.finish(&usage));
            let mut splitter = SseSplitter::default();
            let mut meter = StreamMeter::new(include_usage);
            for event in splitter.push(&bytes).unwrap_or_default() {
                assert_eq!(meter.process(&event), EventAction::Forward);
                if let Some(data) = crate::sse::event_data(&event) {
                    if *data != *b"[DONE]" {
                        assert!(serde_json::from_slice::<serde_json::Value>(&data).is_ok());
                    }
                }
            }
            assert!(meter.state.done);
            assert_eq!(meter.state.usage.is_some(), include_usage);
        }
    }

    #[test]
    fn embeddings_in_both_encodings() {
        let inputs = vec!["a".to_owned(), "b".to_owned()];
        let (body, usage) = embeddings("e", &inputs, 4, true);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(value["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            value["data"][0]["embedding"].as_str().map(str::len),
            Some(24)
        ); // 16 bytes → 24 chars
        assert_eq!(usage.prompt_tokens, 2);
        let (floats, _) = embeddings("e", &inputs, 4, false);
        let value: serde_json::Value = serde_json::from_slice(&floats).unwrap_or_default();
        assert_eq!(
            value["data"][1]["embedding"].as_array().map(Vec::len),
            Some(4)
        );
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
    }
}
