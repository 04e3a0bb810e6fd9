//! What a request's prompt is made of, read in one streaming pass over the raw JSON: the text
//! of messages (content strings and text parts, tool-call arguments), `prompt` and `input`
//! strings, and what is billed without being text (images by detail, audio and file data
//! bounded by their size, token arrays by their length). Nothing is buffered into a tree:
//! serde's untagged enums would copy every value into its private `Content` first.
//!
//! Values of unexpected types are skipped one by one, so a malformed item never hides the
//! rest of the prompt from the count.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::text::Text as PromptText;
use super::Key;

/// Tokens OpenAI bills for an image at `detail: low`.
pub const IMAGE_TOKENS_LOW: u64 = 85;
/// Tokens OpenAI bills at most for an image at `detail: high` or `auto`, whatever its size:
/// 85 + 170 per 512-pixel tile, and an image scaled to fit 2048 × 2048 and then to 768 on its
/// short side has at most 2 × 4 tiles.
pub const IMAGE_TOKENS_HIGH: u64 = 85 + 170 * 8;
/// Base64 characters of audio per token counted: audio is billed about 10 tokens a second,
/// and even 8 kbit/s audio takes more than 64 base64 characters per tenth of a second.
pub const AUDIO_CHARS_PER_TOKEN: u64 = 64;
/// Base64 characters of an inline file (a PDF) per token counted: one token per three bytes
/// of file, more than its text and page images are billed.
pub const FILE_CHARS_PER_TOKEN: u64 = 4;

/// A request's prompt, see [`super::RequestBody::prompt`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    /// Messages' text parts and tool-call arguments, `prompt` or `input` strings, one message
    /// per line; kept to its start (see [`PromptText`]).
    pub text: PromptText,
    /// Chat messages (0 for completions and embeddings).
    pub messages: usize,
    /// Tokens billed beyond the text: images, audio, files, token-array items.
    pub extra_tokens: u64,
    /// Completions: how many prompts `prompt` holds (an array of strings or token arrays is
    /// one prompt per item, each answered); 1 otherwise.
    pub prompts: u64,
}

impl Prompt {
    fn add_text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn add_extra(&mut self, tokens: u64) {
        self.extra_tokens = self.extra_tokens.saturating_add(tokens);
    }
}

/// Reads `messages` (a chat body's raw JSON array) into `prompt`.
pub fn read_messages(raw: &str, prompt: &mut Prompt) {
    let mut de = serde_json::Deserializer::from_str(raw);
    let _ = Messages(prompt).deserialize(&mut de);
}

/// Reads `prompt` or `input` (a string, strings, a token array or token arrays) into
/// `prompt`.
pub fn read_texts(raw: &str, prompt: &mut Prompt) {
    let mut de = serde_json::Deserializer::from_str(raw);
    let _ = Texts(prompt).deserialize(&mut de);
}

/// Embedding inputs as texts: one string, or one per item of an array (token arrays and
/// other items as empty strings); an array of numbers is one tokenized input. Texts are
/// borrowed from the body unless they hold escapes.
pub fn embedding_inputs(raw: &str) -> Vec<Cow<'_, str>> {
    let mut de = serde_json::Deserializer::from_str(raw);
    Inputs.deserialize(&mut de).unwrap_or_default()
}

/// `input` of an embeddings request, as texts.
struct Inputs;

impl<'de> DeserializeSeed<'de> for Inputs {
    type Value = Vec<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Inputs {
    type Value = Vec<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("embedding inputs")
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(vec![Cow::Borrowed(text)])
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(vec![Cow::Owned(text.to_owned())])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut texts = Vec::new();
        let mut all_numbers = true;
        while let Some(item) = seq.next_element_seed(InputItem)? {
            all_numbers &= item.is_none();
            texts.push(item.unwrap_or_default());
        }
        if all_numbers && !texts.is_empty() {
            return Ok(vec![Cow::Borrowed("")]);
        }
        Ok(texts)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
}

/// One embedding input: `Some(text)` (empty for anything but a string), `None` for a number.
struct InputItem;

impl<'de> DeserializeSeed<'de> for InputItem {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InputItem {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an embedding input")
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(text)))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(text.to_owned())))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed("")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed("")))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(Cow::Borrowed("")))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(Cow::Borrowed("")))
    }
}

