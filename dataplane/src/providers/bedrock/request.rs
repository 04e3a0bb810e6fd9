//! OpenAI chat completion request → Converse request: the parameters, tools and tool
//! choice (the `messages` array is `messages.rs`, the output body `wire.rs`).
//!
//! The body is read into borrowed typed structs and the Converse body is serialized from
//! borrowed output structs; tool schemas pass through as raw JSON. Every refusal names the
//! parameter.

use std::borrow::Cow;

use omg_shared::bedrock::BedrockSettings;
use omg_shared::error::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::messages::{conversation, Message};
use super::wire::{
    ConverseRequest, EmptyObject, EmptySchema, InferenceConfig, InputSchema, Json, NamedTool, Tool,
    ToolChoice, ToolConfig, ToolSpec,
};
use crate::error::{truncate, ApiError};

/// Translates an OpenAI chat completion body into a Converse (or ConverseStream) body. See
/// the module docs of [`super`] for what is translated, refused and ignored.
pub fn build_converse(body: &[u8], settings: &BedrockSettings) -> Result<Vec<u8>, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "The request body must be a JSON object.",
        ));
    }
    let chat: Chat<'_> = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("We could not parse the JSON body of your request ({error})."),
        )
    })?;
    refuse_unsupported(&chat)?;
    let messages: Vec<Message<'_>> = decode(chat.messages, "messages")?
        .ok_or_else(|| missing("messages", "you must provide a `messages` array"))?;
    let conversation = conversation(messages)?;
    if conversation.turns.is_empty() {
        return Err(invalid(
            "messages",
            "`messages` must contain at least one user or assistant message",
        ));
    }
    let tools = tools(chat.tools)?;
    let tool_config = tool_config(chat.tool_choice, tools, conversation.has_tool_blocks)?;

    let mut max_tokens = None;
    for (raw, param) in [
        (chat.max_completion_tokens, "max_completion_tokens"),
        (chat.max_tokens, "max_tokens"),
    ] {
        match decode::<u64>(raw, param) {
            Ok(Some(0)) | Err(_) => {
                return Err(invalid(
                    param,
                    &format!("`{param}` must be a positive integer"),
                ))
            }
            Ok(value) => max_tokens = max_tokens.or(value),
        }
    }
    let request = ConverseRequest {
        messages: conversation.turns,
        system: conversation.system,
        inference_config: InferenceConfig {
            max_tokens: max_tokens.or(settings.default_max_tokens),
            temperature: number(chat.temperature, "temperature", 0.0, 1.0)?,
            top_p: number(chat.top_p, "top_p", 0.0, 1.0)?,
            stop_sequences: stop(chat.stop)?,
        },
        tool_config,
    };
    serde_json::to_vec(&request).map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
    })
}

/// The top-level fields read, each kept raw until decoded (so errors name the parameter).
#[derive(Deserialize)]
struct Chat<'a> {
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stop: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    n: Option<&'a RawValue>,
    #[serde(borrow, default)]
    logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    audio: Option<&'a RawValue>,
    #[serde(borrow, default)]
    modalities: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence_penalty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    frequency_penalty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    logit_bias: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prediction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_effort: Option<&'a RawValue>,
    #[serde(borrow, default)]
    web_search_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    functions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    function_call: Option<&'a RawValue>,
}

/// Refuses parameters whose meaning Converse cannot honour (no-op values are accepted).
fn refuse_unsupported(chat: &Chat<'_>) -> Result<(), ApiError> {
    let unsupported = |param: &'static str, what: &str| {
        Err(invalid(
            param,
            &format!("{what} is not supported for this model (Bedrock)."),
        ))
    };
    if decode::<u64>(chat.n, "n")?.is_some_and(|n| n != 1) {
        return unsupported("n", "`n` other than 1");
    }
    if decode::<bool>(chat.logprobs, "logprobs")? == Some(true) {
        return unsupported("logprobs", "`logprobs`");
    }
    if chat.top_logprobs.is_some() {
        return unsupported("top_logprobs", "`top_logprobs`");
    }
    if let Some(format) = decode::<ResponseFormat<'_>>(chat.response_format, "response_format")? {
        if format.kind != "text" {
            return unsupported("response_format", "`response_format` other than `text`");
        }
    }
    if chat.audio.is_some() {
        return unsupported("audio", "Audio output");
    }
    if decode::<Vec<Cow<'_, str>>>(chat.modalities, "modalities")?
        .is_some_and(|modalities| modalities.iter().any(|m| m != "text"))
    {
        return unsupported("modalities", "Output modalities other than `text`");
    }
    for (raw, param) in [
        (chat.presence_penalty, "presence_penalty"),
        (chat.frequency_penalty, "frequency_penalty"),
    ] {
        if decode::<f64>(raw, param)?.is_some_and(|value| value != 0.0) {
            return unsupported(param, &format!("A non-zero `{param}`"));
        }
    }
    if decode::<serde_json::Map<String, serde_json::Value>>(chat.logit_bias, "logit_bias")?
        .is_some_and(|bias| !bias.is_empty())
    {
        return unsupported("logit_bias", "`logit_bias`");
    }
    for (raw, param, what) in [
        (chat.prediction, "prediction", "`prediction`"),
        (
            chat.reasoning_effort,
            "reasoning_effort",
            "`reasoning_effort`",
        ),
        (
            chat.web_search_options,
            "web_search_options",
            "`web_search_options`",
        ),
        (
            chat.functions,
            "functions",
            "The legacy `functions` (use `tools`)",
        ),
        (
            chat.function_call,
            "function_call",
            "The legacy `function_call` (use `tool_choice`)",
        ),
    ] {
        if raw.is_some() {
            return unsupported(param, what);
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

// --- tools ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct ToolDef<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    function: Option<FunctionDef<'a>>,
}

#[derive(Deserialize)]
struct FunctionDef<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
}

