//! The `/v1` routes and the request body: parsed only as deep as routing and metering need.
//!
//! The top-level JSON object is split into borrowed `(key, raw value)` pairs; only `model`,
//! `stream`, `stream_options` and the fields validated per route are decoded. The body sent
//! upstream is the same pairs re-joined with `model` replaced by the provider's model name and
//! `stream_options.include_usage` forced on for streams, so everything else passes unchanged.

pub mod priced;
pub mod prompt;
pub mod shape;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use omg_shared::config::ModelType;
use omg_shared::error::ErrorCode;
use omg_shared::tokens::MAX_OUTPUT_TOKENS_CAP;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{truncate, ApiError};
pub use prompt::Prompt;

/// A `/v1` endpoint the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/models`
    ListModels,
    /// `GET /v1/models/{id}`
    GetModel(String),
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/images/generations`
    ImagesGenerations,
    /// `POST /v1/messages` (Anthropic's Messages API, translated to a chat request).
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
    /// `/v1/files*` and `/v1/batches*` (any method): authenticated here, then forwarded to
    /// the control plane's internal listener with a signed identity (cluster mode).
    Forward(ForwardKind),
}

/// Which family of forwarded endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// `/v1/files*`
    Files,
    /// `/v1/batches*`
    Batches,
}

/// `/v1/files`, `/v1/files/…` → files; the same for batches; anything else is not forwarded.
fn forward_kind(path: &str) -> Option<ForwardKind> {
    let under = |base: &str| {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/v1/files") {
        Some(ForwardKind::Files)
    } else if under("/v1/batches") {
        Some(ForwardKind::Batches)
    } else {
        None
    }
}

impl Route {
    /// The usage-record name of the operation.
    pub fn endpoint_name(&self) -> &'static str {
        match self {
            Route::ListModels | Route::GetModel(_) => "models",
            Route::Chat => "chat.completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::ImagesGenerations => "images.generations",
            Route::Messages => "messages",
            Route::CountTokens => "messages.count_tokens",
            Route::Forward(ForwardKind::Files) => "files",
            Route::Forward(ForwardKind::Batches) => "batches",
        }
    }

    /// The upstream path below the provider's base URL.
    pub fn upstream_path(&self) -> &'static str {
        match self {
            Route::ListModels | Route::GetModel(_) => "/models",
            Route::Chat | Route::Messages => "/chat/completions",
            Route::CountTokens => "/messages/count_tokens",
            Route::Completions => "/completions",
            Route::Embeddings => "/embeddings",
            Route::ImagesGenerations => "/images/generations",
            Route::Forward(ForwardKind::Files) => "/files",
            Route::Forward(ForwardKind::Batches) => "/batches",
        }
    }

    /// Whether the client speaks Anthropic's Messages API on this route.
    pub fn is_anthropic(&self) -> bool {
        matches!(self, Route::Messages | Route::CountTokens)
    }

    /// The model type an alias must have to serve the route.
    pub fn model_type(&self) -> Option<ModelType> {
        match self {
            Route::Chat | Route::Completions | Route::Messages | Route::CountTokens => {
                Some(ModelType::Llm)
            }
            Route::Embeddings => Some(ModelType::Embedding),
            Route::ImagesGenerations => Some(ModelType::Image),
            Route::ListModels | Route::GetModel(_) | Route::Forward(_) => None,
        }
    }
}

/// Matches method and path (without query).
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let post = |route: Route| {
        if method == "POST" {
            Ok(route)
        } else {
            Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("Method {method} is not allowed on {path}; use POST."),
            ))
        }
    };
    if let Some(kind) = forward_kind(path) {
        return Ok(Route::Forward(kind));
    }
    match path {
        "/v1/chat/completions" => post(Route::Chat),
        "/v1/completions" => post(Route::Completions),
        "/v1/embeddings" => post(Route::Embeddings),
        "/v1/images/generations" => post(Route::ImagesGenerations),
        "/v1/messages" => post(Route::Messages),
        "/v1/messages/count_tokens" => post(Route::CountTokens),
        "/v1/models" | "/v1/models/" if method == "GET" => Ok(Route::ListModels),
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if method == "GET" && !id.is_empty() => {
                Ok(Route::GetModel(percent_decode(id)))
            }
            _ => Err(ApiError::new(
                ErrorCode::UnknownUrl,
                format!("Invalid URL ({method} {}).", truncate(path, 200)),
            )),
        },
    }
}

/// Decodes `%XX` escapes (model ids such as `org%2Fmodel`); invalid escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

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
        let top: TopLevel<'a> = serde_json::from_slice(bytes).map_err(|error| {
            let message = if error.is_data() && !error.to_string().contains("duplicate key") {
                "The request body must be a JSON object.".to_owned()
            } else {
                format!("We could not parse the JSON body of your request ({error}). Send valid JSON with `Content-Type: application/json`.")
            };
            ApiError::new(ErrorCode::InvalidJson, message)
        })?;
        let mut body = RequestBody {
            entries: top.0,
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
        body.model = match body.raw("model") {
            None => return Err(missing("model", "you must provide a model parameter")),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(model) if !model.is_empty() => model,
                Ok(_) => return Err(missing("model", "you must provide a model parameter")),
                Err(_) => return Err(invalid("model", "`model` must be a string")),
            },
        };
        body.stream = match body.raw("stream").map(|raw| raw.get()) {
            None | Some("null") | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid("stream", "`stream` must be a boolean")),
        };
        if let Some(raw) = body.raw("stream_options") {
            #[derive(Deserialize)]
            struct StreamOptions {
                #[serde(default)]
                include_usage: Option<bool>,
            }
            match serde_json::from_str::<Option<StreamOptions>>(raw.get()) {
                Ok(options) => {
                    body.include_usage = options.and_then(|o| o.include_usage).unwrap_or(false)
                }
                Err(_) => {
                    return Err(invalid(
                        "stream_options",
                        "`stream_options` must be an object like {\"include_usage\": true}",
                    ))
                }
            }
        }
        for name in ["max_completion_tokens", "max_tokens"] {
            if let Some(raw) = body.raw(name) {
                match serde_json::from_str::<Option<u64>>(raw.get()) {
                    // Both may be sent: the larger one bounds the completion.
                    Ok(Some(value)) if body.max_tokens.is_none_or(|seen| value > seen) => {
                        body.max_tokens = Some(value);
                        body.max_tokens_param = name_static(name);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(invalid(name_static(name), "must be a non-negative integer"))
                    }
                }
            }
        }
        match route {
            Route::Chat | Route::Messages | Route::CountTokens => {
                match body.raw("messages").map(|raw| raw.get().trim_start()) {
                    None | Some("null") => {
                        return Err(missing("messages", "you must provide a `messages` array"))
                    }
                    Some(text) if !text.starts_with('[') => {
                        return Err(invalid("messages", "`messages` must be an array"))
                    }
                    Some(text) if text[1..].trim_start().starts_with(']') => {
                        return Err(invalid(
                            "messages",
                            "`messages` must contain at least one message",
                        ))
                    }
                    Some(_) => {}
                }
                body.choices = body.count_param("n", MAX_CHOICES)?;
            }
            Route::Completions => {
                if body.raw("prompt").is_none_or(|raw| raw.get() == "null") {
                    return Err(missing("prompt", "you must provide a `prompt`"));
                }
                let n = body.count_param("n", MAX_CHOICES)?;
                let best_of = body.count_param("best_of", MAX_BEST_OF)?;
                body.choices = n.max(best_of);
            }
            Route::Embeddings => {
                match body.raw("input").map(|raw| raw.get().trim()) {
                    None | Some("null") => {
                        return Err(missing("input", "you must provide an `input`"))
                    }
                    Some("[]") | Some("\"\"") => {
                        return Err(invalid("input", "`input` must not be empty"))
                    }
                    Some(_) => {}
                }
                if let Some(raw) = body.raw("encoding_format") {
                    match serde_json::from_str::<Option<String>>(raw.get()) {
                        Ok(Some(format)) if format == "base64" => body.base64_embeddings = true,
                        Ok(Some(format)) if format == "float" => {}
                        Ok(None) => {}
                        _ => {
                            return Err(invalid(
                                "encoding_format",
                                "`encoding_format` must be `float` or `base64`",
                            ))
                        }
                    }
                }
            }
            Route::ImagesGenerations => body.parse_image_generation()?,
            Route::ListModels | Route::GetModel(_) | Route::Forward(_) => {}
        }
        if body.stream && matches!(route, Route::Embeddings) {
            return Err(invalid("stream", "embeddings cannot be streamed"));
        }
        if body.stream && matches!(route, Route::ImagesGenerations) {
            return Err(invalid(
                "stream",
                "streamed image generation (partial images) is not supported by the gateway; send `stream: false`",
            ));
        }
        Ok(body)
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
    /// and heuristic token estimates.
    pub fn prompt_text(&self) -> String {
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

fn missing(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::MissingParameter, message.to_owned()).with_param(param)
}

fn invalid(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message.to_owned()).with_param(param)
}

#[cfg(test)]
mod tests;
