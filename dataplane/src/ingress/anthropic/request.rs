//! Anthropic Messages request → OpenAI chat completions request.

use serde_json::{json, Map, Value};

use omg_shared::error::ErrorCode;

use crate::error::ApiError;

/// The client's Messages request, as an OpenAI chat body.
#[derive(Debug)]
pub struct Translated {
    /// The OpenAI chat completions body (`stream_options.include_usage` on for streams).
    pub body: Vec<u8>,
    /// `stream: true`.
    pub stream: bool,
}

/// How much of a Messages request must translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Everything: the OpenAI form is what a non-Anthropic provider gets.
    Whole,
    /// What routing, limits and estimates need, for a request only Anthropic will see (the
    /// client's body goes upstream as written): blocks and tools the OpenAI form cannot
    /// carry (documents, server tools, file images, …) are left out instead of refused.
    ForNative,
}

/// Translates a Messages request (`count_only`: a `count_tokens` request, which has no
/// `max_tokens` and never streams: a `stream` it carries is left to the provider to judge).
/// Errors name the offending field as Anthropic does (`messages.0.content`); they are the
/// client's to fix (400).
pub fn to_openai(raw: &[u8], count_only: bool) -> Result<Translated, ApiError> {
    translate(raw, count_only, Reading::Whole)
}

/// Reads a Messages request that only Anthropic deployments will serve (the client's body is
/// passed through as written): like [`to_openai`], but the blocks and tools only Anthropic
/// understands (documents, search results, server tools such as `web_search`, file sources)
/// are left out of the OpenAI form, which is used only for routing, limits and estimates.
/// Malformed requests are refused as by [`to_openai`].
pub fn to_openai_for_native(raw: &[u8], count_only: bool) -> Result<Translated, ApiError> {
    translate(raw, count_only, Reading::ForNative)
}

/// The `model` of a Messages body, if it names one (to decide how to read the rest).
pub fn model_of(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Model {
        model: String,
    }
    serde_json::from_slice::<Model>(raw).ok().map(|m| m.model)
}

fn translate(raw: &[u8], count_only: bool, reading: Reading) -> Result<Translated, ApiError> {
    let request = parse_object(raw)?;
    let model = model_field(&request)?;
    let max_tokens = max_tokens_field(&request, count_only)?;
    let stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream && !count_only,
        Some(_) => return Err(invalid("stream", "stream: Input should be a valid boolean")),
    };
    let messages = messages_to_openai(&request, reading)?;

    let mut out = Map::new();
    out.insert("model".into(), Value::String(model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), Value::Number(max_tokens));
    sampling_to_openai(&request, &mut out)?;
    tools_and_user_to_openai(&request, &mut out, reading)?;
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|_| invalid("body", "The request could not be translated."))?;
    Ok(Translated { body, stream })
}

/// The body as a JSON object, within the same bounds as OpenAI bodies (checked before the
/// body becomes a tree).
fn parse_object(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    use crate::request::shape;
    shape::check_with(raw, shape::MAX_ANTHROPIC_VALUES)?;
    match serde_json::from_slice(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(not_json("The request body must be a JSON object.".into())),
        Err(error) => Err(not_json(format!(
            "The request body is not valid JSON: {error}."
        ))),
    }
}

/// `model`: a non-empty string.
fn model_field(request: &Map<String, Value>) -> Result<String, ApiError> {
    match request.get("model") {
        Some(Value::String(model)) if !model.is_empty() => Ok(model.clone()),
        Some(_) => Err(invalid(
            "model",
            "model: Input should be a non-empty string",
        )),
        None => Err(invalid("model", "model: Field required")),
    }
}

/// `max_tokens`: at least 1; required unless `count_only`.
fn max_tokens_field(
    request: &Map<String, Value>,
    count_only: bool,
) -> Result<serde_json::Number, ApiError> {
    match request.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => Ok(n.clone()),
        Some(_) => Err(invalid(
            "max_tokens",
            "max_tokens: Input should be an integer greater than or equal to 1",
        )),
        None if count_only => Ok(serde_json::Number::from(1)),
        None => Err(invalid("max_tokens", "max_tokens: Field required")),
    }
}

/// `system` and `messages` → OpenAI messages.
fn messages_to_openai(
    request: &Map<String, Value>,
    reading: Reading,
) -> Result<Vec<Value>, ApiError> {
    let mut messages = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(Value::Array(blocks)) => {
            let text = text_of(blocks, "system", reading)?;
            messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "system: Input should be a string or a list of text blocks",
            ))
        }
    }
    let Some(Value::Array(turns)) = request.get("messages") else {
        return Err(invalid(
            "messages",
            "messages: Field required (a list of turns)",
        ));
    };
    if turns.is_empty() {
        return Err(invalid(
            "messages",
            "messages: at least one message is required",
        ));
    }
    for (at, turn) in turns.iter().enumerate() {
        turn_to_openai(turn, at, &mut messages, reading)?;
    }
    Ok(messages)
}

