//! The OpenAI side of the `messages` array: roles, content (a string or parts), assistant
//! tool calls and tool results, read into borrowed structs; each adapter builds its own turns
//! from them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::invalid;
use super::json::{EmptyObject, JsonObject};
use crate::error::{truncate, ApiError};

/// One entry of `messages` (only the fields translated are read).
#[derive(Deserialize)]
pub(crate) struct Message<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function_call: Option<&'a RawValue>,
}

/// An assistant message's tool call, as sent.
#[derive(Deserialize)]
pub(crate) struct ToolCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: FunctionCall<'a>,
}

#[derive(Deserialize)]
struct FunctionCall<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// One OpenAI content part (only the fields translated are read).
#[derive(Deserialize)]
pub(crate) struct Part<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<ImageUrl<'a>>,
    #[serde(borrow, default)]
    cache_control: Option<&'a RawValue>,
}

impl<'a> Part<'a> {
    /// A message's `content` string, as a text part.
    fn text(text: Cow<'a, str>) -> Self {
        Self {
            kind: Cow::Borrowed("text"),
            text: Some(text),
            refusal: None,
            image_url: None,
            cache_control: None,
        }
    }
}

#[derive(Deserialize)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

/// Who speaks a turn (serialized as Anthropic and Converse write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// The user; tool results are given in user turns.
    User,
    Assistant,
}

/// A provider's side of the conversation: its blocks, and how content pieces, tool calls and
/// tool results become blocks.
pub(crate) trait Dialect<'a> {
    type Block;
    /// The provider's name in messages ("for this model (Anthropic)").
    const PROVIDER: &'static str;
    /// Appends the blocks of one piece of content.
    fn piece(&mut self, blocks: &mut Vec<Self::Block>, placed: Placed<'a>) -> Result<(), ApiError>;
    /// The block of an assistant tool call.
    fn tool_call(&mut self, call: CallIn<'a>) -> Result<Self::Block, ApiError>;
    /// The block of a tool result.
    fn tool_result(&mut self, result: ToolResult<'a>) -> Result<Self::Block, ApiError>;
    /// Whether a block is a tool result (they go first in their user turn).
    fn is_result(block: &Self::Block) -> bool;
}

/// A `tool` message: the `tool_call_id` it answers, its content, its position.
pub(crate) struct ToolResult<'a> {
    pub(crate) id: Cow<'a, str>,
    pub(crate) content: Option<&'a RawValue>,
    pub(crate) at: usize,
}

/// A conversation in a provider's dialect: the system and developer messages' blocks, in
/// order, and the turns.
pub(crate) type Conversation<B> = (Vec<B>, Vec<(Role, Vec<B>)>);

/// Splits the messages into the hoisted system blocks and the turns: consecutive turns of
/// one role merged (tool results join the user turn), empty ones left out, tool results
/// first in their turn.
pub(crate) fn conversation<'a, D: Dialect<'a>>(
    messages: Vec<Message<'a>>,
    dialect: &mut D,
) -> Result<Conversation<D::Block>, ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<(Role, Vec<D::Block>)> = Vec::new();
    for (at, message) in messages.into_iter().enumerate() {
        if message.function_call.is_some() {
            return Err(invalid(
                "messages",
                &format!(
                    "messages[{at}]: the legacy `function_call` is not supported; use `tool_calls`"
                ),
            ));
        }
        let (role, blocks) = match message.role.as_ref() {
            "system" | "developer" => {
                let content = content(message.content, at)?;
                system.extend(blocks(dialect, content, at, Allowed::Text)?);
                continue;
            }
            "user" => {
                let content = content(message.content, at)?;
                (Role::User, blocks(dialect, content, at, Allowed::User)?)
            }
            "assistant" => {
                let content = content(message.content, at)?;
                let mut blocks = blocks(dialect, content, at, Allowed::Assistant)?;
                for (i, call) in message.tool_calls.into_iter().flatten().enumerate() {
                    blocks.push(dialect.tool_call(tool_call(call, at, i)?)?);
                }
                (Role::Assistant, blocks)
            }
            "tool" => {
                let id = message.tool_call_id.ok_or_else(|| {
                    invalid(
                        "messages",
                        &format!("messages[{at}]: a `tool` message needs a `tool_call_id`"),
                    )
                })?;
                let result = ToolResult {
                    id,
                    content: message.content,
                    at,
                };
                (Role::User, vec![dialect.tool_result(result)?])
            }
            other => {
                return Err(invalid(
                    "messages",
                    &format!(
                        "messages[{at}]: role `{}` is not supported (use system, developer, \
                         user, assistant or tool)",
                        truncate(other, 32)
                    ),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    for (_, blocks) in turns.iter_mut().filter(|(role, _)| *role == Role::User) {
        blocks.sort_by_key(|block| !D::is_result(block));
    }
    Ok((system, turns))
}

/// The error for a conversation without user or assistant messages.
pub(crate) fn no_turns() -> ApiError {
    invalid(
        "messages",
        "`messages` must contain at least one user or assistant message",
    )
}

/// A message's `content`.
pub(crate) enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

/// Reads message `at`'s `content`: a string, an array of parts, or absent.
pub(crate) fn content(raw: Option<&RawValue>, at: usize) -> Result<Option<Content<'_>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let bad = |error: serde_json::Error| {
        invalid(
            "messages",
            &format!(
                "messages[{at}].content: {}",
                truncate(&error.to_string(), 200)
            ),
        )
    };
    if raw.get().starts_with('[') {
        Ok(Some(Content::Parts(
            serde_json::from_str(raw.get()).map_err(bad)?,
        )))
    } else {
        Ok(Some(Content::Text(
            serde_json::from_str(raw.get()).map_err(bad)?,
        )))
    }
}

/// Which content parts a role may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowed {
    Text,
    User,
    Assistant,
}

/// Where a content part is: `messages[m].content[p]`.
#[derive(Clone, Copy)]
pub(crate) struct PartAt {
    message: usize,
    part: usize,
}

impl fmt::Display for PartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "messages[{}].content[{}]", self.message, self.part)
    }
}

