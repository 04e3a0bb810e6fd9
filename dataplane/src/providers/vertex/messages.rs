//! The `messages` array → `systemInstruction` and `contents`: roles, content parts, tool
//! calls (with their thought signatures) and tool results (the conversation is walked by
//! `crate::providers::chat::messages`).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::Value;

use super::ids;
use super::wire::{
    Content as Turn, FileData, FunctionCall, FunctionResponse, InlineData, Part, SystemInstruction,
};
use super::PROVIDER;
use crate::error::{truncate, ApiError};
use crate::providers::chat::invalid;
use crate::providers::chat::messages::{
    self, content, data_url, CallIn, Content, Dialect, Message, PartAt, Piece, Placed, Role,
    ToolResult,
};

type Conversation<'a> = (Option<SystemInstruction<'a>>, Vec<Turn<'a>>);

/// Splits the messages into the system instruction and the turns (consecutive turns of one
/// role merged; tool results become `functionResponse` parts of a user turn, named through
/// the tool calls before them).
pub(super) fn conversation(messages: Vec<Message<'_>>) -> Result<Conversation<'_>, ApiError> {
    let mut gemini = Gemini {
        names: HashMap::new(),
    };
    let (system, contents) = messages::conversation(messages, &mut gemini)?;
    let contents = contents
        .into_iter()
        .map(|(role, parts)| Turn {
            role: match role {
                Role::User => "user",
                Role::Assistant => "model",
            },
            parts,
        })
        .collect();
    let system = (!system.is_empty()).then_some(SystemInstruction { parts: system });
    Ok((system, contents))
}

struct Gemini {
    /// The function name of each tool call id seen so far.
    names: HashMap<String, String>,
}

impl<'a> Dialect<'a> for Gemini {
    type Block = Part<'a>;
    const PROVIDER: &'static str = PROVIDER;

    fn piece(&mut self, parts: &mut Vec<Part<'a>>, placed: Placed<'a>) -> Result<(), ApiError> {
        parts.push(match placed.piece {
            Piece::Text(text) => Part::text(text),
            Piece::Image(url) => image(url, placed.at)?,
        });
        Ok(())
    }

    /// A `functionCall` part, with the thought signature carried in the id put back.
    fn tool_call(&mut self, call: CallIn<'a>) -> Result<Part<'a>, ApiError> {
        self.names
            .insert(call.id.to_string(), call.name.to_string());
        Ok(Part {
            thought_signature: ids::signature(&call.id),
            function_call: Some(FunctionCall {
                name: call.name,
                args: call.arguments,
            }),
            ..Part::default()
        })
    }

    fn tool_result(&mut self, result: ToolResult<'a>) -> Result<Part<'a>, ApiError> {
        let ToolResult { id, content, at } = result;
        let name = self.names.get(id.as_ref()).cloned().ok_or_else(|| {
            invalid(
                "messages",
                &format!(
                    "messages[{at}]: `tool_call_id` `{}` answers no tool call of an earlier assistant message",
                    truncate(&id, 64)
                ),
            )
        })?;
        Ok(Part {
            function_response: Some(FunctionResponse {
                name: Cow::Owned(name),
                response: tool_response(content, at)?,
            }),
            ..Part::default()
        })
    }

    fn is_result(part: &Part<'a>) -> bool {
        part.function_response.is_some()
    }
}

/// A tool message's content → `functionResponse.response` (an object: a JSON object result as
/// is, anything else wrapped as `{"result": …}`).
fn tool_response(raw: Option<&RawValue>, at: usize) -> Result<Value, ApiError> {
    let text = match content(raw, at)? {
        None => String::new(),
        Some(Content::Text(text)) => text.into_owned(),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (i, part) in parts.into_iter().enumerate() {
                match (part.kind.as_ref(), part.text) {
                    ("text", Some(piece)) => text.push_str(&piece),
                    _ => {
                        return Err(invalid(
                            "messages",
                            &format!(
                            "messages[{at}].content[{i}]: a tool result may only hold text parts"
                        ),
                        ))
                    }
                }
            }
            text
        }
    };
    Ok(match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        Ok(Value::String(_)) | Err(_) => serde_json::json!({ "result": text }),
        Ok(other) => serde_json::json!({ "result": other }),
    })
}

/// A `data:` URL becomes `inlineData`; a `gs://` or `http(s)` URL `fileData` with a MIME type
/// guessed from its extension.
fn image(url: Cow<'_, str>, at: PartAt) -> Result<Part<'_>, ApiError> {
    if url.starts_with("gs://") || url.starts_with("https://") || url.starts_with("http://") {
        let mime_type = mime_from_extension(&url).ok_or_else(|| {
            at.error("cannot tell the image type from the URL's extension (use .png, .jpg, .jpeg, .webp, .gif, .heic or .heif, or send a base64 `data:` URL)")
        })?;
        return Ok(Part {
            file_data: Some(FileData {
                mime_type,
                file_uri: url,
            }),
            ..Part::default()
        });
    }
    let image = data_url(
        url,
        "`image_url.url` must be a gs:// or http(s) URL, or a base64 `data:` URL",
    )
    .map_err(|why| at.error(why))?;
    if !image.media_type.starts_with("image/") {
        return Err(at.error(&format!(
            "`{}` is not an image type",
            truncate(&image.media_type, 40)
        )));
    }
    Ok(Part {
        inline_data: Some(InlineData {
            mime_type: image.media_type,
            data: image.data,
        }),
        ..Part::default()
    })
}

/// The image MIME type of a URL's path extension (query and fragment ignored).
fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = file.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_types_come_from_extensions() {
        assert_eq!(mime_from_extension("gs://b/cat.PNG"), Some("image/png"));
        assert_eq!(
            mime_from_extension("https://x.test/a/b.jpeg?sig=1.gif"),
            Some("image/jpeg")
        );
        assert_eq!(mime_from_extension("https://x.test/a/b"), None);
        assert_eq!(mime_from_extension("https://x.test/a.b/c"), None);
        assert_eq!(mime_from_extension("gs://b/doc.pdf"), None);
    }
}
