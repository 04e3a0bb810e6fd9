//! The `messages` array in Converse's terms: system hoisting, alternating turns starting with
//! a user turn, content parts, tool calls and tool results (the conversation is walked by
//! `crate::providers::chat::messages`).

use std::borrow::Cow;

use super::wire::{
    self as wire, Block, CachePoint, Image, ImageSource, ResultBlock, Role, ToolUse, Turn,
};
use super::PROVIDER;
use crate::error::ApiError;
use crate::providers::chat::invalid;
use crate::providers::chat::json::{EmptyObject, JsonObject};
use crate::providers::chat::messages::{
    self, blocks, content, data_url, web_image_format, Allowed, CallIn, Content, Dialect, Message,
    PartAt, Piece, Placed, ToolResult,
};

/// The conversation: system blocks, alternating turns, and whether any turn holds a tool
/// call or result (Converse then requires `toolConfig`).
pub(super) struct Conversation<'a> {
    pub(super) system: Vec<Block<'a>>,
    pub(super) turns: Vec<Turn<'a>>,
    pub(super) has_tool_blocks: bool,
}

/// Splits the messages into the hoisted system blocks and alternating turns.
pub(super) fn conversation<'a>(messages: Vec<Message<'a>>) -> Result<Conversation<'a>, ApiError> {
    let mut converse = Converse {
        has_tool_blocks: false,
    };
    let (system, turns) = messages::conversation(messages, &mut converse)?;
    if turns.first().is_some_and(|(role, _)| *role != Role::User) {
        return Err(invalid(
            "messages",
            "the conversation must start with a user message for this model (Bedrock)",
        ));
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| Turn { role, content })
        .collect();
    Ok(Conversation {
        system,
        turns,
        has_tool_blocks: converse.has_tool_blocks,
    })
}

struct Converse {
    has_tool_blocks: bool,
}

impl<'a> Dialect<'a> for Converse {
    type Block = Block<'a>;
    const PROVIDER: &'static str = PROVIDER;

    /// A `cache_control` mark on a part becomes a cache point after it.
    fn piece(&mut self, blocks: &mut Vec<Block<'a>>, placed: Placed<'a>) -> Result<(), ApiError> {
        blocks.push(match placed.piece {
            Piece::Text(text) => Block::Text(text),
            Piece::Image(url) => Block::Image(image(url, placed.at)?),
        });
        if placed.cache_control.is_some() {
            blocks.push(Block::CachePoint(CachePoint { kind: "default" }));
        }
        Ok(())
    }

    fn tool_call(&mut self, call: CallIn<'a>) -> Result<Block<'a>, ApiError> {
        self.has_tool_blocks = true;
        Ok(Block::ToolUse(ToolUse {
            tool_use_id: call.id,
            name: call.name,
            input: call.arguments,
        }))
    }

    fn tool_result(&mut self, result: ToolResult<'a>) -> Result<Block<'a>, ApiError> {
        self.has_tool_blocks = true;
        let at = result.at;
        let mut content = match content(result.content, at)? {
            Some(Content::Text(text)) if !text.is_empty() => vec![ResultBlock::Text(text)],
            Some(Content::Text(_)) | None => Vec::new(),
            parts => blocks(self, parts, at, Allowed::Text)?
                .into_iter()
                .filter_map(|block| match block {
                    Block::Text(text) => Some(ResultBlock::Text(text)),
                    _ => None,
                })
                .collect(),
        };
        // Converse wants at least one content block in a tool result.
        if content.is_empty() {
            content.push(ResultBlock::Json(JsonObject::Empty(EmptyObject {})));
        }
        Ok(Block::ToolResult(wire::ToolResult {
            tool_use_id: result.id,
            content,
        }))
    }

    fn is_result(block: &Block<'a>) -> bool {
        matches!(block, Block::ToolResult(_))
    }
}

/// A base64 `data:` URL becomes an image block; URLs are refused (Bedrock takes bytes only
/// and the gateway does not fetch URLs).
fn image(url: Cow<'_, str>, at: PartAt) -> Result<Image<'_>, ApiError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Err(at.error(
            "image URLs are not supported for this model (Bedrock takes image bytes and the \
             gateway does not fetch URLs); send the image as a base64 `data:` URL",
        ));
    }
    let image = data_url(url, "`image_url.url` must be a base64 `data:` URL")
        .map_err(|why| at.error(why))?;
    let format = match image.media_type.as_str() {
        "image/jpg" => "jpeg",
        other => web_image_format(other).map_err(|why| at.error(&why))?,
    };
    Ok(Image {
        format,
        source: ImageSource { bytes: image.data },
    })
}
