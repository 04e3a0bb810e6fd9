//! The Messages API request body, checked the way Anthropic checks it: unknown fields are
//! refused, required fields and types enforced, message and block structure verified
//! (roles, non-empty content, `tool_use` / `tool_result` pairing, image sources). Messages
//! read like Anthropic's: `<path>: <problem>`, e.g. `messages.0.content.1.text: Field
//! required`.

mod document;
mod tools;

use base64::Engine;
use serde_json::{Map, Value};

use crate::openai;
use tools::{check_tool_choice, check_tools, decide_tool_call, Choice};

/// A problem with the request: the message of a 400 `invalid_request_error`.
pub(super) type Check<T> = Result<T, String>;

/// Top-level fields the Messages API accepts.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
];

/// Image types Anthropic reads, with the bytes each must start with.
const IMAGE_TYPES: &[(&str, &[u8])] = &[
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/png", b"\x89PNG"),
    ("image/gif", b"GIF8"),
    ("image/webp", b"RIFF"),
];

/// What the answer depends on.
#[derive(Debug)]
pub(super) struct Checked<'a> {
    pub model: &'a str,
    pub max_tokens: u64,
    pub stream: bool,
    /// Words of `system` and the messages' text (at least 1).
    pub input_tokens: u64,
    pub stop_sequences: Vec<&'a str>,
    /// The prefix the prompt cache keeps (up to the last `cache_control` marker).
    pub cache_prefix: Option<super::cache::Prefix>,
    /// The tool to call instead of (or after) answering, if any.
    pub tool_call: Option<ToolCall<'a>>,
}

/// What a Messages request and a token count share: the prompt.
#[derive(Debug)]
pub(super) struct Prompt<'a> {
    pub model: &'a str,
    pub messages: &'a [Value],
    /// The custom tools' names, in order.
    pub tools: Vec<&'a str>,
    pub choice: Option<Choice<'a>>,
    /// Words of `system` and the messages' text (at least 1).
    pub input_tokens: u64,
}

/// The mock's decision to call a tool.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ToolCall<'a> {
    pub name: &'a str,
    /// `tool_choice` `any` or `tool`: the answer is the tool call alone.
    pub forced: bool,
}

pub(super) fn at(path: &str, key: impl std::fmt::Display) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn problem(path: &str, message: &str) -> String {
    format!("{path}: {message}")
}

pub(super) fn required(path: &str) -> String {
    problem(path, "Field required")
}

/// Refuses keys outside `allowed`.
pub(super) fn only(object: &Map<String, Value>, allowed: &[&str], path: &str) -> Check<()> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(problem(&at(path, key), "Extra inputs are not permitted")),
        None => Ok(()),
    }
}

pub(super) fn object<'a>(value: &'a Value, path: &str) -> Check<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| problem(path, "Input should be a valid dictionary"))
}

fn array<'a>(value: &'a Value, path: &str) -> Check<&'a Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| problem(path, "Input should be a valid list"))
}

fn string<'a>(value: &'a Value, path: &str) -> Check<&'a str> {
    value
        .as_str()
        .ok_or_else(|| problem(path, "Input should be a valid string"))
}

/// `object[key]` as a string; `Field required` when absent.
pub(super) fn string_field<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Check<&'a str> {
    let path = at(path, key);
    string(object.get(key).ok_or_else(|| required(&path))?, &path)
}

/// A number within `low..=high`.
fn number_in(value: &Value, path: &str, low: f64, high: f64) -> Check<()> {
    let n = value
        .as_f64()
        .ok_or_else(|| problem(path, "Input should be a valid number"))?;
    if n < low {
        return Err(problem(
            path,
            &format!("Input should be greater than or equal to {low}"),
        ));
    }
    if n > high {
        return Err(problem(
            path,
            &format!("Input should be less than or equal to {high}"),
        ));
    }
    Ok(())
}

/// An integer of at least `min`.
fn integer_from(value: &Value, path: &str, min: u64) -> Check<u64> {
    let n = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64(),
        _ => return Err(problem(path, "Input should be a valid integer")),
    };
    match n.and_then(|n| u64::try_from(n).ok()) {
        Some(n) if n >= min => Ok(n),
        _ => Err(problem(
            path,
            &format!("Input should be greater than or equal to {min}"),
        )),
    }
}

