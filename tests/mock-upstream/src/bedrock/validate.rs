//! The Converse request body, checked the way Bedrock checks it: unknown fields refused,
//! `messages` alternating and starting with a user turn, content blocks with exactly one
//! member, images whose bytes are of their format, `toolUse` only in assistant turns and
//! `toolResult` only in user turns answering the previous turn's `toolUse` ids, `toolConfig`
//! required once tools are in the conversation, `inferenceConfig` ranges.

use base64::Engine;
use serde_json::{Map, Value};

use crate::openai;

/// A problem: the message of a 400 `ValidationException`.
pub(super) type Check<T> = Result<T, String>;

const FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
];

const IMAGE_FORMATS: &[(&str, &[u8])] = &[
    ("jpeg", b"\xff\xd8\xff"),
    ("png", b"\x89PNG"),
    ("gif", b"GIF8"),
    ("webp", b"RIFF"),
];

/// What the answer depends on.
#[derive(Debug)]
pub(super) struct Checked<'a> {
    pub max_tokens: Option<u64>,
    /// Words of the system and message text (at least 1).
    pub input_tokens: u64,
    pub stop_sequences: Vec<&'a str>,
    /// The tool to call, and whether it is forced (`any` / `tool`).
    pub tool_call: Option<(&'a str, bool)>,
}

fn malformed(message: &str) -> String {
    format!("Malformed input request: {message}, please reformat your input and try again.")
}

fn object<'a>(value: &'a Value, path: &str) -> Check<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| malformed(&format!("{path}: expected an object")))
}

fn only(object: &Map<String, Value>, allowed: &[&str], path: &str) -> Check<()> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(malformed(&format!(
            "{path}: extraneous key [{key}] is not permitted"
        ))),
        None => Ok(()),
    }
}

/// A union member: exactly one key, among `allowed`.
fn member<'a>(value: &'a Value, allowed: &[&str], path: &str) -> Check<(&'a str, &'a Value)> {
    let object = object(value, path)?;
    only(object, allowed, path)?;
    let mut members = object.iter();
    match (members.next(), members.next()) {
        (Some((key, value)), None) => Ok((key.as_str(), value)),
        _ => Err(format!(
            "The model returned the following errors: {path} must set exactly one member"
        )),
    }
}

fn text<'a>(value: &'a Value, path: &str) -> Check<&'a str> {
    let text = value
        .as_str()
        .ok_or_else(|| malformed(&format!("{path}: expected a string")))?;
    if text.trim().is_empty() {
        return Err(format!(
            "The text field in the ContentBlock object at {path} is blank. Add text to the text field, and try again."
        ));
    }
    Ok(text)
}

