//! Anthropic Messages request → OpenAI chat completions request.

use std::borrow::Cow;

use super::json::Json;

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
        None | Some(Json::Null) => false,
        Some(Json::Bool(stream)) => *stream && !count_only,
        Some(_) => return Err(invalid("stream", "stream: Input should be a valid boolean")),
    };
    let messages = messages_to_openai(&request, reading)?;

    let mut out = Json::object([
        ("model", Json::str(model)),
        ("messages", Json::Array(messages)),
        ("max_tokens", Json::Number(max_tokens)),
    ]);
    sampling_to_openai(&request, &mut out)?;
    tools_and_user_to_openai(&request, &mut out, reading)?;
    if stream {
        out.insert("stream", Json::Bool(true));
        let usage = Json::object([("include_usage", Json::Bool(true))]);
        out.insert("stream_options", usage);
    }
    // About the body's size: the translation carries the same text, borrowed until written.
    let mut body = Vec::with_capacity(raw.len().saturating_add(4096));
    serde_json::to_writer(&mut body, &out)
        .map_err(|_| invalid("body", "The request could not be translated."))?;
    Ok(Translated { body, stream })
}

/// The body as a JSON object, within the same bounds as OpenAI bodies (checked before the
/// body becomes a tree; its strings are borrowed from the body, see [`Json`]).
fn parse_object(raw: &[u8]) -> Result<Json<'_>, ApiError> {
    use crate::request::shape;
    shape::check_with(raw, shape::MAX_ANTHROPIC_VALUES)?;
    match Json::parse(raw) {
        Ok(object @ Json::Object(_)) => Ok(object),
        Ok(_) => Err(not_json("The request body must be a JSON object.".into())),
        Err(error) => Err(not_json(format!(
            "The request body is not valid JSON: {error}."
        ))),
    }
}

/// `model`: a non-empty string.
fn model_field<'t>(request: &'t Json<'_>) -> Result<&'t str, ApiError> {
    match request.get("model") {
        Some(Json::String(model)) if !model.is_empty() => Ok(model),
        Some(_) => Err(invalid(
            "model",
            "model: Input should be a non-empty string",
        )),
        None => Err(invalid("model", "model: Field required")),
    }
}

/// `max_tokens`: at least 1; required unless `count_only`.
fn max_tokens_field(request: &Json<'_>, count_only: bool) -> Result<serde_json::Number, ApiError> {
    match request.get("max_tokens") {
        Some(Json::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => Ok(n.clone()),
        Some(_) => Err(invalid(
            "max_tokens",
            "max_tokens: Input should be an integer greater than or equal to 1",
        )),
        None if count_only => Ok(serde_json::Number::from(1)),
        None => Err(invalid("max_tokens", "max_tokens: Field required")),
    }
}

/// `{"role": role, "content": content}`.
fn message<'t>(role: &'t str, content: Json<'t>) -> Json<'t> {
    Json::object([("role", Json::str(role)), ("content", content)])
}

/// `system` and `messages` → OpenAI messages.
fn messages_to_openai<'t>(
    request: &'t Json<'_>,
    reading: Reading,
) -> Result<Vec<Json<'t>>, ApiError> {
    let mut messages = Vec::new();
    match request.get("system") {
        None | Some(Json::Null) => {}
        Some(Json::String(text)) => messages.push(message("system", Json::str(text))),
        Some(Json::Array(blocks)) => {
            let text = text_of(blocks, "system", reading)?;
            messages.push(message("system", Json::Concat(text)));
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "system: Input should be a string or a list of text blocks",
            ))
        }
    }
    let Some(Json::Array(turns)) = request.get("messages") else {
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
fn sampling_to_openai<'t>(request: &'t Json<'_>, out: &mut Json<'t>) -> Result<(), ApiError> {
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        match request.get(from) {
            None | Some(Json::Null) => {}
            Some(Json::Number(n)) => out.insert(to, Json::Number(n.clone())),
            Some(_) => {
                return Err(invalid(
                    param(from),
                    &format!("{from}: Input should be a number"),
                ))
            }
        }
    }
    match request.get("stop_sequences") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.iter().all(Json::is_string) => {
            if !items.is_empty() {
                out.insert(
                    "stop",
                    Json::Array(items.iter().map(Json::borrowed).collect()),
                );
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
fn tools_and_user_to_openai<'t>(
    request: &'t Json<'_>,
    out: &mut Json<'t>,
    reading: Reading,
) -> Result<(), ApiError> {
    if let Some(tools) = request.get("tools").filter(|t| !t.is_null()) {
        out.insert("tools", tools_to_openai(tools, reading)?);
    }
    if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
        let (choice, parallel) = tool_choice_to_openai(choice)?;
        out.insert("tool_choice", choice);
        if parallel == Some(false) {
            out.insert("parallel_tool_calls", Json::Bool(false));
        }
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Json::as_str)
    {
        out.insert("user", Json::str(user));
    }
    Ok(())
}