/// Checks the prompt's fields: `model`, `messages`, `system`, `tools` and `tool_choice`.
pub(super) fn check_prompt(request: &Map<String, Value>) -> Check<Prompt<'_>> {
    let model = string_field(request, "model", "")?;
    let messages = check_messages(request.get("messages"))?;
    if let Some(system) = request.get("system") {
        check_system(system)?;
    }
    let tools = match request.get("tools") {
        Some(tools) => check_tools(tools)?,
        None => Vec::new(),
    };
    let choice = match request.get("tool_choice") {
        Some(choice) => Some(check_tool_choice(choice, &tools)?),
        None => None,
    };
    let mut counted = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = request.get("system") {
        counted.push(serde_json::json!({ "content": system }));
    }
    counted.extend(messages.iter().cloned());
    Ok(Prompt {
        model,
        messages,
        tools,
        choice,
        input_tokens: openai::chat_prompt_tokens(&counted),
    })
}

/// Checks the whole body.
pub(super) fn check(request: &Map<String, Value>) -> Check<Checked<'_>> {
    only(request, FIELDS, "")?;
    let prompt = check_prompt(request)?;
    let max_tokens = integer_from(
        request
            .get("max_tokens")
            .ok_or_else(|| required("max_tokens"))?,
        "max_tokens",
        1,
    )?;
    let stop_sequences = match request.get("stop_sequences") {
        Some(stops) => check_stop_sequences(stops)?,
        None => Vec::new(),
    };
    if let Some(t) = request.get("temperature") {
        number_in(t, "temperature", 0.0, 1.0)?;
    }
    if let Some(p) = request.get("top_p") {
        number_in(p, "top_p", 0.0, 1.0)?;
    }
    if let Some(k) = request.get("top_k") {
        integer_from(k, "top_k", 0)?;
    }
    let stream = match request.get("stream") {
        None => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(problem("stream", "Input should be a valid boolean")),
    };
    if let Some(metadata) = request.get("metadata") {
        let metadata = object(metadata, "metadata")?;
        only(metadata, &["user_id"], "metadata")?;
        match metadata.get("user_id") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => {
                return Err(problem(
                    "metadata.user_id",
                    "Input should be a valid string",
                ))
            }
        }
    }
    if let Some(thinking) = request.get("thinking") {
        check_thinking(thinking, Some(max_tokens))?;
    }
    if let Some(tier) = request.get("service_tier") {
        string(tier, "service_tier")?;
    }

    Ok(Checked {
        model: prompt.model,
        max_tokens,
        stream,
        input_tokens: prompt.input_tokens,
        stop_sequences,
        cache_prefix: super::cache::prefix(prompt.model, request, prompt.messages),
        tool_call: decide_tool_call(prompt.messages, &prompt.tools, prompt.choice),
    })
}