/// The visitor methods that skip a value of a type not expected here.
macro_rules! skip_other_types {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

/// The `skip_other_types` for strings.
macro_rules! skip_strings {
    () => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
    };
}

/// The `skip_other_types` for maps.
macro_rules! skip_maps {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    };
}

/// The `skip_other_types` for arrays.
macro_rules! skip_seqs {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }
    };
}

/// Declares a seed that deserializes any value through its own visitor.
macro_rules! seed {
    ($name:ident) => {
        impl<'de> DeserializeSeed<'de> for $name<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
                deserializer.deserialize_any(self)
            }
        }
    };
}

/// `messages`: an array of messages.
struct Messages<'p>(&'p mut Prompt);
seed!(Messages);

impl<'de> Visitor<'de> for Messages<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Message(&mut *self.0))?.is_some() {
            self.0.messages += 1;
            self.0.text.push('\n');
        }
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_maps!();
}

/// One message: its `content`, `tool_calls` and `function_call`.
struct Message<'p>(&'p mut Prompt);
seed!(Message);

impl<'de> Visitor<'de> for Message<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.0.as_ref() {
                "content" => map.next_value_seed(Content(&mut *self.0))?,
                "tool_calls" => map.next_value_seed(ToolCalls(&mut *self.0))?,
                "function_call" => map.next_value_seed(Function(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// A message's `content`: a string or an array of parts.
struct Content<'p>(&'p mut Prompt);
seed!(Content);

impl<'de> Visitor<'de> for Content<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message content")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.0.add_text(text);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Part(&mut *self.0))?.is_some() {}
        Ok(())
    }
    skip_other_types!();
    skip_maps!();
}

/// One content part: `text`, `image_url`, `input_audio` or `file`.
struct Part<'p>(&'p mut Prompt);
seed!(Part);

impl<'de> Visitor<'de> for Part<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content part")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.0.as_ref() {
                "text" | "refusal" => {
                    map.next_value_seed(Text(&mut *self.0))?;
                    self.0.text.push(' ');
                }
                "image_url" => map.next_value_seed(Image(&mut *self.0))?,
                "input_audio" => map.next_value_seed(Sized {
                    prompt: &mut *self.0,
                    field: "data",
                    chars_per_token: AUDIO_CHARS_PER_TOKEN,
                })?,
                "file" => map.next_value_seed(Sized {
                    prompt: &mut *self.0,
                    field: "file_data",
                    chars_per_token: FILE_CHARS_PER_TOKEN,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// A string counted as text; anything else skipped.
struct Text<'p>(&'p mut Prompt);
seed!(Text);

impl<'de> Visitor<'de> for Text<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.0.add_text(text);
        Ok(())
    }
    skip_other_types!();
    skip_maps!();
    skip_seqs!();
}

/// `image_url`: a URL string or `{url, detail}`; billed by detail.
struct Image<'p>(&'p mut Prompt);
seed!(Image);

impl<'de> Visitor<'de> for Image<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an image")
    }
    fn visit_str<E: de::Error>(self, _url: &str) -> Result<(), E> {
        self.0.add_extra(IMAGE_TOKENS_HIGH);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut low = false;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == "detail" {
                low = map
                    .next_value_seed(Probe)?
                    .is_some_and(|(_, is_low)| is_low);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        self.0.add_extra(if low {
            IMAGE_TOKENS_LOW
        } else {
            IMAGE_TOKENS_HIGH
        });
        Ok(())
    }
    skip_other_types!();
    skip_seqs!();
}

/// An object whose `field` is base64 data, counted by its length.
struct Sized<'p> {
    prompt: &'p mut Prompt,
    field: &'static str,
    chars_per_token: u64,
}
seed!(Sized);