/// What one turn's blocks become: content parts (and their texts, which an assistant turn
/// joins), assistant tool calls, and `tool` messages (written straight to the conversation,
/// before the rest of the turn).
#[derive(Default)]
struct TurnParts<'t> {
    parts: Vec<Json<'t>>,
    texts: Vec<Cow<'t, str>>,
    tool_calls: Vec<Json<'t>>,
}

impl<'t> TurnParts<'t> {
    fn push_text(&mut self, text: &'t str) {
        let part = Json::object([("type", Json::str("text")), ("text", Json::str(text))]);
        self.parts.push(part);
        self.texts.push(Cow::Borrowed(text));
    }
}

/// One Anthropic turn → OpenAI messages (a user turn's `tool_result` blocks become `tool`
/// messages, before the rest of the turn).
fn turn_to_openai<'t>(
    turn: &'t Json<'_>,
    at: usize,
    messages: &mut Vec<Json<'t>>,
    reading: Reading,
) -> Result<(), ApiError> {
    let role = match turn.get("role").and_then(Json::as_str) {
        Some(role @ ("user" | "assistant")) => role,
        _ => {
            return Err(invalid(
                "messages",
                &format!("messages.{at}.role: Input should be 'user' or 'assistant'"),
            ))
        }
    };
    let blocks = match turn.get("content") {
        Some(Json::String(text)) => {
            messages.push(message(role, Json::str(text)));
            return Ok(());
        }
        Some(Json::Array(blocks)) => blocks,
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
    let TurnParts {
        parts,
        texts,
        tool_calls,
    } = turn_parts;
    if role == "assistant" {
        let no_text = texts.iter().all(|text| text.is_empty());
        let content = if no_text && !tool_calls.is_empty() {
            Json::Null
        } else {
            Json::Concat(texts)
        };
        let mut assistant = message("assistant", content);
        if !tool_calls.is_empty() {
            assistant.insert("tool_calls", Json::Array(tool_calls));
        }
        messages.push(assistant);
    } else if !parts.is_empty() {
        messages.push(message("user", Json::Array(parts)));
    }
    Ok(())
}

/// Block `i` of turn `at` (of `role`) → a part, a tool call or a `tool` message.
fn block_to_openai<'t>(
    block: &'t Json<'_>,
    (role, at, i): (&str, usize, usize),
    turn: &mut TurnParts<'t>,
    messages: &mut Vec<Json<'t>>,
    reading: Reading,
) -> Result<(), ApiError> {
    let kind = block.get("type").and_then(Json::as_str).unwrap_or("");
    match (role, kind) {
        (_, "text") => {
            let text = block.get("text").and_then(Json::as_str).ok_or_else(|| {
                invalid("messages", &format!("messages.{at}.content.{i}.text: Field required"))
            })?;
            turn.push_text(text);
        }
        ("user", "image") => match image_part(block, at, i) {
            Ok(part) => turn.parts.push(part),
            // An image by file id: still billed, counted as an image of unknown size.
            Err(_) if reading == Reading::ForNative => turn.parts.push(image_url(Json::str(""))),
            Err(refusal) => return Err(refusal),
        },
        ("assistant", "tool_use") => turn.tool_calls.push(tool_use_call(block, at, i)?),
        ("user", "tool_result") => messages.push(tool_result_message(block, at, i, reading)?),
        // Reasoning of earlier turns is the provider's own; other providers cannot read it.
        ("assistant", "thinking" | "redacted_thinking") => {}
        _ if reading == Reading::ForNative => native_only_part(block, turn),
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
fn tool_use_call<'t>(block: &'t Json<'_>, at: usize, i: usize) -> Result<Json<'t>, ApiError> {
    let id = block.get("id").and_then(Json::as_str);
    let name = block.get("name").and_then(Json::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(invalid(
            "messages",
            &format!("messages.{at}.content.{i}: a tool_use block needs `id` and `name`"),
        ));
    };
    let arguments = block
        .get("input")
        .map_or_else(|| "{}".to_owned(), Json::to_json_string);
    let function = Json::object([
        ("name", Json::str(name)),
        ("arguments", Json::String(Cow::Owned(arguments))),
    ]);
    Ok(Json::object([
        ("id", Json::str(id)),
        ("type", Json::str("function")),
        ("function", function),
    ]))
}

/// A `tool_result` block → an OpenAI `tool` message (`Error: ` before the content of a
/// result marked `is_error`).
fn tool_result_message<'t>(
    block: &'t Json<'_>,
    at: usize,
    i: usize,
    reading: Reading,
) -> Result<Json<'t>, ApiError> {
    let id = block
        .get("tool_use_id")
        .and_then(Json::as_str)
        .ok_or_else(|| {
            invalid(
                "messages",
                &format!("messages.{at}.content.{i}.tool_use_id: Field required"),
            )
        })?;
    let mut content = match block.get("content") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::String(text)) => vec![Cow::Borrowed(text.as_ref())],
        Some(Json::Array(items)) => text_of(items, "messages", reading)?,
        Some(_) => {
            return Err(invalid(
                "messages",
                &format!("messages.{at}.content.{i}.content: Input should be a string or a list of text blocks"),
            ))
        }
    };
    if block.get("is_error").and_then(Json::as_bool) == Some(true) {
        content.insert(0, Cow::Borrowed("Error: "));
    }
    Ok(Json::object([
        ("role", Json::str("tool")),
        ("tool_call_id", Json::str(id)),
        ("content", Json::Concat(content)),
    ]))
}

