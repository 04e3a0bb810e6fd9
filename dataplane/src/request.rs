//! The request body, parsed only as deep as routing and metering need (the `/v1` URL routes
//! are in `request/route.rs`).
//!
//! The top-level JSON object is split into borrowed `(key, raw value)` pairs; only `model`,
//! `stream`, `stream_options` and the fields validated per route are decoded. The body sent
//! upstream is the same pairs re-joined with `model` replaced by the provider's model name and
//! `stream_options.include_usage` forced on for streams, so everything else passes unchanged.

pub mod priced;
pub mod prompt;
mod route;
pub mod shape;
pub mod text;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use omg_shared::error::ErrorCode;
use omg_shared::tokens::MAX_OUTPUT_TOKENS_CAP;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{truncate, ApiError};
pub use prompt::Prompt;
pub use route::{route, ForwardKind, Route};

/// An object key, borrowed when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The top-level object as ordered `(key, raw value)` pairs.
struct TopLevel<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
                let mut entries: Vec<(Key<'de>, &'de RawValue)> = Vec::new();
                // Linear: one hash lookup per key (the shape check has capped their number).
                let mut seen: HashSet<Key<'de>> = HashSet::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!(
                            "duplicate key `{}`",
                            truncate(&key.0, 64)
                        )));
                    }
                    entries.push((key, value));
                }
                Ok(TopLevel(entries))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A parsed request body.
pub struct RequestBody<'a> {
    entries: Vec<(Key<'a>, &'a RawValue)>,
    /// The requested alias.
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// The client asked for `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// `max_tokens` / `max_completion_tokens` (the larger when both are sent).
    pub max_tokens: Option<u64>,
    /// Which of the two gave [`Self::max_tokens`].
    pub max_tokens_param: &'static str,
    /// Embeddings: `encoding_format: "base64"`.
    pub base64_embeddings: bool,
    /// See [`Self::choices`].
    choices: u64,
    /// Image generation: how many images (`n`, default 1).
    pub images: u64,
    /// Image generation: the `response_format` the client asked for, if any.
    pub image_format: Option<ImageFormat>,
}

/// How generated images are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// `url`: a link to the image.
    Url,
    /// `b64_json`: the image bytes, base64-encoded, in the JSON.
    B64Json,
}

/// Most images one request may ask for (OpenAI's limit for `n`).
pub const MAX_IMAGES: u64 = 10;

/// Most choices a chat or completions request may ask for (OpenAI's limit for `n`).
pub const MAX_CHOICES: u64 = 128;

/// Largest completions `best_of` (OpenAI's limit).
pub const MAX_BEST_OF: u64 = 20;

impl<'a> RequestBody<'a> {
    /// Parses and validates a body for a route.
    pub fn parse(bytes: &'a [u8], route: &Route) -> Result<Self, ApiError> {
        shape::check(bytes)?;
        let mut body = RequestBody {
            entries: top_level(bytes)?.0,
            model: String::new(),
            stream: false,
            include_usage: false,
            max_tokens: None,
            max_tokens_param: "max_tokens",
            base64_embeddings: false,
            choices: 1,
            images: 0,
            image_format: None,
        };
        body.model = body.parse_model()?;
        body.stream = body.parse_stream()?;
        body.include_usage = body.parse_include_usage()?;
        body.parse_max_tokens()?;
        body.parse_for_route(route)?;
        check_streamable(route, body.stream)?;
        Ok(body)
    }