impl<'de> Visitor<'de> for Sized<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with inline data")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == self.field {
                if let Some((chars, _)) = map.next_value_seed(Probe)? {
                    let chars = u64::try_from(chars).unwrap_or(u64::MAX);
                    self.prompt
                        .add_extra(chars.div_ceil(self.chars_per_token).max(1));
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// A string's length and whether it is `low`, without keeping it; `None` for anything else.
struct Probe;

impl<'de> DeserializeSeed<'de> for Probe {
    type Value = Option<(usize, bool)>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe {
    type Value = Option<(usize, bool)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some((text.len(), text == "low")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// `tool_calls`: an array of calls, each counted by its function's name and arguments.
struct ToolCalls<'p>(&'p mut Prompt);
seed!(ToolCalls);

impl<'de> Visitor<'de> for ToolCalls<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tool calls")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ToolCall(&mut *self.0))?.is_some() {}
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_maps!();
}

/// One tool call: its `function`.
struct ToolCall<'p>(&'p mut Prompt);
seed!(ToolCall);

impl<'de> Visitor<'de> for ToolCall<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tool call")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == "function" || key.0 == "custom" {
                map.next_value_seed(Function(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// A function call: `name` and `arguments` (or a custom tool's `input`) counted as text.
struct Function<'p>(&'p mut Prompt);
seed!(Function);

impl<'de> Visitor<'de> for Function<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a function call")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.0.as_ref() {
                "name" | "arguments" | "input" => {
                    map.next_value_seed(Text(&mut *self.0))?;
                    self.0.text.push(' ');
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// `prompt` / `input`: a string, or an array of strings, token arrays or tokens.
struct Texts<'p>(&'p mut Prompt);
seed!(Texts);

impl<'de> Visitor<'de> for Texts<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a prompt")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.0.add_text(text);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut items = 0u64;
        while let Some(counted) = seq.next_element_seed(Item(&mut *self.0))? {
            items += u64::from(counted);
        }
        self.0.prompts = self.0.prompts.max(items);
        Ok(())
    }
    skip_other_types!();
    skip_maps!();
}

/// One item of a `prompt` / `input` array: a string or a token array (one prompt each, so
/// `true`) or a single token (`false`: the array is one tokenized prompt).
struct Item<'p>(&'p mut Prompt);

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a prompt item")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        self.0.add_text(text);
        self.0.text.push('\n');
        Ok(true)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        self.0.add_extra(1);
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        self.0.add_extra(1);
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        self.0.add_extra(1);
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut tokens = 0u64;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            tokens += 1;
        }
        self.0.add_extra(tokens);
        Ok(true)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(raw: &str) -> Prompt {
        let mut prompt = Prompt::default();
        read_messages(raw, &mut prompt);
        prompt
    }

    fn texts(raw: &str) -> Prompt {
        let mut prompt = Prompt::default();
        read_texts(raw, &mut prompt);
        prompt
    }

    #[test]
    fn messages_count_text_tool_calls_and_billed_parts() {
        let prompt = messages(
            r#"[{"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"look"},
                    {"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}},
                    {"image_url":{"detail":"high","url":"data:image/png;base64,AAAA"},"type":"image_url"},
                    {"type":"image_url","image_url":"https://x/z.png"},
                    {"type":"input_audio","input_audio":{"format":"wav","data":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
                    {"type":"file","file":{"filename":"a.pdf","file_data":"AAAAAAAA"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"sunny"},
                5, "junk", {"content":{"odd":true}},
                {"role":"user","content":"after the junk"}]"#,
        );
        assert_eq!(prompt.messages, 8);
        for piece in [
            "be brief",
            "look",
            "get_weather",
            "Paris",
            "sunny",
            "after the junk",
        ] {
            assert!(
                prompt.text.head().contains(piece),
                "{piece} in {:?}",
                prompt.text
            );
        }
        // low + high + high (a bare URL) + 68 chars of audio / 64 + 8 chars of file / 4.
        assert_eq!(
            prompt.extra_tokens,
            IMAGE_TOKENS_LOW + 2 * IMAGE_TOKENS_HIGH + 2 + 2
        );
    }

    #[test]
    fn prompts_and_inputs_count_strings_and_token_arrays() {
        let one = texts(r#""hello""#);
        assert_eq!(
            (one.text.head(), one.prompts, one.extra_tokens),
            ("hello", 0, 0)
        );
        let many = texts(r#"["a","b","c"]"#);
        assert_eq!((many.prompts, many.text.head()), (3, "a\nb\nc\n"));
        let tokens = texts("[1,2,3,4]");
        assert_eq!((tokens.prompts, tokens.extra_tokens), (0, 4));
        let arrays = texts("[[1,2],[3,4,5],\"x\"]");
        assert_eq!((arrays.prompts, arrays.extra_tokens), (3, 5));
        let junk = texts(r#"{"a":[1,2]}"#);
        assert_eq!(junk, Prompt::default());
    }
}
