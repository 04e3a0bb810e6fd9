//! Tool calling on the OpenAI-shaped routes (OpenAI, Azure OpenAI, TGI's OpenAI route):
//! `tools` and `tool_choice` checked as OpenAI checks them, every `tool` message paired with
//! a call of the assistant message before it (and every call answered), and the decision to
//! call a tool.
//!
//! A tool is called when `tool_choice` forces one (`required`, or a named function), or when
//! it is `auto` (or absent) and the conversation ends with a user message mentioning the
//! weather. The call's arguments are always `{"location":"Paris"}`.

use hyper::StatusCode;
use serde_json::{Map, Value};

use crate::handler::Reply;

/// The arguments of every call, as streamed (concatenated: [`ARGUMENTS`]).
pub(crate) const ARGUMENT_PIECES: [&str; 3] = [r#"{"loc"#, r#"ation":"Pa"#, r#"ris"}"#];
/// The arguments of every call.
pub(crate) const ARGUMENTS: &str = r#"{"location":"Paris"}"#;
/// Completion tokens of one call.
pub(crate) const TOKENS: u64 = 3;

/// The call the answer makes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub name: String,
}

fn invalid(message: &str, param: &str, code: Option<&str>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, message, Some(param), code)
}

/// Checks the pairing of tool messages, `tools` and `tool_choice`, then decides whether the
/// answer calls a tool. `messages` has been checked to be a non-empty array.
pub(crate) fn check(request: &Map<String, Value>) -> Result<Option<ToolCall>, Reply> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    check_pairing(messages)?;
    let names = tool_names(request.get("tools"))?;
    let choice = request.get("tool_choice");
    if names.is_empty() {
        return match choice {
            Some(_) => Err(invalid(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                "tool_choice",
                None,
            )),
            None => Ok(None),
        };
    }
    let first = names[0].clone();
    match choice {
        None => Ok(asks_about_weather(messages).then_some(ToolCall { name: first })),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => Ok(None),
            "required" => Ok(Some(ToolCall { name: first })),
            "auto" => Ok(asks_about_weather(messages).then_some(ToolCall { name: first })),
            other => Err(invalid(
                &format!("Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."),
                "tool_choice",
                Some("invalid_value"),
            )),
        },
        Some(Value::Object(named)) => {
            let name = named
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (named.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) if names.iter().any(|n| n == name) => {
                    Ok(Some(ToolCall {
                        name: name.to_owned(),
                    }))
                }
                (Some("function"), Some(name)) => Err(invalid(
                    &format!("Invalid value for 'tool_choice': tool '{name}' is not among the specified 'tools'."),
                    "tool_choice",
                    None,
                )),
                _ => Err(invalid(
                    "Invalid 'tool_choice': expected an object with 'type': 'function' and 'function': {'name': ...}.",
                    "tool_choice",
                    Some("invalid_value"),
                )),
            }
        }
        Some(_) => Err(invalid(
            "Invalid type for 'tool_choice': expected a string or an object.",
            "tool_choice",
            Some("invalid_type"),
        )),
    }
}

/// The function names of `tools`, in order; every tool must be `{"type":"function",
/// "function":{"name":…}}` with a name of letters, digits, `_` and `-` (at most 64).
fn tool_names(tools: Option<&Value>) -> Result<Vec<String>, Reply> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) if tools.is_empty() => {
            return Err(invalid(
                "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                "tools",
                Some("empty_array"),
            ))
        }
        Some(Value::Array(tools)) => tools,
        Some(_) => {
            return Err(invalid(
                "Invalid type for 'tools': expected an array of objects.",
                "tools",
                Some("invalid_type"),
            ))
        }
    };
    let mut names = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(invalid(
                    &format!(
                        "Invalid value: '{other}'. Supported values are: 'function' and 'custom'."
                    ),
                    &format!("tools[{i}].type"),
                    Some("invalid_value"),
                ))
            }
            None => {
                return Err(invalid(
                    &format!("Missing required parameter: 'tools[{i}].type'."),
                    &format!("tools[{i}].type"),
                    Some("missing_required_parameter"),
                ))
            }
        }
        let Some(name) = tool
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        else {
            return Err(invalid(
                &format!("Missing required parameter: 'tools[{i}].function.name'."),
                &format!("tools[{i}].function.name"),
                Some("missing_required_parameter"),
            ));
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(invalid(
                &format!("Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."),
                &format!("tools[{i}].function.name"),
                Some("invalid_value"),
            ));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Every `tool` message answers a call of the assistant message before the run of tool
/// messages it is in, and every call is answered before the next other message.
fn check_pairing(messages: &[Value]) -> Result<(), Reply> {
    fn role(message: &Value) -> &str {
        message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    // The calls of the last assistant message still waiting for an answer.
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (i, message) in messages.iter().enumerate() {
        if role(message) == "tool" {
            let id = message.get("tool_call_id").and_then(Value::as_str);
            let answered = open.as_mut().and_then(|(_, ids)| {
                let at = ids.iter().position(|open| Some(*open) == id)?;
                Some(ids.remove(at))
            });
            if answered.is_none() {
                return Err(invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                    &format!("messages.[{i}].role"),
                    None,
                ));
            }
            continue;
        }
        if let Some((at, ids)) = open.take() {
            if !ids.is_empty() {
                return Err(unanswered(at, &ids));
            }
        }
        if role(message) == "assistant" {
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                let ids = calls
                    .iter()
                    .filter_map(|call| call.get("id").and_then(Value::as_str))
                    .collect();
                open = Some((i, ids));
            }
        }
    }
    match open {
        Some((at, ids)) if !ids.is_empty() => Err(unanswered(at, &ids)),
        _ => Ok(()),
    }
}