    /// `model`: a non-empty string.
    fn parse_model(&self) -> Result<String, ApiError> {
        match self.raw("model") {
            None => Err(missing("model", "you must provide a model parameter")),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(model) if !model.is_empty() => Ok(model),
                Ok(_) => Err(missing("model", "you must provide a model parameter")),
                Err(_) => Err(invalid("model", "`model` must be a string")),
            },
        }
    }

    /// `stream`: a boolean, or null.
    fn parse_stream(&self) -> Result<bool, ApiError> {
        match self.raw("stream").map(|raw| raw.get()) {
            None | Some("null") | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(invalid("stream", "`stream` must be a boolean")),
        }
    }

    /// `stream_options.include_usage` (false when absent).
    fn parse_include_usage(&self) -> Result<bool, ApiError> {
        #[derive(Deserialize)]
        struct StreamOptions {
            #[serde(default)]
            include_usage: Option<bool>,
        }
        let Some(raw) = self.raw("stream_options") else {
            return Ok(false);
        };
        match serde_json::from_str::<Option<StreamOptions>>(raw.get()) {
            Ok(options) => Ok(options.and_then(|o| o.include_usage).unwrap_or(false)),
            Err(_) => Err(invalid(
                "stream_options",
                "`stream_options` must be an object like {\"include_usage\": true}",
            )),
        }
    }

    /// `max_completion_tokens` and `max_tokens`: non-negative integers; the larger one
    /// (both may be sent) bounds the completion.
    fn parse_max_tokens(&mut self) -> Result<(), ApiError> {
        for name in ["max_completion_tokens", "max_tokens"] {
            let Some(raw) = self.raw(name) else {
                continue;
            };
            match serde_json::from_str::<Option<u64>>(raw.get()) {
                Ok(Some(value)) if self.max_tokens.is_none_or(|seen| value > seen) => {
                    self.max_tokens = Some(value);
                    self.max_tokens_param = name_static(name);
                }
                Ok(_) => {}
                Err(_) => return Err(invalid(name_static(name), "must be a non-negative integer")),
            }
        }
        Ok(())
    }

    /// The fields the route needs: messages, a prompt or an input, and the choice counts.
    fn parse_for_route(&mut self, route: &Route) -> Result<(), ApiError> {
        match route {
            Route::Chat | Route::Messages | Route::CountTokens => {
                self.check_messages()?;
                self.choices = self.count_param("n", MAX_CHOICES)?;
            }
            Route::Completions => {
                if self.raw("prompt").is_none_or(|raw| raw.get() == "null") {
                    return Err(missing("prompt", "you must provide a `prompt`"));
                }
                let n = self.count_param("n", MAX_CHOICES)?;
                let best_of = self.count_param("best_of", MAX_BEST_OF)?;
                self.choices = n.max(best_of);
            }
            Route::Embeddings => self.parse_embeddings()?,
            Route::ImagesGenerations => self.parse_image_generation()?,
            Route::ListModels | Route::GetModel(_) | Route::Forward(_) => {}
        }
        Ok(())
    }

    /// `messages`: a non-empty array.
    fn check_messages(&self) -> Result<(), ApiError> {
        match self.raw("messages").map(|raw| raw.get().trim_start()) {
            None | Some("null") => Err(missing("messages", "you must provide a `messages` array")),
            Some(text) => match text.strip_prefix('[') {
                None => Err(invalid("messages", "`messages` must be an array")),
                Some(rest) if rest.trim_start().starts_with(']') => Err(invalid(
                    "messages",
                    "`messages` must contain at least one message",
                )),
                Some(_) => Ok(()),
            },
        }
    }

    /// An embeddings body: a non-empty `input`, and `encoding_format` `float` or `base64`.
    fn parse_embeddings(&mut self) -> Result<(), ApiError> {
        match self.raw("input").map(|raw| raw.get().trim()) {
            None | Some("null") => return Err(missing("input", "you must provide an `input`")),
            Some("[]") | Some("\"\"") => return Err(invalid("input", "`input` must not be empty")),
            Some(_) => {}
        }
        let Some(raw) = self.raw("encoding_format") else {
            return Ok(());
        };
        match serde_json::from_str::<Option<String>>(raw.get()) {
            Ok(Some(format)) if format == "base64" => self.base64_embeddings = true,
            Ok(Some(format)) if format == "float" => {}
            Ok(None) => {}
            _ => {
                return Err(invalid(
                    "encoding_format",
                    "`encoding_format` must be `float` or `base64`",
                ))
            }
        }
        Ok(())
    }

    /// Checks an image generation body: a non-empty `prompt`, `n` in 1..=10, a known
    /// `response_format`.
    fn parse_image_generation(&mut self) -> Result<(), ApiError> {
        match self
            .raw("prompt")
            .map(|raw| serde_json::from_str::<Option<String>>(raw.get()))
        {
            None | Some(Ok(None)) => return Err(missing("prompt", "you must provide a `prompt`")),
            Some(Ok(Some(prompt))) if prompt.trim().is_empty() => {
                return Err(invalid("prompt", "`prompt` must not be empty"))
            }
            Some(Ok(Some(_))) => {}
            Some(Err(_)) => return Err(invalid("prompt", "`prompt` must be a string")),
        }
        self.images = match self
            .raw("n")
            .map(|raw| serde_json::from_str::<Option<u64>>(raw.get()))
        {
            None | Some(Ok(None)) => 1,
            Some(Ok(Some(n))) if (1..=MAX_IMAGES).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "n",
                    "`n` must be an integer from 1 to 10 (the number of images)",
                ))
            }
        };
        if let Some(raw) = self.raw("response_format") {
            self.image_format = match serde_json::from_str::<Option<String>>(raw.get()) {
                Ok(None) => None,
                Ok(Some(format)) if format == "url" => Some(ImageFormat::Url),
                Ok(Some(format)) if format == "b64_json" => Some(ImageFormat::B64Json),
                _ => {
                    return Err(invalid(
                        "response_format",
                        "`response_format` must be `url` or `b64_json`",
                    ))
                }
            };
        }
        self.image_size()?;
        Ok(())
    }

    /// The image size asked for as `(width, height)`: `None` when absent or `auto`; `Err`
    /// when it is not `<width>x<height>`.
    pub fn image_size(&self) -> Result<Option<(u32, u32)>, ApiError> {
        let Some(raw) = self.raw("size") else {
            return Ok(None);
        };
        let size = serde_json::from_str::<Option<String>>(raw.get()).map_err(|_| {
            invalid(
                "size",
                "`size` must be a string such as `1024x1024` or `auto`",
            )
        })?;
        let Some(size) = size.filter(|s| s != "auto") else {
            return Ok(None);
        };
        let parsed = size.split_once('x').and_then(|(w, h)| {
            Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?))
        });
        match parsed {
            Some((w, h)) if w > 0 && h > 0 && w <= 16_384 && h <= 16_384 => Ok(Some((w, h))),
            _ => Err(invalid(
                "size",
                "`size` must be `auto` or `<width>x<height>` in pixels, such as `1024x1024`",
            )),
        }
    }

    /// An optional count parameter (`n`, `best_of`): 1 when absent or null, else an integer
    /// from 1 to `most` (400 naming it otherwise).
    fn count_param(&self, name: &'static str, most: u64) -> Result<u64, ApiError> {
        match self
            .raw(name)
            .map(|raw| serde_json::from_str::<Option<u64>>(raw.get()))
        {
            None | Some(Ok(None)) => Ok(1),
            Some(Ok(Some(count))) if (1..=most).contains(&count) => Ok(count),
            _ => Err(invalid(
                name,
                &format!("`{name}` must be an integer from 1 to {most}"),
            )),
        }
    }

    /// Refuses a `max_tokens` (or `max_completion_tokens`) above `cap`: the model's
    /// `max_output_tokens`, else [`MAX_OUTPUT_TOKENS_CAP`]. 400 naming the parameter.
    pub fn check_max_tokens(&self, cap: Option<u64>) -> Result<(), ApiError> {
        let cap = cap.unwrap_or(MAX_OUTPUT_TOKENS_CAP);
        match self.max_tokens {
            Some(asked) if asked > cap => Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "`{}` is {asked}, above this model's largest completion of {cap} tokens; lower it.",
                    self.max_tokens_param
                ),
            )
            .with_param(self.max_tokens_param)),
            _ => Ok(()),
        }
    }

    /// The raw JSON of a top-level field.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .find(|(key, _)| key.0 == name)
            .map(|(_, value)| *value)
    }

    /// The body for the upstream: `model` replaced, and for streams
    /// `stream_options.include_usage` forced on so every stream is metered.
    pub fn upstream_body(&self, provider_model: &str) -> Vec<u8> {
        self.upstream_body_with(provider_model, true)
    }

    /// [`upstream_body`](Self::upstream_body), with `force_stream_usage: false` for upstreams
    /// that refuse `stream_options`: the client's own `stream_options` (if any) then pass
    /// unchanged.
    pub fn upstream_body_with(&self, provider_model: &str, force_stream_usage: bool) -> Vec<u8> {
        let force = self.stream && force_stream_usage;
        let capacity = self
            .entries
            .iter()
            .map(|(k, v)| k.0.len() + v.get().len() + 4)
            .sum::<usize>()
            + 64;
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        let mut first = true;
        let mut push_entry = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys came from valid JSON; re-escaping through serde keeps them valid.
            out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
            out.push(b':');
            out.extend_from_slice(value);
        };
        let model_json = serde_json::to_string(provider_model).unwrap_or_default();
        for (key, value) in &self.entries {
            match key.0.as_ref() {
                "model" => push_entry(&mut out, "model", model_json.as_bytes()),
                "stream_options" if force => {}
                _ => push_entry(&mut out, &key.0, value.get().as_bytes()),
            }
        }
        if force {
            push_entry(&mut out, "stream_options", br#"{"include_usage":true}"#);
        }
        out.push(b'}');
        out
    }

    /// The prompt's text (messages' text parts, `prompt` or `input` strings), for mock answers
    /// and heuristic token estimates; kept to its start.
    pub fn prompt_text(&self) -> text::Text {
        self.prompt().text
    }

    /// The prompt's text, how many chat messages carry it and what is billed beyond text,
    /// read in one streaming pass (see [`prompt`]).
    pub fn prompt(&self) -> Prompt {
        let mut prompt = Prompt::default();
        if let Some(raw) = self.raw("messages") {
            prompt::read_messages(raw.get(), &mut prompt);
        }
        for name in ["prompt", "input"] {
            if let Some(raw) = self.raw(name) {
                prompt::read_texts(raw.get(), &mut prompt);
            }
        }
        prompt
    }

    /// Embedding inputs as texts (token-array inputs become empty strings).
    pub fn embedding_inputs(&self) -> Vec<std::borrow::Cow<'a, str>> {
        self.raw("input")
            .map(|raw| prompt::embedding_inputs(raw.get()))
            .unwrap_or_default()
    }

    /// How many answers the request asks for per prompt: chat `n`, completions the larger of
    /// `n` and `best_of` (each candidate is billed). Checked by [`Self::parse`].
    pub fn choices(&self) -> u64 {
        self.choices
    }
}

