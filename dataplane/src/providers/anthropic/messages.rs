//! The `messages` array: system hoisting, alternating turns, content parts, tool calls and
//! tool results.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::request::invalid;
use super::wire::{Block, EmptyObject, ImageSource, Input, Role, ToolResultContent, Turn};
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

/// Splits the messages into the hoisted system blocks and alternating turns.
pub(super) fn conversation<'a>(
    messages: Vec<Message<'a>>,
) -> Result<(Vec<Block<'a>>, Vec<Turn<'a>>), ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
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
                let content = match text_content(message.content, at)? {
                    Some(Content::Text(text)) if text.is_empty() => None,
                    Some(Content::Text(text)) => Some(ToolResultContent::Text(text)),
                    parts => {
                        let blocks = content_blocks(parts, at, Allowed::Text)?;
                        (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
                    }
                };
                let result = Block::ToolResult {
                    tool_use_id,
                    content,
                };
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
    // Anthropic wants a user turn's tool results before anything else in it.
    for turn in turns.iter_mut().filter(|turn| turn.role == Role::User) {
        turn.content
            .sort_by_key(|block| !matches!(block, Block::ToolResult { .. }));
    }
    Ok((system, turns))
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

/// The Anthropic blocks of a message's content (empty text is left out).
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
        Some(Content::Text(text)) => {
            return Ok(vec![Block::Text {
                text,
                cache_control: None,
            }])
        }
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
                blocks.push(Block::Image {
                    source: image_source(url.url, &where_)?,
                    cache_control: part.cache_control,
                });
                continue;
            }
            (kind, _) => {
                return Err(invalid(
                    "messages",
                    &format!(
                        "{}: content parts of type `{}` are not supported here for this model \
                         (Anthropic)",
                        where_(),
                        truncate(kind, 32)
                    ),
                ))
            }
        };
        let text = text
            .ok_or_else(|| invalid("messages", &format!("{}: the part has no text", where_())))?;
        if !text.is_empty() {
            blocks.push(Block::Text {
                text,
                cache_control: part.cache_control,
            });
        }
    }
    Ok(blocks)
}

/// A `data:` URL becomes a base64 source, an `http(s)` URL a URL source.
fn image_source<'a>(
    url: Cow<'a, str>,
    where_: &dyn Fn() -> String,
) -> Result<ImageSource<'a>, ApiError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url { url });
    }
    let bad = |why: &str| invalid("messages", &format!("{}: {why}", where_()));
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(bad(
            "`image_url.url` must be an http(s) URL or a base64 `data:` URL",
        ));
    };
    let (header, data_len) = match rest.split_once(',') {
        Some((header, data)) => (header, data.len()),
        None => return Err(bad("the `data:` URL has no data")),
    };
    let Some(media_type) = header.strip_suffix(";base64") else {
        return Err(bad("the `data:` URL must be base64-encoded"));
    };
    let media_type = media_type.to_ascii_lowercase();
    if !matches!(
        media_type.as_str(),
        "image/jpeg" | "image/png" | "image/gif" | "image/webp"
    ) {
        return Err(bad(&format!(
            "image type `{}` is not supported (use JPEG, PNG, GIF or WebP)",
            truncate(&media_type, 40)
        )));
    }
    let start = url.len() - data_len;
    let data = match url {
        Cow::Borrowed(text) => Cow::Borrowed(&text[start..]),
        Cow::Owned(text) => Cow::Owned(text[start..].to_owned()),
    };
    Ok(ImageSource::Base64 {
        media_type: Cow::Owned(media_type),
        data,
    })
}

/// An assistant tool call becomes a `tool_use` block with its arguments parsed.
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
        Input::Empty(EmptyObject {})
    } else {
        match serde_json::from_str::<Box<RawValue>>(&arguments) {
            Ok(raw) if raw.get().starts_with('{') => Input::Raw(raw),
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
    Ok(Block::ToolUse {
        id: call.id,
        name: call.function.name,
        input,
    })
}