fn unanswered(at: usize, ids: &[&str]) -> Reply {
    invalid(
        &format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            ids.join(", ")
        ),
        &format!("messages.[{at}].role"),
        None,
    )
}

/// The conversation ends with a user message whose text mentions the weather.
fn asks_about_weather(messages: &[Value]) -> bool {
    let Some(last) = messages.last() else {
        return false;
    };
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return false;
    }
    let text = match last.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    text.to_lowercase().contains("weather")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decide(request: Value) -> Result<Option<String>, String> {
        let Value::Object(request) = request else {
            unreachable!("a test request is an object")
        };
        check(&request)
            .map(|call| call.map(|c| c.name))
            .map_err(|reply| match reply {
                Reply::Json { body, .. } => body,
                _ => "not a JSON reply".to_owned(),
            })
    }

    fn weather() -> Value {
        json!([{"role": "user", "content": "What is the weather in Paris?"}])
    }

    fn tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "function", "function": {"name": "get_time"}}
        ])
    }

    #[test]
    fn calls_a_tool_when_forced_or_asked_about_the_weather() {
        let hello = json!([{"role": "user", "content": "hello"}]);
        assert_eq!(
            decide(json!({"messages": weather(), "tools": tools()})),
            Ok(Some("get_weather".into()))
        );
        assert_eq!(
            decide(json!({"messages": hello, "tools": tools()})),
            Ok(None)
        );
        assert_eq!(
            decide(json!({"messages": hello, "tools": tools(), "tool_choice": "required"})),
            Ok(Some("get_weather".into()))
        );
        assert_eq!(
            decide(
                json!({"messages": hello, "tools": tools(), "tool_choice": {"type": "function", "function": {"name": "get_time"}}})
            ),
            Ok(Some("get_time".into()))
        );
        assert_eq!(
            decide(json!({"messages": weather(), "tools": tools(), "tool_choice": "none"})),
            Ok(None)
        );
        assert_eq!(decide(json!({"messages": weather()})), Ok(None));
    }

    #[test]
    fn refuses_what_openai_refuses() {
        for (request, expected) in [
            (
                json!({"messages": weather(), "tool_choice": "auto"}),
                "only allowed when 'tools'",
            ),
            (json!({"messages": weather(), "tools": []}), "empty_array"),
            (
                json!({"messages": weather(), "tools": [{"type": "retrieval"}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": weather(), "tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "does not match pattern",
            ),
            (
                json!({"messages": weather(), "tools": tools(), "tool_choice": "sometimes"}),
                "Supported values",
            ),
            (
                json!({"messages": weather(), "tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
                "not among",
            ),
        ] {
            let error = decide(request).expect_err("refused");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn tool_messages_answer_the_calls_before_them() {
        let call = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ]});
        let answer = json!({"role": "tool", "tool_call_id": "call_1", "content": "Sunny"});
        let stray = json!({"role": "tool", "tool_call_id": "call_9", "content": "Sunny"});
        let user = json!({"role": "user", "content": "What is the weather?"});
        let ok = json!([user, call, answer]);
        assert_eq!(decide(json!({"messages": ok, "tools": tools()})), Ok(None));
        let error = decide(json!({"messages": [user, call, stray], "tools": tools()})).unwrap_err();
        assert!(
            error.contains("messages.[2].role") && error.contains("preceeding"),
            "{error}"
        );
        let error = decide(json!({"messages": [user, call, user], "tools": tools()})).unwrap_err();
        assert!(
            error.contains("call_1") && error.contains("messages.[1].role"),
            "{error}"
        );
        let error = decide(json!({"messages": [user, answer], "tools": tools()})).unwrap_err();
        assert!(error.contains("messages.[1].role"), "{error}");
    }
}