fn tools(raw: Option<&RawValue>) -> Result<Vec<Tool<'_>>, ApiError> {
    let Some(defs) = decode::<Vec<ToolDef<'_>>>(raw, "tools")? else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        let function = match (def.kind.as_ref(), def.function) {
            ("function", Some(function)) => function,
            ("function", None) => {
                return Err(invalid(
                    "tools",
                    &format!("tools[{i}]: `function` is required"),
                ))
            }
            (kind, _) => {
                return Err(invalid(
                    "tools",
                    &format!(
                        "tools[{i}]: tools of type `{}` are not supported for this model (Bedrock)",
                        truncate(kind, 32)
                    ),
                ))
            }
        };
        let schema = match function.parameters {
            Some(schema) if schema.get().starts_with('{') => Json::Borrowed(schema),
            Some(_) => {
                return Err(invalid(
                    "tools",
                    &format!("tools[{i}].function.parameters must be a JSON Schema object"),
                ))
            }
            None => Json::Schema(EmptySchema::default()),
        };
        tools.push(Tool {
            tool_spec: ToolSpec {
                name: function.name,
                description: function.description.filter(|d| !d.is_empty()),
                input_schema: InputSchema { json: schema },
            },
        });
    }
    Ok(tools)
}

#[derive(Deserialize)]
struct NamedChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    function: Option<NamedFunction<'a>>,
}

#[derive(Deserialize)]
struct NamedFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// `toolConfig` from `tools` and `tool_choice`. Converse has no `none` choice: with it the
/// tools are left out, which Converse allows only when no turn holds a tool call or result.
fn tool_config<'a>(
    raw: Option<&'a RawValue>,
    tools: Vec<Tool<'a>>,
    has_tool_blocks: bool,
) -> Result<Option<ToolConfig<'a>>, ApiError> {
    let none_with_history = || {
        invalid(
            "tool_choice",
            "`tool_choice: none` cannot be honoured for this model (Bedrock) once the \
             conversation holds tool calls; use `auto`",
        )
    };
    if tools.is_empty() && has_tool_blocks {
        return Err(invalid(
            "tools",
            "`tools` must be given when the conversation holds tool calls or results (Bedrock \
             requires the tool definitions)",
        ));
    }
    if tools.is_empty() {
        return match raw.map(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get())) {
            None => Ok(None),
            Some(Ok(mode)) if mode == "none" => Ok(None),
            Some(_) => Err(invalid(
                "tool_choice",
                "`tool_choice` is only allowed when `tools` are specified",
            )),
        };
    }
    let choice = match raw {
        None => None,
        Some(raw) if raw.get().starts_with('"') => {
            match decode::<Cow<'_, str>>(Some(raw), "tool_choice")?.as_deref() {
                Some("auto") => Some(ToolChoice::Auto(EmptyObject {})),
                Some("required") => Some(ToolChoice::Any(EmptyObject {})),
                Some("none") if has_tool_blocks => return Err(none_with_history()),
                Some("none") => return Ok(None),
                _ => {
                    return Err(invalid(
                        "tool_choice",
                        "`tool_choice` must be `auto`, `required`, `none` or a named function",
                    ))
                }
            }
        }
        Some(raw) => match decode::<NamedChoice<'_>>(Some(raw), "tool_choice")? {
            Some(NamedChoice {
                kind,
                function: Some(function),
            }) if kind == "function" => Some(ToolChoice::Tool(NamedTool {
                name: function.name,
            })),
            _ => {
                return Err(invalid(
                    "tool_choice",
                    "`tool_choice` objects must look like \
                     {\"type\": \"function\", \"function\": {\"name\": …}}",
                ))
            }
        },
    };
    Ok(Some(ToolConfig {
        tools,
        tool_choice: choice,
    }))
}

// --- scalars --------------------------------------------------------------------------

fn number(
    raw: Option<&RawValue>,
    param: &'static str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    let range =
        || format!("`{param}` must be a number between {min} and {max} for this model (Bedrock)");
    match decode::<Option<f64>>(raw, param) {
        Ok(Some(Some(value))) if !(min..=max).contains(&value) => Err(invalid(param, &range())),
        Ok(value) => Ok(value.flatten()),
        Err(_) => Err(invalid(param, &range())),
    }
}

fn stop(raw: Option<&RawValue>) -> Result<Option<Vec<Cow<'_, str>>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let sequences = match raw.get().as_bytes().first() {
        Some(b'"') => decode::<Cow<'_, str>>(Some(raw), "stop")?.map(|one| vec![one]),
        Some(b'n') => None,
        _ => decode::<Vec<Cow<'_, str>>>(Some(raw), "stop")?,
    };
    Ok(sequences.filter(|sequences| !sequences.is_empty()))
}

/// Decodes a raw parameter; `Err` names it.
pub(super) fn decode<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    param: &'static str,
) -> Result<Option<T>, ApiError> {
    raw.map(|raw| {
        serde_json::from_str::<T>(raw.get()).map_err(|error| {
            invalid(
                param,
                &format!("Invalid `{param}`: {}", truncate(&error.to_string(), 200)),
            )
        })
    })
    .transpose()
}

fn missing(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::MissingParameter, message.to_owned()).with_param(param)
}

pub(super) fn invalid(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message.to_owned()).with_param(param)
}