/// `temperature`, `top_p` and `stop_sequences` (as `stop`).
fn sampling_to_openai(
    request: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        match request.get(from) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                out.insert(to.into(), Value::Number(n.clone()));
            }
            Some(_) => {
                return Err(invalid(
                    param(from),
                    &format!("{from}: Input should be a number"),
                ))
            }
        }
    }
    match request.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            if !items.is_empty() {
                out.insert("stop".into(), Value::Array(items.clone()));
            }
        }
        Some(_) => {
            return Err(invalid(
                "stop_sequences",
                "stop_sequences: Input should be a list of strings",
            ))
        }
    }
    Ok(())
}

/// `tools`, `tool_choice` (with `parallel_tool_calls`) and `metadata.user_id` (as `user`).
fn tools_and_user_to_openai(
    request: &Map<String, Value>,
    out: &mut Map<String, Value>,
    reading: Reading,
) -> Result<(), ApiError> {
    if let Some(tools) = request.get("tools").filter(|t| !t.is_null()) {
        out.insert("tools".into(), tools_to_openai(tools, reading)?);
    }
    if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
        let (choice, parallel) = tool_choice_to_openai(choice)?;
        out.insert("tool_choice".into(), choice);
        if parallel == Some(false) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), Value::String(user.to_owned()));
    }
    Ok(())
}

/// What one turn's blocks become: content parts, assistant tool calls, and `tool` messages
/// (written straight to the conversation, before the rest of the turn).
#[derive(Default)]
struct TurnParts {
    parts: Vec<Value>,
    tool_calls: Vec<Value>,
}

/// One Anthropic turn → OpenAI messages (a user turn's `tool_result` blocks become `tool`
/// messages, before the rest of the turn).
fn turn_to_openai(
    turn: &Value,
    at: usize,
    messages: &mut Vec<Value>,
    reading: Reading,
) -> Result<(), ApiError> {
    let role = match turn.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant")) => role,
        _ => {
            return Err(invalid(
                "messages",
                &format!("messages.{at}.role: Input should be 'user' or 'assistant'"),
            ))
        }
    };
    let blocks = match turn.get("content") {
        Some(Value::String(text)) => {
            messages.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(invalid(
                "messages",
                &format!(
                    "messages.{at}.content: Input should be a string or a list of content blocks"
                ),
            ))
        }
    };
    let mut turn_parts = TurnParts::default();
    for (i, block) in blocks.iter().enumerate() {
        block_to_openai(block, (role, at, i), &mut turn_parts, messages, reading)?;
    }
    let TurnParts { parts, tool_calls } = turn_parts;
    if role == "assistant" {
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) }});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        messages.push(message);
    } else if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// Block `i` of turn `at` (of `role`) → a part, a tool call or a `tool` message.
fn block_to_openai(
    block: &Value,
    (role, at, i): (&str, usize, usize),
    turn: &mut TurnParts,
    messages: &mut Vec<Value>,
    reading: Reading,
) -> Result<(), ApiError> {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    match (role, kind) {
        (_, "text") => {
            let text = block.get("text").and_then(Value::as_str).ok_or_else(|| {
                invalid("messages", &format!("messages.{at}.content.{i}.text: Field required"))
            })?;
            turn.parts.push(json!({"type": "text", "text": text}));
        }
        ("user", "image") => match image_part(block, at, i) {
            Ok(part) => turn.parts.push(part),
            // An image by file id: still billed, counted as an image of unknown size.
            Err(_) if reading == Reading::ForNative => {
                turn.parts
                    .push(json!({"type": "image_url", "image_url": {"url": ""}}));
            }
            Err(refusal) => return Err(refusal),
        },
        ("assistant", "tool_use") => turn.tool_calls.push(tool_use_call(block, at, i)?),
        ("user", "tool_result") => messages.push(tool_result_message(block, at, i, reading)?),
        // Reasoning of earlier turns is the provider's own; other providers cannot read it.
        ("assistant", "thinking" | "redacted_thinking") => {}
        _ if reading == Reading::ForNative => turn.parts.extend(native_only_part(block)),
        _ => {
            return Err(invalid(
                "messages",
                &format!(
                    "messages.{at}.content.{i}: the block type `{kind}` is not supported in a {role} turn by this gateway's translation; use a model whose deployments are all Anthropic (its body then goes to Anthropic as written)"
                ),
            ))
        }
    }
    Ok(())
}

