//! The `messages` array → `systemInstruction` and `contents`: roles, content parts, tool
//! calls (with their thought signatures) and tool results.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::ids;
use super::request::invalid;
use super::wire::{
    Args, Content, EmptyObject, FileData, FunctionCall, FunctionResponse, InlineData, Part,
    SystemInstruction,
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
    function: FunctionCallIn<'a>,
}

#[derive(Deserialize)]
struct FunctionCallIn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// One OpenAI content part (only the fields translated are read).
#[derive(Deserialize)]
struct PartIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<ImageUrl<'a>>,
}

#[derive(Deserialize)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

type Conversation<'a> = (Option<SystemInstruction<'a>>, Vec<Content<'a>>);

/// Splits the messages into the system instruction and the turns (consecutive turns of one
/// role merged; tool results become `functionResponse` parts of a user turn, named through
/// the tool calls before them).
pub(super) fn conversation(messages: Vec<Message<'_>>) -> Result<Conversation<'_>, ApiError> {
    let mut system: Vec<Part<'_>> = Vec::new();
    let mut contents: Vec<Content<'_>> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (at, message) in messages.into_iter().enumerate() {
        if message.function_call.is_some_and(|raw| raw.get() != "null") {
            return Err(invalid(
                "messages",
                &format!(
                    "messages[{at}]: the legacy `function_call` is not supported; use `tool_calls`"
                ),
            ));
        }
        let (role, parts) = match message.role.as_ref() {
            "system" | "developer" => {
                system.extend(parts(message.content, at, Allowed::Text)?);
                continue;
            }
            "user" => ("user", parts(message.content, at, Allowed::User)?),
            "assistant" => {
                let mut parts = parts(message.content, at, Allowed::Assistant)?;
                for (i, call) in message.tool_calls.into_iter().flatten().enumerate() {
                    names.insert(call.id.to_string(), call.function.name.to_string());
                    parts.push(function_call(call, at, i)?);
                }
                ("model", parts)
            }
            "tool" => {
                let id = message.tool_call_id.ok_or_else(|| {
                    invalid(
                        "messages",
                        &format!("messages[{at}]: a `tool` message needs a `tool_call_id`"),
                    )
                })?;
                let name = names.get(id.as_ref()).cloned().ok_or_else(|| {
                    invalid(
                        "messages",
                        &format!(
                            "messages[{at}]: `tool_call_id` `{}` answers no tool call of an earlier assistant message",
                            truncate(&id, 64)
                        ),
                    )
                })?;
                let response = tool_result(message.content, at)?;
                let part = Part {
                    function_response: Some(FunctionResponse {
                        name: Cow::Owned(name),
                        response,
                    }),
                    ..Part::default()
                };
                ("user", vec![part])
            }
            other => {
                return Err(invalid(
                    "messages",
                    &format!(
                        "messages[{at}]: role `{}` is not supported (use system, developer, user, assistant or tool)",
                        truncate(other, 32)
                    ),
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => contents.push(Content { role, parts }),
        }
    }
    // A user turn answering function calls lists the responses first.
    for content in contents.iter_mut().filter(|c| c.role == "user") {
        content
            .parts
            .sort_by_key(|part| part.function_response.is_none());
    }
    let system = (!system.is_empty()).then_some(SystemInstruction { parts: system });
    Ok((system, contents))
}

/// A tool message's content → `functionResponse.response` (an object: a JSON object result as
/// is, anything else wrapped as `{"result": …}`).
fn tool_result(raw: Option<&RawValue>, at: usize) -> Result<Value, ApiError> {
    let text = match text_content(raw, at)? {
        None => String::new(),
        Some(MessageContent::Text(text)) => text.into_owned(),
        Some(MessageContent::Parts(parts)) => {
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

/// Which content parts a role may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Text,
    User,
    Assistant,
}

enum MessageContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<PartIn<'a>>),
}

fn text_content<'a>(
    raw: Option<&'a RawValue>,
    at: usize,
) -> Result<Option<MessageContent<'a>>, ApiError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok(None);
    };
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
        Ok(Some(MessageContent::Parts(
            serde_json::from_str(raw.get()).map_err(bad)?,
        )))
    } else {
        Ok(Some(MessageContent::Text(
            serde_json::from_str(raw.get()).map_err(bad)?,
        )))
    }
}