/// Checks the whole body.
pub(super) fn check(request: &Map<String, Value>) -> Check<Checked<'_>> {
    only(request, FIELDS, "")?;
    let messages = match request.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(_) => return Err(malformed("messages: expected a non-empty array")),
        None => {
            return Err("1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null".to_owned())
        }
    };
    let mut words = 0;
    let mut uses_tools = false;
    let mut pending_tool_uses: Vec<&str> = Vec::new();
    let mut last_user_text = String::new();
    let mut last_role = "";
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages.{i}");
        let message = object(message, &path)?;
        only(message, &["role", "content"], &path)?;
        let role = match message.get("role").and_then(Value::as_str) {
            Some(role @ ("user" | "assistant")) => role,
            _ => {
                return Err(malformed(&format!(
                    "{path}.role: expected user or assistant"
                )))
            }
        };
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".to_owned());
        }
        if role == last_role {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".to_owned());
        }
        last_role = role;
        let content = match message.get("content") {
            Some(Value::Array(content)) if !content.is_empty() => content,
            _ => {
                return Err(malformed(&format!(
                    "{path}.content: expected a non-empty array"
                )))
            }
        };
        let mut answered: Vec<&str> = Vec::new();
        let mut used: Vec<&str> = Vec::new();
        let mut user_text = String::new();
        for (j, block) in content.iter().enumerate() {
            let path = format!("{path}.content.{j}");
            let (kind, value) = member(
                block,
                &[
                    "text",
                    "image",
                    "toolUse",
                    "toolResult",
                    "cachePoint",
                    "document",
                    "reasoningContent",
                ],
                &path,
            )?;
            match kind {
                "text" => {
                    let text = text(value, &path)?;
                    words += openai::words(text);
                    user_text.push_str(text);
                    user_text.push(' ');
                }
                "image" => check_image(value, &path)?,
                "cachePoint" => check_cache_point(value, &path)?,
                "toolUse" if role == "assistant" => {
                    uses_tools = true;
                    let tool = object(value, &path)?;
                    only(tool, &["toolUseId", "name", "input"], &path)?;
                    let id = tool
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed(&format!("{path}.toolUseId: required")))?;
                    tool.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed(&format!("{path}.name: required")))?;
                    if !tool.get("input").is_some_and(Value::is_object) {
                        return Err(malformed(&format!("{path}.input: expected an object")));
                    }
                    used.push(id);
                }
                "toolResult" if role == "user" => {
                    uses_tools = true;
                    let result = object(value, &path)?;
                    only(result, &["toolUseId", "content", "status"], &path)?;
                    let id = result
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed(&format!("{path}.toolUseId: required")))?;
                    if !pending_tool_uses.contains(&id) {
                        return Err(format!("The toolResult block with toolUseId {id} at {path} does not match any toolUse block of the previous assistant turn."));
                    }
                    answered.push(id);
                    match result.get("content") {
                        Some(Value::Array(items)) if !items.is_empty() => {
                            for (k, item) in items.iter().enumerate() {
                                let path = format!("{path}.content.{k}");
                                match member(item, &["text", "json", "image", "document"], &path)? {
                                    ("text", value) => {
                                        text(value, &path)?;
                                    }
                                    ("image", value) => check_image(value, &path)?,
                                    _ => {}
                                }
                            }
                        }
                        _ => {
                            return Err(malformed(&format!(
                                "{path}.content: expected a non-empty array"
                            )))
                        }
                    }
                    match result.get("status") {
                        None => {}
                        Some(Value::String(s)) if s == "success" || s == "error" => {}
                        Some(_) => {
                            return Err(malformed(&format!(
                                "{path}.status: expected success or error"
                            )))
                        }
                    }
                }
                "toolUse" | "toolResult" => {
                    return Err(format!(
                        "{path}: a {kind} block is not allowed in a {role} message"
                    ))
                }
                _ => {}
            }
        }
        if role == "user" {
            if let Some(missing) = pending_tool_uses.iter().find(|id| !answered.contains(id)) {
                return Err(format!(
                    "Expected toolResult blocks at {path}.content for the following Ids: {missing}"
                ));
            }
            last_user_text = user_text;
        }
        pending_tool_uses = used;
    }
    if let Some(system) = request.get("system") {
        let blocks = system
            .as_array()
            .ok_or_else(|| malformed("system: expected an array"))?;
        for (i, block) in blocks.iter().enumerate() {
            let path = format!("system.{i}");
            match member(block, &["text", "cachePoint", "guardContent"], &path)? {
                ("text", value) => words += openai::words(text(value, &path)?),
                ("cachePoint", value) => check_cache_point(value, &path)?,
                _ => {}
            }
        }
    }
    let mut checked = Checked {
        max_tokens: None,
        input_tokens: words.max(1),
        stop_sequences: Vec::new(),
        tool_call: None,
    };
    if let Some(config) = request.get("inferenceConfig") {
        let config = object(config, "inferenceConfig")?;
        only(
            config,
            &["maxTokens", "temperature", "topP", "stopSequences"],
            "inferenceConfig",
        )?;
        if let Some(max) = config.get("maxTokens") {
            checked.max_tokens = Some(max.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1".to_owned()
            })?);
        }
        for key in ["temperature", "topP"] {
            if let Some(value) = config.get(key) {
                if !value.as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)) {
                    return Err(format!("1 validation error detected: Value at 'inferenceConfig.{key}' failed to satisfy constraint: Member must have value less than or equal to 1"));
                }
            }
        }
        if let Some(stops) = config.get("stopSequences") {
            let stops = stops
                .as_array()
                .ok_or_else(|| malformed("inferenceConfig.stopSequences: expected an array"))?;
            for stop in stops {
                checked
                    .stop_sequences
                    .push(stop.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
                        malformed("inferenceConfig.stopSequences: expected non-empty strings")
                    })?);
            }
        }
    }
    match request.get("toolConfig") {
        None if uses_tools => {
            return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".to_owned())
        }
        None => {}
        Some(config) => {
            let config = object(config, "toolConfig")?;
            only(config, &["tools", "toolChoice"], "toolConfig")?;
            let tools = match config.get("tools") {
                Some(Value::Array(tools)) if !tools.is_empty() => tools,
                _ => return Err(malformed("toolConfig.tools: expected a non-empty array")),
            };
            let mut names = Vec::new();
            for (i, tool) in tools.iter().enumerate() {
                let path = format!("toolConfig.tools.{i}");
                let (_, spec) = member(tool, &["toolSpec", "cachePoint"], &path)?;
                let path = format!("{path}.toolSpec");
                let spec = object(spec, &path)?;
                only(spec, &["name", "description", "inputSchema"], &path)?;
                let name = spec.get("name").and_then(Value::as_str).filter(|n| {
                    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                }).ok_or_else(|| malformed(&format!("{path}.name: expected a name matching [a-zA-Z0-9_-]{{1,64}}")))?;
                let schema = spec.get("inputSchema").and_then(Value::as_object);
                match schema.map(|s| (s.len(), s.get("json"))) {
                    Some((1, Some(Value::Object(_)))) => {}
                    _ => return Err(malformed(&format!("{path}.inputSchema: expected {{\"json\": {{…}}}}"))),
                }
                if names.contains(&name) {
                    return Err("The tool names in toolConfig must be unique.".to_owned());
                }
                names.push(name);
            }
            let choice = match config.get("toolChoice") {
                None => None,
                Some(choice) => Some(match member(choice, &["auto", "any", "tool"], "toolConfig.toolChoice")? {
                    ("tool", value) => {
                        let name = value.get("name").and_then(Value::as_str).unwrap_or_default();
                        if !names.contains(&name) {
                            return Err(format!("The tool {name} named by toolChoice is not in toolConfig.tools."));
                        }
                        ("tool", Some(name))
                    }
                    (kind, _) => (kind, None),
                }),
            };
            let first = names.first().copied().unwrap_or_default();
            checked.tool_call = match choice {
                Some(("tool", name)) => Some((name.unwrap_or(first), true)),
                Some(("any", _)) => Some((first, true)),
                _ => last_user_text.to_lowercase().contains("weather").then_some((first, false)),
            };
        }
    }
    Ok(checked)
}