/// A `tool_use` block → an OpenAI tool call.
fn tool_use_call(block: &Value, at: usize, i: usize) -> Result<Value, ApiError> {
    let id = block.get("id").and_then(Value::as_str);
    let name = block.get("name").and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(invalid(
            "messages",
            &format!("messages.{at}.content.{i}: a tool_use block needs `id` and `name`"),
        ));
    };
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": input.to_string()},
    }))
}

/// A `tool_result` block → an OpenAI `tool` message (`Error: ` before the content of a
/// result marked `is_error`).
fn tool_result_message(
    block: &Value,
    at: usize,
    i: usize,
    reading: Reading,
) -> Result<Value, ApiError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(
                "messages",
                &format!("messages.{at}.content.{i}.tool_use_id: Field required"),
            )
        })?;
    let mut content = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => text_of(items, "messages", reading)?,
        Some(_) => {
            return Err(invalid(
                "messages",
                &format!("messages.{at}.content.{i}.content: Input should be a string or a list of text blocks"),
            ))
        }
    };
    if block.get("is_error") == Some(&Value::Bool(true)) {
        content.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

/// A block only Anthropic reads (a document), in the OpenAI form used for estimates: its
/// inline data counted as text (a text document) or as an inline file (base64), so the
/// reservation covers what Anthropic bills for it.
fn native_only_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let data = source.get("data").and_then(Value::as_str)?;
    Some(match source.get("type").and_then(Value::as_str) {
        Some("text") => json!({"type": "text", "text": data}),
        _ => json!({"type": "file", "file": {"file_data": data}}),
    })
}

fn image_part(block: &Value, at: usize, i: usize) -> Result<Value, ApiError> {
    let source = block.get("source");
    let url = match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("base64") => {
            let media = source.and_then(|s| s.get("media_type")).and_then(Value::as_str);
            let data = source.and_then(|s| s.get("data")).and_then(Value::as_str);
            match (media, data) {
                (Some(media), Some(data)) => format!("data:{media};base64,{data}"),
                _ => {
                    return Err(invalid(
                        "messages",
                        &format!("messages.{at}.content.{i}.source: a base64 image needs `media_type` and `data`"),
                    ))
                }
            }
        }
        Some("url") => match source.and_then(|s| s.get("url")).and_then(Value::as_str) {
            Some(url) => url.to_owned(),
            None => {
                return Err(invalid(
                    "messages",
                    &format!("messages.{at}.content.{i}.source.url: Field required"),
                ))
            }
        },
        _ => {
            return Err(invalid(
                "messages",
                &format!("messages.{at}.content.{i}.source: only `base64` and `url` image sources are supported"),
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The text of a list of `text` blocks, joined (for a native reading, other blocks are
/// skipped).
fn text_of(blocks: &[Value], field: &'static str, reading: Reading) -> Result<String, ApiError> {
    let mut text = String::new();
    for block in blocks {
        match (
            block.get("type").and_then(Value::as_str),
            block.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(piece)) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(piece);
            }
            _ if reading == Reading::ForNative => {}
            _ => {
                return Err(invalid(
                    field,
                    &format!("{field}: only text blocks are supported here"),
                ))
            }
        }
    }
    Ok(text)
}

fn tools_to_openai(tools: &Value, reading: Reading) -> Result<Value, ApiError> {
    let Value::Array(tools) = tools else {
        return Err(invalid("tools", "tools: Input should be a list"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            if reading == Reading::ForNative {
                continue;
            }
            return Err(invalid(
                "tools",
                &format!("tools.{i}: the server tool `{kind}` is only available on models whose deployments are all Anthropic"),
            ));
        }
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Err(invalid("tools", &format!("tools.{i}.name: Field required")));
        };
        let schema = tool
            .get("input_schema")
            .cloned()
            .ok_or_else(|| invalid("tools", &format!("tools.{i}.input_schema: Field required")))?;
        let mut function = json!({"name": name, "parameters": schema});
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            function["description"] = Value::String(description.to_owned());
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` and `disable_parallel_tool_use`.
fn tool_choice_to_openai(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|disabled| !disabled);
    let value = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => return Err(invalid("tool_choice", "tool_choice.name: Field required")),
        },
        _ => {
            return Err(invalid(
                "tool_choice",
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            ))
        }
    };
    Ok((value, parallel))
}

fn param(name: &str) -> &'static str {
    match name {
        "temperature" => "temperature",
        _ => "top_p",
    }
}

fn invalid(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message).with_param(param)
}

fn not_json(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidJson, message)
}
