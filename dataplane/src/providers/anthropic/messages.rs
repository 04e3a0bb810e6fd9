//! The `messages` array in Anthropic's terms: system hoisting, alternating turns, content
//! parts, tool calls and tool results (the conversation is walked by
//! `crate::providers::chat::messages`).

use std::borrow::Cow;

use super::wire::{Block, ImageSource, ToolResultContent, Turn};
use super::PROVIDER;
use crate::error::ApiError;
use crate::providers::chat::messages::{
    self, blocks, content, data_url, web_image_format, Allowed, CallIn, Content, Dialect, Message,
    PartAt, Piece, Placed, ToolResult,
};

/// Splits the messages into the hoisted system blocks and alternating turns.
pub(super) fn conversation<'a>(
    messages: Vec<Message<'a>>,
) -> Result<(Vec<Block<'a>>, Vec<Turn<'a>>), ApiError> {
    let (system, turns) = messages::conversation(messages, &mut Anthropic)?;
    let turns = turns
        .into_iter()
        .map(|(role, content)| Turn { role, content })
        .collect();
    Ok((system, turns))
}

struct Anthropic;

impl<'a> Dialect<'a> for Anthropic {
    type Block = Block<'a>;
    const PROVIDER: &'static str = PROVIDER;

    fn piece(&mut self, blocks: &mut Vec<Block<'a>>, placed: Placed<'a>) -> Result<(), ApiError> {
        let Placed {
            piece,
            cache_control,
            at,
        } = placed;
        blocks.push(match piece {
            Piece::Text(text) => Block::Text {
                text,
                cache_control,
            },
            Piece::Image(url) => Block::Image {
                source: image_source(url, at)?,
                cache_control,
            },
        });
        Ok(())
    }

    fn tool_call(&mut self, call: CallIn<'a>) -> Result<Block<'a>, ApiError> {
        Ok(Block::ToolUse {
            id: call.id,
            name: call.name,
            input: call.arguments,
        })
    }

    fn tool_result(&mut self, result: ToolResult<'a>) -> Result<Block<'a>, ApiError> {
        let at = result.at;
        let content = match content(result.content, at)? {
            Some(Content::Text(text)) if text.is_empty() => None,
            Some(Content::Text(text)) => Some(ToolResultContent::Text(text)),
            parts => {
                let blocks = blocks(self, parts, at, Allowed::Text)?;
                (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
            }
        };
        Ok(Block::ToolResult {
            tool_use_id: result.id,
            content,
        })
    }

    fn is_result(block: &Block<'a>) -> bool {
        matches!(block, Block::ToolResult { .. })
    }
}

/// A `data:` URL becomes a base64 source, an `http(s)` URL a URL source.
fn image_source(url: Cow<'_, str>, at: PartAt) -> Result<ImageSource<'_>, ApiError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url { url });
    }
    let image = data_url(
        url,
        "`image_url.url` must be an http(s) URL or a base64 `data:` URL",
    )
    .map_err(|why| at.error(why))?;
    web_image_format(&image.media_type).map_err(|why| at.error(&why))?;
    Ok(ImageSource::Base64 {
        media_type: Cow::Owned(image.media_type),
        data: image.data,
    })
}
