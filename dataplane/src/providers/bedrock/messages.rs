//! The `messages` array: system hoisting, alternating turns starting with a user turn,
//! content parts, tool calls and tool results.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::request::invalid;
use super::wire::{
    Block, CachePoint, EmptyObject, Image, ImageSource, Json, ResultBlock, Role, ToolResult,
    ToolUse, Turn,
};
use crate::error::{truncate, ApiError};

#[derive(Deserialize)]
pub(super) struct Message<'a> {
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

#[derive(Deserialize)]
struct ToolCall<'a> {
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
struct Part<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<ImageUrl<'a>>,
    #[serde(borrow, default)]
    cache_control: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

/// The conversation: system blocks, alternating turns, and whether any turn holds a tool
/// call or result (Converse then requires `toolConfig`).
pub(super) struct Conversation<'a> {
    pub(super) system: Vec<Block<'a>>,
    pub(super) turns: Vec<Turn<'a>>,
    pub(super) has_tool_blocks: bool,
}

/// Splits the messages into the hoisted system blocks and alternating turns.
pub(super) fn conversation<'a>(messages: Vec<Message<'a>>) -> Result<Conversation<'a>, ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    let mut has_tool_blocks = false;
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
                system.extend(blocks(message.content, at, Allowed::Text)?);
                continue;
            }
            "user" => (Role::User, blocks(message.content, at, Allowed::User)?),
            "assistant" => {
                let mut blocks = blocks(message.content, at, Allowed::Assistant)?;
                for (i, call) in message.tool_calls.into_iter().flatten().enumerate() {
                    blocks.push(tool_use(call, at, i)?);
                    has_tool_blocks = true;
                }
                (Role::Assistant, blocks)
            }
            "tool" => {
                let tool_use_id = message.tool_call_id.ok_or_else(|| {
                    invalid(
                        "messages",
                        &format!("messages[{at}]: a `tool` message needs a `tool_call_id`"),
                    )
                })?;
                has_tool_blocks = true;
                let content = match text_content(message.content, at)? {
                    Some(Content::Text(text)) if !text.is_empty() => {
                        vec![ResultBlock::Text(text)]
                    }
                    Some(Content::Text(_)) | None => Vec::new(),
                    parts => content_blocks(parts, at, Allowed::Text)?
                        .into_iter()
                        .filter_map(|block| match block {
                            Block::Text(text) => Some(ResultBlock::Text(text)),
                            _ => None,
                        })
                        .collect(),
                };
                // Converse wants at least one content block in a tool result.
                let content = if content.is_empty() {
                    vec![ResultBlock::Json(Json::Empty(EmptyObject {}))]
                } else {
                    content
                };
                let result = Block::ToolResult(ToolResult {
                    tool_use_id,
                    content,
                });
                (Role::User, vec![result])
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
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    // A user turn's tool results go before anything else in it.
    for turn in turns.iter_mut().filter(|turn| turn.role == Role::User) {
        turn.content
            .sort_by_key(|block| !matches!(block, Block::ToolResult(_)));
    }
    if turns.first().is_some_and(|turn| turn.role != Role::User) {
        return Err(invalid(
            "messages",
            "the conversation must start with a user message for this model (Bedrock)",
        ));
    }
    Ok(Conversation {
        system,
        turns,
        has_tool_blocks,
    })
}

/// Which content parts a role may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Text,
    User,
    Assistant,
}

enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

/// A message's `content`: a string, an array of parts, or absent/null.
fn text_content<'a>(raw: Option<&'a RawValue>, at: usize) -> Result<Option<Content<'a>>, ApiError> {
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
    match raw.get().as_bytes().first() {
        Some(b'[') => Ok(Some(Content::Parts(
            serde_json::from_str(raw.get()).map_err(bad)?,
        ))),
        Some(b'n') => Ok(None),
        _ => Ok(Some(Content::Text(
            serde_json::from_str(raw.get()).map_err(bad)?,
        ))),
    }
}

/// The Converse blocks of a message's content (empty text is left out).
fn blocks<'a>(
    raw: Option<&'a RawValue>,
    at: usize,
    allowed: Allowed,
) -> Result<Vec<Block<'a>>, ApiError> {
    content_blocks(text_content(raw, at)?, at, allowed)
}