fn check_messages(messages: Option<&Value>) -> Check<&Vec<Value>> {
    let messages = array(messages.ok_or_else(|| required("messages"))?, "messages")?;
    if messages.is_empty() {
        return Err(problem("messages", "at least one message is required"));
    }
    let mut roles = Vec::with_capacity(messages.len());
    let mut tool_uses: Vec<Vec<&str>> = Vec::with_capacity(messages.len());
    let mut tool_results: Vec<Vec<(usize, &str)>> = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let path = at("messages", i);
        let message = object(message, &path)?;
        let role = string_field(message, "role", &path)?;
        match role {
            "user" | "assistant" => {}
            "system" => {
                return Err(problem(
                    "messages",
                    "Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \
                     \"system\" as an input message role.",
                ))
            }
            _ => {
                return Err(problem(
                    &at(&path, "role"),
                    "Input should be 'user' or 'assistant'",
                ))
            }
        }
        only(message, &["role", "content"], &path)?;
        let final_assistant = i + 1 == messages.len() && role == "assistant";
        let content = message
            .get("content")
            .ok_or_else(|| required(&at(&path, "content")))?;
        let (uses, results) = check_content(content, role, &path, final_assistant)?;
        roles.push(role);
        tool_uses.push(uses);
        tool_results.push(results);
    }
    if roles[0] != "user" {
        return Err(problem(
            "messages",
            "first message must use the \"user\" role",
        ));
    }
    for i in 0..messages.len() {
        // Every `tool_result` answers a `tool_use` of the message before …
        for &(j, id) in &tool_results[i] {
            let previous = i.checked_sub(1).map_or(&[][..], |p| &tool_uses[p][..]);
            if !previous.contains(&id) {
                return Err(problem(
                    &format!("messages.{i}.content.{j}"),
                    &format!(
                        "unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block \
                         must have a corresponding `tool_use` block in the previous message."
                    ),
                ));
            }
        }
        // … and every `tool_use` is answered by the next message.
        if let Some(next) = tool_results.get(i + 1) {
            let missing: Vec<&str> = tool_uses[i]
                .iter()
                .copied()
                .filter(|id| !next.iter().any(|(_, answered)| answered == id))
                .collect();
            if !missing.is_empty() {
                return Err(problem(
                    &format!("messages.{}", i + 1),
                    &format!(
                        "`tool_use` ids were found without `tool_result` blocks immediately after: {}. Each \
                         `tool_use` block must have a corresponding `tool_result` block in the next message.",
                        missing.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(messages)
}

/// `tool_use` ids and (block index, `tool_use_id`) of `tool_result` blocks of a message.
type ToolIds<'a> = (Vec<&'a str>, Vec<(usize, &'a str)>);

fn check_content<'a>(
    content: &'a Value,
    role: &str,
    path: &str,
    final_assistant: bool,
) -> Check<ToolIds<'a>> {
    const NON_EMPTY: &str =
        "all messages must have non-empty content except for the optional final assistant message";
    let trailing = |text: &str| final_assistant && text.ends_with(char::is_whitespace);
    let trailing_error = || {
        problem(
            "messages",
            "final assistant content cannot end with trailing whitespace",
        )
    };
    let blocks = match content {
        Value::String(text) if text.is_empty() && !final_assistant => {
            return Err(problem(path, NON_EMPTY))
        }
        Value::String(text) if trailing(text) => return Err(trailing_error()),
        Value::String(_) => return Ok((Vec::new(), Vec::new())),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(problem(
                &at(path, "content"),
                "Input should be a valid string or a valid list",
            ))
        }
    };
    if blocks.is_empty() && !final_assistant {
        return Err(problem(path, NON_EMPTY));
    }
    let mut ids = (Vec::new(), Vec::new());
    for (j, block) in blocks.iter().enumerate() {
        let path = at(&at(path, "content"), j);
        let block = object(block, &path)?;
        let kind = string_field(block, "type", &path)?;
        match (kind, role) {
            ("text", _) => {
                let text = check_text_block(block, &path)?;
                if j + 1 == blocks.len() && trailing(text) {
                    return Err(trailing_error());
                }
            }
            ("image", _) => check_image_block(block, &path)?,
            ("document", "user") => document::check_document_block(block, &path)?,
            ("tool_use", "assistant") => {
                only(block, &["type", "id", "name", "input", "cache_control"], &path)?;
                ids.0.push(string_field(block, "id", &path)?);
                string_field(block, "name", &path)?;
                let input = at(&path, "input");
                object(block.get("input").ok_or_else(|| required(&input))?, &input)?;
            }
            ("tool_result", "user") => {
                only(
                    block,
                    &["type", "tool_use_id", "content", "is_error", "cache_control"],
                    &path,
                )?;
                ids.1.push((j, string_field(block, "tool_use_id", &path)?));
                check_tool_result_content(block.get("content"), &at(&path, "content"))?;
                match block.get("is_error") {
                    None | Some(Value::Bool(_)) => {}
                    Some(_) => {
                        return Err(problem(
                            &at(&path, "is_error"),
                            "Input should be a valid boolean",
                        ))
                    }
                }
            }
            ("tool_use", _) | ("tool_result", _) => {
                let wanted = if kind == "tool_use" {
                    "assistant"
                } else {
                    "user"
                };
                return Err(problem(
                    &path,
                    &format!("`{kind}` blocks can only be in `{wanted}` messages"),
                ));
            }
            _ => {
                return Err(problem(
                    &path,
                    &format!(
                        "Input tag '{kind}' found using 'type' does not match any of the expected tags: 'text', \
                         'image', 'document', 'tool_use', 'tool_result'"
                    ),
                ))
            }
        }
    }
    Ok(ids)
}

/// A `text` block: a non-empty `text`.
fn check_text_block<'a>(block: &'a Map<String, Value>, path: &str) -> Check<&'a str> {
    only(block, &["type", "text", "cache_control", "citations"], path)?;
    let text = string_field(block, "text", path)?;
    if text.is_empty() {
        return Err(problem(
            &at(path, "text"),
            "text content blocks must be non-empty",
        ));
    }
    Ok(text)
}

/// An `image` block: a base64 source of a supported type whose bytes are that type, or a
/// URL source.
fn check_image_block(block: &Map<String, Value>, path: &str) -> Check<()> {
    only(block, &["type", "source", "cache_control"], path)?;
    let path = at(path, "source");
    let source = object(block.get("source").ok_or_else(|| required(&path))?, &path)?;
    match string_field(source, "type", &path)? {
        "base64" => {
            let path = at(&path, "base64");
            only(source, &["type", "media_type", "data"], &path)?;
            let media_type = string_field(source, "media_type", &path)?;
            let Some((_, magic)) = IMAGE_TYPES.iter().find(|(t, _)| *t == media_type) else {
                return Err(problem(
                    &at(&path, "media_type"),
                    "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                ));
            };
            let data = string_field(source, "data", &path)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| problem(&at(&path, "data"), "invalid base64 data"))?;
            if !bytes.starts_with(magic) {
                return Err(problem(
                    &path,
                    &format!(
                        "The image was specified using the {media_type} media type, but does not appear to be a \
                         valid {} image",
                        media_type.trim_start_matches("image/")
                    ),
                ));
            }
            Ok(())
        }
        "url" => {
            let path = at(&path, "url");
            only(source, &["type", "url"], &path)?;
            let url = string_field(source, "url", &path)?;
            if url.starts_with("https://") || url.starts_with("http://") {
                Ok(())
            } else {
                Err(problem(&at(&path, "url"), "Input should be a valid URL"))
            }
        }
        other => Err(problem(
            &path,
            &format!(
                "Input tag '{other}' found using 'type' does not match any of the expected tags: 'base64', 'url'"
            ),
        )),
    }
}

/// A `tool_result`'s `content`: absent, a string, or `text` / `image` blocks.
fn check_tool_result_content(content: Option<&Value>, path: &str) -> Check<()> {
    match content {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => {
            for (k, block) in blocks.iter().enumerate() {
                let path = at(path, k);
                let block = object(block, &path)?;
                match string_field(block, "type", &path)? {
                    "text" => {
                        check_text_block(block, &path)?;
                    }
                    "image" => check_image_block(block, &path)?,
                    other => {
                        return Err(problem(
                            &path,
                            &format!(
                                "Input tag '{other}' found using 'type' does not match any of the expected tags: \
                                 'text', 'image'"
                            ),
                        ))
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(problem(
            path,
            "Input should be a valid string or a valid list",
        )),
    }
}

/// `system`: a string or `text` blocks.
fn check_system(system: &Value) -> Check<()> {
    match system {
        Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (i, block) in blocks.iter().enumerate() {
                let path = at("system", i);
                let block = object(block, &path)?;
                match string_field(block, "type", &path)? {
                    "text" => {
                        check_text_block(block, &path)?;
                    }
                    other => {
                        return Err(problem(
                            &at(&path, "type"),
                            &format!("Input should be 'text', not '{other}'"),
                        ))
                    }
                }
            }
            Ok(())
        }
        _ => Err(problem(
            "system",
            "Input should be a valid string or a valid list",
        )),
    }
}

/// `stop_sequences`: strings with something other than whitespace.
fn check_stop_sequences(stops: &Value) -> Check<Vec<&str>> {
    let stops = array(stops, "stop_sequences")?;
    let mut out = Vec::with_capacity(stops.len());
    for (i, stop) in stops.iter().enumerate() {
        let stop = string(stop, &at("stop_sequences", i))?;
        if stop.trim().is_empty() {
            return Err(problem(
                "stop_sequences",
                "each stop sequence must contain non-whitespace",
            ));
        }
        out.push(stop);
    }
    Ok(out)
}

/// `thinking`: `{type: disabled}` or `{type: enabled, budget_tokens}` with at least 1024
/// tokens and fewer than `max_tokens` (when the request has one: a token count has none).
pub(super) fn check_thinking(thinking: &Value, max_tokens: Option<u64>) -> Check<()> {
    let thinking = object(thinking, "thinking")?;
    match string_field(thinking, "type", "thinking")? {
        "disabled" => only(thinking, &["type"], "thinking.disabled"),
        "enabled" => {
            only(thinking, &["type", "budget_tokens"], "thinking.enabled")?;
            let path = "thinking.enabled.budget_tokens";
            let budget = integer_from(
                thinking
                    .get("budget_tokens")
                    .ok_or_else(|| required(path))?,
                path,
                1024,
            )?;
            if max_tokens.is_some_and(|max_tokens| budget >= max_tokens) {
                return Err(problem(
                    "max_tokens",
                    "`max_tokens` must be greater than `thinking.budget_tokens`",
                ));
            }
            Ok(())
        }
        other => Err(problem(
            "thinking",
            &format!(
                "Input tag '{other}' found using 'type' does not match any of the expected tags: 'enabled', \
                 'disabled'"
            ),
        )),
    }
}