impl PartAt {
    /// `400 invalid_parameter` on `messages`: "messages[m].content[p]: {why}".
    pub(crate) fn error(self, why: &str) -> ApiError {
        invalid("messages", &format!("{self}: {why}"))
    }
}

/// One non-empty piece of a message's content.
pub(crate) enum Piece<'a> {
    Text(Cow<'a, str>),
    /// An `image_url` part's URL.
    Image(Cow<'a, str>),
}

/// A piece, the part's `cache_control` mark (an extension some clients send) and where it is.
pub(crate) struct Placed<'a> {
    pub(crate) piece: Piece<'a>,
    pub(crate) cache_control: Option<&'a RawValue>,
    pub(crate) at: PartAt,
}

/// A message's content as a provider's blocks: the dialect appends the blocks of each
/// non-empty text (assistant `refusal` parts are text) or image, in order. Parts of other
/// types, or not `allowed` for the role, are refused naming the provider.
pub(crate) fn blocks<'a, D: Dialect<'a>>(
    dialect: &mut D,
    content: Option<Content<'a>>,
    at: usize,
    allowed: Allowed,
) -> Result<Vec<D::Block>, ApiError> {
    let mut blocks = Vec::new();
    let parts = match content {
        None => return Ok(blocks),
        Some(Content::Text(text)) => vec![Part::text(text)],
        Some(Content::Parts(parts)) => parts,
    };
    blocks.reserve(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let place = PartAt {
            message: at,
            part: i,
        };
        let no_text = || place.error("the part has no text");
        let piece = match (part.kind.as_ref(), allowed) {
            ("text", _) => Piece::Text(part.text.ok_or_else(no_text)?),
            ("refusal", Allowed::Assistant) => Piece::Text(part.refusal.ok_or_else(no_text)?),
            ("image_url", Allowed::User) => match part.image_url {
                Some(image) => Piece::Image(image.url),
                None => return Err(place.error("`image_url.url` is required")),
            },
            (kind, _) => {
                return Err(place.error(&format!(
                    "content parts of type `{}` are not supported here for this model ({})",
                    truncate(kind, 32),
                    D::PROVIDER
                )))
            }
        };
        if matches!(&piece, Piece::Text(text) if text.is_empty()) {
            continue;
        }
        let cache_control = part.cache_control;
        let placed = Placed {
            piece,
            cache_control,
            at: place,
        };
        dialect.piece(&mut blocks, placed)?;
    }
    Ok(blocks)
}