fn check_cache_point(value: &Value, path: &str) -> Check<()> {
    if value.get("type").and_then(Value::as_str) == Some("default")
        && object(value, path)?.len() == 1
    {
        Ok(())
    } else {
        Err(malformed(&format!(
            "{path}: expected {{\"type\": \"default\"}}"
        )))
    }
}

fn check_image(value: &Value, path: &str) -> Check<()> {
    let image = object(value, path)?;
    only(image, &["format", "source"], path)?;
    let format = image
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some((_, magic)) = IMAGE_FORMATS.iter().find(|(name, _)| *name == format) else {
        return Err(malformed(&format!(
            "{path}.format: expected png, jpeg, gif or webp"
        )));
    };
    let source = image
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(&format!("{path}.source: required")))?;
    only(source, &["bytes"], &format!("{path}.source"))?;
    let bytes = source
        .get("bytes")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bytes)
        .map_err(|_| malformed(&format!("{path}.source.bytes: invalid base64")))?;
    if !decoded.starts_with(magic) {
        return Err(format!(
            "Unable to process the image at {path}: the bytes are not a valid {format} image."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn checked(body: Value) -> Check<(Option<(String, bool)>, u64)> {
        let map = body.as_object().cloned().unwrap_or_default();
        check(&map).map(|c| (c.tool_call.map(|(n, f)| (n.to_owned(), f)), c.input_tokens))
    }

    #[test]
    fn bodies_are_checked_like_bedrock() {
        let user = |text: &str| json!({"role": "user", "content": [{"text": text}]});
        let tools = json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]});
        let call = json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]});
        let result = |id: &str| json!({"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "sunny"}]}}]});
        assert_eq!(
            checked(json!({"messages": [user("hello there")], "system": [{"text": "be brief"}]})),
            Ok((None, 4))
        );
        assert_eq!(
            checked(json!({"messages": [user("the weather?")], "toolConfig": tools})),
            Ok((Some(("get_weather".to_owned(), false)), 2))
        );
        assert!(
            checked(json!({"messages": [user("a"), call, result("t1")], "toolConfig": tools}))
                .is_ok()
        );
        for (body, needle) in [
            (
                json!({"messages": [user("a")], "model": "x"}),
                "extraneous key [model]",
            ),
            (json!({"messages": [call]}), "start with a user message"),
            (json!({"messages": [user("a"), user("b")]}), "alternate"),
            (json!({"messages": [user(" ")]}), "is blank"),
            (
                json!({"messages": [user("a"), call, result("t1")]}),
                "toolConfig field must be defined",
            ),
            (
                json!({"messages": [user("a"), call, result("t2")], "toolConfig": tools}),
                "does not match",
            ),
            (
                json!({"messages": [user("a"), call, user("b")], "toolConfig": tools}),
                "Expected toolResult",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}),
                "exactly one member",
            ),
            (
                json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "R0lGODlh"}}}]}]}),
                "not a valid png",
            ),
        ] {
            let error = checked(body.clone()).unwrap_err();
            assert!(error.contains(needle), "{body}: {error}");
        }
    }
}