fn name_static(name: &str) -> &'static str {
    if name == "max_tokens" {
        "max_tokens"
    } else {
        "max_completion_tokens"
    }
}

/// Splits the body into its top-level `(key, raw value)` pairs (400 when it is not one JSON
/// object without duplicate keys).
fn top_level(bytes: &[u8]) -> Result<TopLevel<'_>, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        let message = if error.is_data() && !error.to_string().contains("duplicate key") {
            "The request body must be a JSON object.".to_owned()
        } else {
            format!("We could not parse the JSON body of your request ({error}). Send valid JSON with `Content-Type: application/json`.")
        };
        ApiError::new(ErrorCode::InvalidJson, message)
    })
}

/// Refuses `stream: true` where the route cannot stream (embeddings, image generation).
fn check_streamable(route: &Route, stream: bool) -> Result<(), ApiError> {
    if stream && matches!(route, Route::Embeddings) {
        return Err(invalid("stream", "embeddings cannot be streamed"));
    }
    if stream && matches!(route, Route::ImagesGenerations) {
        return Err(invalid(
            "stream",
            "streamed image generation (partial images) is not supported by the gateway; send `stream: false`",
        ));
    }
    Ok(())
}

fn missing(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::MissingParameter, message.to_owned()).with_param(param)
}

fn invalid(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message.to_owned()).with_param(param)
}

#[cfg(test)]
mod tests;
