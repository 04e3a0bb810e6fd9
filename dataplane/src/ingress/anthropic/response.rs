//! OpenAI `chat.completion` → Anthropic `message`.

use serde_json::{json, Map, Value};

/// The Messages answer for an OpenAI chat completion (`None`: not a chat completion).
pub fn from_openai(body: &[u8], alias: &str, request_id: &str) -> Option<Vec<u8>> {
    let completion: Value = serde_json::from_slice(body).ok()?;
    let choice = completion.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let mut content = Vec::new();
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(refusal) = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": refusal}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function");
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or(""),
            "input": tool_input(arguments),
        }));
    }
    let stop_reason = stop_reason(choice.get("finish_reason").and_then(Value::as_str));
    let usage = completion
        .get("usage")
        .map(usage)
        .unwrap_or_else(|| usage(&Value::Null));
    let answer = json!({
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": alias,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": Value::Null,
        "usage": usage,
    });
    serde_json::to_vec(&answer).ok()
}

/// A tool call's `arguments` as the `input` object (a non-object is wrapped, never lost).
pub(super) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(other) => json!({ "value": other }),
        Err(_) => json!({ "arguments": arguments }),
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub(super) fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI `usage` → Anthropic `usage` (cached prompt tokens are cache reads; Anthropic
/// counts them apart from `input_tokens`).
pub(super) fn usage(usage: &Value) -> Value {
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = count(usage.get("prompt_tokens"));
    let cached = count(
        usage
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens")),
    );
    let mut out = Map::new();
    out.insert("input_tokens".into(), json!(prompt.saturating_sub(cached)));
    out.insert(
        "output_tokens".into(),
        json!(count(usage.get("completion_tokens"))),
    );
    out.insert("cache_read_input_tokens".into(), json!(cached));
    out.insert("cache_creation_input_tokens".into(), json!(0));
    Value::Object(out)
}

/// `msg_<request id>`.
pub(super) fn message_id(request_id: &str) -> String {
    format!("msg_{}", request_id.replace('-', ""))
}
