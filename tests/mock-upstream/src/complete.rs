//! The OpenAI-shaped operations shared by the OpenAI and Azure OpenAI routes: the body checks
//! of chat completions (tools included), completions and embeddings, and their answers (whole,
//! in timed pieces or streamed).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Map, Value};

use crate::behaviour::Behaviour;
use crate::handler::Reply;
use crate::openai::{self, tools, Answer, Dialect, Flavour, StreamEvents, ToolUse, Usage};
use crate::stream;
use crate::Shared;

/// One chat completion or completion request, its body already parsed.
pub(crate) struct Call<'a> {
    pub shared: &'a Shared,
    pub request: &'a Map<String, Value>,
    pub behaviour: &'a Behaviour,
    /// The model named in the answer (Azure: the deployment).
    pub model: &'a str,
    pub dialect: Dialect,
    pub seq: u64,
}

/// Validates `messages` / `prompt` and counts the prompt's tokens.
pub(crate) fn prompt_tokens(request: &Map<String, Value>, flavour: Flavour) -> Result<u64, Reply> {
    match flavour {
        Flavour::Chat => match request.get("messages") {
            Some(Value::Array(messages)) if !messages.is_empty() => Ok(openai::chat_prompt_tokens(messages)),
            Some(Value::Array(_)) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("messages"),
                Some("empty_array"),
            )),
            Some(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid type for 'messages': expected an array of objects.",
                Some("messages"),
                Some("invalid_type"),
            )),
            None => Err(missing("messages")),
        },
        Flavour::Completion => match request.get("prompt") {
            Some(prompt @ (Value::String(_) | Value::Array(_))) => Ok(openai::input_tokens(prompt)),
            Some(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid type for 'prompt': expected a string or an array.",
                Some("prompt"),
                Some("invalid_type"),
            )),
            None => Err(missing("prompt")),
        },
    }
}

pub(crate) fn missing(param: &str) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// Number of embedding inputs: a string, an array of strings, a token array or an array of
/// token arrays.
fn embedding_items(input: &Value) -> Option<usize> {
    let is_token = |v: &Value| v.as_u64().is_some();
    match input {
        Value::String(_) => Some(1),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_string) => Some(items.len()),
        Value::Array(items) if items.iter().all(is_token) => Some(1),
        Value::Array(items) => items
            .iter()
            .all(|item| {
                item.as_array()
                    .is_some_and(|tokens| !tokens.is_empty() && tokens.iter().all(is_token))
            })
            .then_some(items.len()),
        _ => None,
    }
}

pub(crate) fn embeddings(request: &Map<String, Value>, model: &str) -> Reply {
    let Some(input) = request.get("input") else {
        return missing("input");
    };
    let Some(items) = embedding_items(input) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "Invalid 'input': expected a non-empty string, an array of strings or an array of token arrays.",
            Some("input"),
            Some("invalid_value"),
        );
    };
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    Reply::ok(openai::embeddings(
        model,
        items,
        base64,
        openai::input_tokens(input),
    ))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks `messages` / `prompt`, then answers (the scripted failures were played already).
pub(crate) fn completion(call: &Call<'_>, flavour: Flavour) -> Reply {
    let prompt_tokens = match prompt_tokens(call.request, flavour) {
        Ok(tokens) => tokens,
        Err(reply) => return reply,
    };
    let tool_call = match flavour {
        Flavour::Chat => match tools::check(call.request) {
            Ok(tool_call) => tool_call,
            Err(reply) => return reply,
        },
        Flavour::Completion => None,
    };
    let behaviour = call.behaviour;
    let n = behaviour
        .chunks
        .unwrap_or(call.shared.config.default_chunks);
    let mut chunks = openai::chunks(n);
    let tool_id = format!("call_mock_{}", call.seq);
    let (finish_reason, tool) = if behaviour.content_filter_completion {
        // Cut short: the first half of the answer.
        chunks.truncate(n / 2);
        ("content_filter", None)
    } else if let Some(tool_call) = &tool_call {
        chunks.clear();
        let tool = ToolUse {
            id: &tool_id,
            name: &tool_call.name,
        };
        ("tool_calls", Some(tool))
    } else {
        ("stop", None)
    };
    let completion_tokens = if tool.is_some() {
        tools::TOKENS
    } else {
        chunks.len() as u64
    };
    let id = match flavour {
        Flavour::Chat => format!("chatcmpl-mock-{}", call.seq),
        Flavour::Completion => format!("cmpl-mock-{}", call.seq),
    };
    let answer = Answer {
        id: &id,
        created: unix_now(),
        model: call.model,
        chunks: &chunks,
        tool,
        usage: Usage {
            prompt: prompt_tokens,
            completion: completion_tokens,
        },
        finish_reason,
        dialect: call.dialect,
    };
    if call.request.get("stream") != Some(&Value::Bool(true)) {
        let body = if behaviour.malformed {
            "{not json".to_owned()
        } else {
            match flavour {
                Flavour::Chat => openai::chat_completion(&answer),
                Flavour::Completion => openai::text_completion(&answer),
            }
        };
        return json_answer(body, n, behaviour);
    }
    let asked_usage = call
        .request
        .get("stream_options")
        .and_then(|options| options.get("include_usage"))
        .is_some_and(|v| v == &Value::Bool(true));
    let events = StreamEvents {
        answer,
        flavour,
        include_usage: asked_usage && !behaviour.no_usage,
    };
    Reply::Stream(stream::start(&events, behaviour))
}

/// A 200 JSON answer: whole, or in `pieces` timed pieces (`chunk-delay`, `cut-after`).
pub(crate) fn json_answer(body: String, pieces: usize, behaviour: &Behaviour) -> Reply {
    if behaviour.chunk_delay.is_zero() && behaviour.cut_after.is_none() {
        return Reply::ok(body);
    }
    let length = body.len();
    Reply::JsonPieces {
        length,
        rx: stream::start_pieces(Bytes::from(body), pieces, behaviour),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_inputs() {
        use serde_json::json;
        assert_eq!(embedding_items(&json!("a")), Some(1));
        assert_eq!(embedding_items(&json!(["a", "b"])), Some(2));
        assert_eq!(embedding_items(&json!([1, 2, 3])), Some(1));
        assert_eq!(embedding_items(&json!([[1], [2, 3]])), Some(2));
        assert_eq!(embedding_items(&json!([])), None);
        assert_eq!(embedding_items(&json!([[]])), None);
        assert_eq!(embedding_items(&json!(["a", 1])), None);
        assert_eq!(embedding_items(&json!(7)), None);
    }
}