fn content_blocks<'a>(
    content: Option<Content<'a>>,
    at: usize,
    allowed: Allowed,
) -> Result<Vec<Block<'a>>, ApiError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Content::Text(text)) if text.is_empty() => return Ok(Vec::new()),
        Some(Content::Text(text)) => return Ok(vec![Block::Text(text)]),
        Some(Content::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let where_ = || format!("messages[{at}].content[{i}]");
        let text = match (part.kind.as_ref(), allowed) {
            ("text", _) => part.text,
            ("refusal", Allowed::Assistant) => part.refusal,
            ("image_url", Allowed::User) => {
                let url = part.image_url.ok_or_else(|| {
                    invalid(
                        "messages",
                        &format!("{}: `image_url.url` is required", where_()),
                    )
                })?;
                blocks.push(Block::Image(image(url.url, &where_)?));
                if part.cache_control.is_some() {
                    blocks.push(cache_point());
                }
                continue;
            }
            (kind, _) => {
                return Err(invalid(
                    "messages",
                    &format!(
                        "{}: content parts of type `{}` are not supported here for this model \
                         (Bedrock)",
                        where_(),
                        truncate(kind, 32)
                    ),
                ))
            }
        };
        let text = text
            .ok_or_else(|| invalid("messages", &format!("{}: the part has no text", where_())))?;
        if !text.is_empty() {
            blocks.push(Block::Text(text));
            if part.cache_control.is_some() {
                blocks.push(cache_point());
            }
        }
    }
    Ok(blocks)
}

/// A `cache_control` mark on a part becomes a Converse cache point after it.
fn cache_point<'a>() -> Block<'a> {
    Block::CachePoint(CachePoint { kind: "default" })
}

/// A base64 `data:` URL becomes an image block; URLs are refused (Bedrock takes bytes only
/// and the gateway does not fetch URLs).
fn image<'a>(url: Cow<'a, str>, where_: &dyn Fn() -> String) -> Result<Image<'a>, ApiError> {
    let bad = |why: &str| invalid("messages", &format!("{}: {why}", where_()));
    if url.starts_with("https://") || url.starts_with("http://") {
        return Err(bad(
            "image URLs are not supported for this model (Bedrock takes image bytes and the \
             gateway does not fetch URLs); send the image as a base64 `data:` URL",
        ));
    }
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(bad("`image_url.url` must be a base64 `data:` URL"));
    };
    let (header, data_len) = match rest.split_once(',') {
        Some((header, data)) => (header, data.len()),
        None => return Err(bad("the `data:` URL has no data")),
    };
    let Some(media_type) = header.strip_suffix(";base64") else {
        return Err(bad("the `data:` URL must be base64-encoded"));
    };
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(bad(&format!(
                "image type `{}` is not supported (use JPEG, PNG, GIF or WebP)",
                truncate(other, 40)
            )))
        }
    };
    let start = url.len() - data_len;
    let bytes = match url {
        Cow::Borrowed(text) => Cow::Borrowed(&text[start..]),
        Cow::Owned(text) => Cow::Owned(text[start..].to_owned()),
    };
    Ok(Image {
        format,
        source: ImageSource { bytes },
    })
}

/// An assistant tool call becomes a `toolUse` block with its arguments parsed.
fn tool_use<'a>(call: ToolCall<'a>, at: usize, i: usize) -> Result<Block<'a>, ApiError> {
    let where_ = format!("messages[{at}].tool_calls[{i}]");
    if call.kind.as_deref().is_some_and(|kind| kind != "function") {
        return Err(invalid(
            "messages",
            &format!("{where_}: only `function` tool calls are supported"),
        ));
    }
    let arguments = call.function.arguments.unwrap_or_default();
    let input = if arguments.trim().is_empty() {
        Json::Empty(EmptyObject {})
    } else {
        match serde_json::from_str::<Box<RawValue>>(&arguments) {
            Ok(raw) if raw.get().starts_with('{') => Json::Raw(raw),
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
    Ok(Block::ToolUse(ToolUse {
        tool_use_id: call.id,
        name: call.function.name,
        input,
    }))
}