fn parts<'a>(
    raw: Option<&'a RawValue>,
    at: usize,
    allowed: Allowed,
) -> Result<Vec<Part<'a>>, ApiError> {
    let parts = match text_content(raw, at)? {
        None => return Ok(Vec::new()),
        Some(MessageContent::Text(text)) if text.is_empty() => return Ok(Vec::new()),
        Some(MessageContent::Text(text)) => return Ok(vec![Part::text(text)]),
        Some(MessageContent::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
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
                out.push(image(url.url, &where_)?);
                continue;
            }
            (kind, _) => {
                return Err(invalid(
                    "messages",
                    &format!(
                    "{}: content parts of type `{}` are not supported here for this model (Gemini)",
                    where_(),
                    truncate(kind, 32)
                ),
                ))
            }
        };
        let text = text
            .ok_or_else(|| invalid("messages", &format!("{}: the part has no text", where_())))?;
        if !text.is_empty() {
            out.push(Part::text(text));
        }
    }
    Ok(out)
}

/// A `data:` URL becomes `inlineData`; a `gs://` or `http(s)` URL `fileData` with a MIME type
/// guessed from its extension.
fn image<'a>(url: Cow<'a, str>, where_: &dyn Fn() -> String) -> Result<Part<'a>, ApiError> {
    let bad = |why: &str| invalid("messages", &format!("{}: {why}", where_()));
    if url.starts_with("gs://") || url.starts_with("https://") || url.starts_with("http://") {
        let mime_type = mime_from_extension(&url).ok_or_else(|| {
            bad("cannot tell the image type from the URL's extension (use .png, .jpg, .jpeg, .webp, .gif, .heic or .heif, or send a base64 `data:` URL)")
        })?;
        return Ok(Part {
            file_data: Some(FileData {
                mime_type,
                file_uri: url,
            }),
            ..Part::default()
        });
    }
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(bad(
            "`image_url.url` must be a gs:// or http(s) URL, or a base64 `data:` URL",
        ));
    };
    let Some((header, data)) = rest.split_once(',') else {
        return Err(bad("the `data:` URL has no data"));
    };
    let Some(mime_type) = header.strip_suffix(";base64") else {
        return Err(bad("the `data:` URL must be base64-encoded"));
    };
    let mime_type = mime_type.to_ascii_lowercase();
    if !mime_type.starts_with("image/") {
        return Err(bad(&format!(
            "`{}` is not an image type",
            truncate(&mime_type, 40)
        )));
    }
    let start = url.len() - data.len();
    let data = match url {
        Cow::Borrowed(text) => Cow::Borrowed(&text[start..]),
        Cow::Owned(text) => Cow::Owned(text[start..].to_owned()),
    };
    Ok(Part {
        inline_data: Some(InlineData { mime_type, data }),
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

/// An assistant tool call → a `functionCall` part with its arguments parsed and its thought
/// signature (carried in the id) restored.
fn function_call<'a>(call: ToolCall<'a>, at: usize, i: usize) -> Result<Part<'a>, ApiError> {
    let where_ = format!("messages[{at}].tool_calls[{i}]");
    if call.kind.as_deref().is_some_and(|kind| kind != "function") {
        return Err(invalid(
            "messages",
            &format!("{where_}: only `function` tool calls are supported"),
        ));
    }
    let arguments = call.function.arguments.unwrap_or_default();
    let args = if arguments.trim().is_empty() {
        Args::Empty(EmptyObject {})
    } else {
        match serde_json::from_str::<Box<RawValue>>(&arguments) {
            Ok(raw) if raw.get().starts_with('{') => Args::Raw(raw),
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
    Ok(Part {
        function_call: Some(FunctionCall {
            name: call.function.name,
            args,
        }),
        thought_signature: ids::signature(&call.id),
        ..Part::default()
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
