//! `tools` and `tool_choice`, and the mock's decision to call a tool.

use serde_json::Value;

use super::{array, at, object, only, problem, required, string, string_field, Check, ToolCall};

/// The `tool_choice` type and, for `tool`, the name.
pub(super) type Choice<'a> = (&'a str, Option<&'a str>);

/// Calls a tool when there are tools, `tool_choice` is not `none` and either forces one
/// (`any`, `tool`) or the last user message mentions the weather.
pub(super) fn decide_tool_call<'a>(
    messages: &[Value],
    tools: &[&'a str],
    choice: Option<Choice<'a>>,
) -> Option<ToolCall<'a>> {
    let first = *tools.first()?;
    match choice {
        Some(("none", _)) => None,
        Some(("tool", name)) => Some(ToolCall {
            name: name.unwrap_or(first),
            forced: true,
        }),
        Some(("any", _)) => Some(ToolCall {
            name: first,
            forced: true,
        }),
        _ => {
            let last_user = messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
            text_of(last_user.get("content")?)
                .to_lowercase()
                .contains("weather")
                .then_some(ToolCall {
                    name: first,
                    forced: false,
                })
        }
    }
}

/// The text of a message's content (string, or its text blocks).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// `tools`: custom tools (`name`, `description`, an object `input_schema`) with unique names,
/// or Anthropic's versioned server tools (`type` like `web_search_20250305`, not checked
/// further). The custom tools' names, in order.
pub(super) fn check_tools(tools: &Value) -> Check<Vec<&str>> {
    let tools = array(tools, "tools")?;
    let mut names = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = at("tools", i);
        let tool = object(tool, &path)?;
        match tool.get("type") {
            None => {}
            Some(Value::String(kind)) if kind == "custom" => {}
            Some(Value::String(kind)) if is_server_tool(kind) => continue,
            Some(_) => {
                return Err(problem(
                    &at(&path, "type"),
                    "Input should be 'custom' or a versioned server tool type",
                ))
            }
        }
        only(
            tool,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
            ],
            &path,
        )?;
        let name = string_field(tool, "name", &path)?;
        let valid = (1..=128).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(problem(
                &at(&path, "name"),
                "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
            ));
        }
        if let Some(description) = tool.get("description") {
            string(description, &at(&path, "description"))?;
        }
        let schema_path = at(&path, "input_schema");
        let schema = object(
            tool.get("input_schema")
                .ok_or_else(|| required(&schema_path))?,
            &schema_path,
        )?;
        match schema.get("type") {
            Some(Value::String(kind)) if kind == "object" => {}
            Some(_) => {
                return Err(problem(
                    &at(&schema_path, "type"),
                    "Input should be 'object'",
                ))
            }
            None => return Err(required(&at(&schema_path, "type"))),
        }
        if names.contains(&name) {
            return Err(problem("tools", "Tool names must be unique."));
        }
        names.push(name);
    }
    Ok(names)
}

/// `name_YYYYMMDD`.
fn is_server_tool(kind: &str) -> bool {
    kind.rsplit_once('_').is_some_and(|(name, date)| {
        !name.is_empty() && date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `tool_choice`: `{type: auto|any|none}` or `{type: tool, name}` naming one of `tools`.
pub(super) fn check_tool_choice<'a>(choice: &'a Value, tools: &[&str]) -> Check<Choice<'a>> {
    let choice = object(choice, "tool_choice")?;
    let kind = string_field(choice, "type", "tool_choice")?;
    let path = at("tool_choice", kind);
    match kind {
        "auto" | "any" => only(choice, &["type", "disable_parallel_tool_use"], &path)?,
        "none" => only(choice, &["type"], &path)?,
        "tool" => only(
            choice,
            &["type", "name", "disable_parallel_tool_use"],
            &path,
        )?,
        other => {
            return Err(problem(
                "tool_choice",
                &format!(
                    "Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', \
                     'any', 'tool', 'none'"
                ),
            ))
        }
    }
    match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Bool(_)) => {}
        Some(_) => {
            return Err(problem(
                &at(&path, "disable_parallel_tool_use"),
                "Input should be a valid boolean",
            ))
        }
    }
    if kind != "tool" {
        return Ok((kind, None));
    }
    let name = string_field(choice, "name", &path)?;
    if !tools.contains(&name) {
        return Err(problem(
            "tool_choice.name",
            &format!("Tool '{name}' not found in tools"),
        ));
    }
    Ok((kind, Some(name)))
}