/// A base64 `data:` URL's media type (lowercased) and data.
pub(crate) struct DataUrl<'a> {
    pub(crate) media_type: String,
    pub(crate) data: Cow<'a, str>,
}

/// Splits a base64 `data:` URL; `Err` is why it is not one (`not_data` when it does not start
/// with `data:`).
pub(crate) fn data_url<'a>(
    url: Cow<'a, str>,
    not_data: &'static str,
) -> Result<DataUrl<'a>, &'static str> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(not_data);
    };
    let Some((header, data)) = rest.split_once(',') else {
        return Err("the `data:` URL has no data");
    };
    let Some(media_type) = header.strip_suffix(";base64") else {
        return Err("the `data:` URL must be base64-encoded");
    };
    let media_type = media_type.to_ascii_lowercase();
    let start = url.len() - data.len();
    let data = match url {
        Cow::Borrowed(text) => Cow::Borrowed(&text[start..]),
        Cow::Owned(text) => Cow::Owned(text[start..].to_owned()),
    };
    Ok(DataUrl { media_type, data })
}

/// The format of a JPEG, PNG, GIF or WebP media type (`jpeg`, `png`, `gif`, `webp`); `Err`
/// says the type is not one of them.
pub(crate) fn web_image_format(media_type: &str) -> Result<&'static str, String> {
    match media_type {
        "image/jpeg" => Ok("jpeg"),
        "image/png" => Ok("png"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(format!(
            "image type `{}` is not supported (use JPEG, PNG, GIF or WebP)",
            truncate(other, 40)
        )),
    }
}

/// An assistant tool call: its id, function name and arguments.
pub(crate) struct CallIn<'a> {
    pub(crate) id: Cow<'a, str>,
    pub(crate) name: Cow<'a, str>,
    /// A JSON object (`""` counts as `{}`).
    pub(crate) arguments: JsonObject<'a>,
}

/// Reads tool call `i` of message `at`: a `function` call whose `arguments` are a JSON object
/// encoded as a string.
pub(crate) fn tool_call<'a>(
    call: ToolCall<'a>,
    at: usize,
    i: usize,
) -> Result<CallIn<'a>, ApiError> {
    let where_ = format!("messages[{at}].tool_calls[{i}]");
    if call.kind.as_deref().is_some_and(|kind| kind != "function") {
        return Err(invalid(
            "messages",
            &format!("{where_}: only `function` tool calls are supported"),
        ));
    }
    let arguments = call.function.arguments.unwrap_or_default();
    let arguments = if arguments.trim().is_empty() {
        JsonObject::Empty(EmptyObject {})
    } else {
        match serde_json::from_str::<Box<RawValue>>(&arguments) {
            Ok(raw) if raw.get().starts_with('{') => JsonObject::Raw(raw),
            _ => {
                return Err(invalid(
                    "messages",
                    &format!(
                        "{where_}.function.arguments must be a JSON object encoded as a string"
                    ),
                ))
            }
        }
    };
    Ok(CallIn {
        id: call.id,
        name: call.function.name,
        arguments,
    })
}