/// A block only Anthropic reads (a document), in the OpenAI form used for estimates: its
/// inline data counted as text (a text document) or as an inline file (base64), so the
/// reservation covers what Anthropic bills for it.
fn native_only_part<'t>(block: &'t Json<'_>, turn: &mut TurnParts<'t>) {
    let Some(source) = block.get("source") else {
        return;
    };
    let Some(data) = source.get("data").and_then(Json::as_str) else {
        return;
    };
    match source.get("type").and_then(Json::as_str) {
        Some("text") => turn.push_text(data),
        _ => {
            let file = Json::object([("file_data", Json::str(data))]);
            let part = Json::object([("type", Json::str("file")), ("file", file)]);
            turn.parts.push(part);
        }
    }
}

/// `{"type": "image_url", "image_url": {"url": url}}`.
fn image_url(url: Json<'_>) -> Json<'_> {
    let image = Json::object([("url", url)]);
    Json::object([("type", Json::str("image_url")), ("image_url", image)])
}

fn image_part<'t>(block: &'t Json<'_>, at: usize, i: usize) -> Result<Json<'t>, ApiError> {
    let source = block.get("source");
    let field = |name: &str| source.and_then(|s| s.get(name)).and_then(Json::as_str);
    let url = match field("type") {
        Some("base64") => match (field("media_type"), field("data")) {
            (Some(media), Some(data)) => Json::Concat(vec![
                Cow::Borrowed("data:"),
                Cow::Borrowed(media),
                Cow::Borrowed(";base64,"),
                Cow::Borrowed(data),
            ]),
            _ => {
                return Err(invalid(
                    "messages",
                    &format!("messages.{at}.content.{i}.source: a base64 image needs `media_type` and `data`"),
                ))
            }
        },
        Some("url") => match field("url") {
            Some(url) => Json::str(url),
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
    Ok(image_url(url))
}

/// The text of a list of `text` blocks, as pieces joined by newlines (for a native reading,
/// other blocks are skipped).
fn text_of<'t>(
    blocks: &'t [Json<'_>],
    field: &'static str,
    reading: Reading,
) -> Result<Vec<Cow<'t, str>>, ApiError> {
    let mut pieces = Vec::new();
    for block in blocks {
        match (
            block.get("type").and_then(Json::as_str),
            block.get("text").and_then(Json::as_str),
        ) {
            (Some("text"), Some(piece)) => {
                if !pieces.is_empty() {
                    pieces.push(Cow::Borrowed("\n"));
                }
                pieces.push(Cow::Borrowed(piece));
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
    Ok(pieces)
}

fn tools_to_openai<'t>(tools: &'t Json<'_>, reading: Reading) -> Result<Json<'t>, ApiError> {
    let Json::Array(tools) = tools else {
        return Err(invalid("tools", "tools: Input should be a list"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool
            .get("type")
            .and_then(Json::as_str)
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
        let Some(name) = tool.get("name").and_then(Json::as_str) else {
            return Err(invalid("tools", &format!("tools.{i}.name: Field required")));
        };
        let schema = tool
            .get("input_schema")
            .map(Json::borrowed)
            .ok_or_else(|| invalid("tools", &format!("tools.{i}.input_schema: Field required")))?;
        let mut function = Json::object([("name", Json::str(name)), ("parameters", schema)]);
        if let Some(description) = tool.get("description").and_then(Json::as_str) {
            function.insert("description", Json::str(description));
        }
        out.push(Json::object([
            ("type", Json::str("function")),
            ("function", function),
        ]));
    }
    Ok(Json::Array(out))
}

/// `tool_choice` and `disable_parallel_tool_use`.
fn tool_choice_to_openai<'t>(choice: &'t Json<'_>) -> Result<(Json<'t>, Option<bool>), ApiError> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Json::as_bool)
        .map(|disabled| !disabled);
    let value = match choice.get("type").and_then(Json::as_str) {
        Some("auto") => Json::str("auto"),
        Some("any") => Json::str("required"),
        Some("none") => Json::str("none"),
        Some("tool") => match choice.get("name").and_then(Json::as_str) {
            Some(name) => {
                let function = Json::object([("name", Json::str(name))]);
                Json::object([("type", Json::str("function")), ("function", function)])
            }
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
