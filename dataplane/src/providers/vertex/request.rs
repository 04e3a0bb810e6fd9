//! OpenAI chat completion request → Gemini `generateContent` request: parameters, tools and
//! tool choice (the `messages` array is `messages.rs`, the output body `wire.rs`).

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::messages::{conversation, Message};
use super::schema;
use super::wire::{
    FunctionCallingConfig, FunctionDeclaration, GenerateContentRequest, GenerationConfig,
    ToolConfig, Tools,
};
use crate::error::{truncate, ApiError};

/// Translates an OpenAI chat completion body into a `generateContent` body. See the module
/// docs of [`super`] for what is translated, refused and ignored.
pub fn build_chat(body: &[u8]) -> Result<Vec<u8>, ApiError> {
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
    let messages: Vec<Message<'_>> = decode(chat.messages, "messages")?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingParameter,
            "you must provide a `messages` array",
        )
        .with_param("messages")
    })?;
    let (system, contents) = conversation(messages)?;
    if contents.is_empty() {
        return Err(invalid(
            "messages",
            "`messages` must contain at least one user or assistant message",
        ));
    }
    let tools = tools(chat.tools)?;
    let tool_config = tool_choice(chat.tool_choice, !tools.is_empty())?;

    let mut config = GenerationConfig::default();
    for (raw, param) in [
        (chat.max_completion_tokens, "max_completion_tokens"),
        (chat.max_tokens, "max_tokens"),
    ] {
        match decode::<Option<u64>>(raw, param) {
            Ok(Some(Some(0))) | Err(_) => {
                return Err(invalid(
                    param,
                    &format!("`{param}` must be a positive integer"),
                ))
            }
            Ok(value) => config.max_output_tokens = config.max_output_tokens.or(value.flatten()),
        }
    }
    config.temperature = number(chat.temperature, "temperature", 0.0, 2.0)?;
    config.top_p = number(chat.top_p, "top_p", 0.0, 1.0)?;
    config.presence_penalty =
        number(chat.presence_penalty, "presence_penalty", -2.0, 2.0)?.filter(|p| *p != 0.0);
    config.frequency_penalty =
        number(chat.frequency_penalty, "frequency_penalty", -2.0, 2.0)?.filter(|p| *p != 0.0);
    config.seed = decode::<Option<i64>>(chat.seed, "seed")?.flatten();
    config.stop_sequences = stop(chat.stop)?;
    match decode::<Option<u64>>(chat.n, "n")?.flatten() {
        Some(0) => return Err(invalid("n", "`n` must be at least 1")),
        Some(1) | None => {}
        Some(n) => config.candidate_count = Some(n),
    }
    if let Some(format) =
        decode::<Option<ResponseFormat<'_>>>(chat.response_format, "response_format")?.flatten()
    {
        match format.kind.as_ref() {
            "text" => {}
            "json_object" => config.response_mime_type = Some("application/json"),
            "json_schema" => {
                config.response_mime_type = Some("application/json");
                let schema = format
                    .json_schema
                    .and_then(|s| s.schema)
                    .map(|s| schema::sanitize(&s))
                    .transpose()
                    .map_err(|keyword| {
                        invalid(
                            "response_format",
                            &format!("`response_format.json_schema.schema` uses `{keyword}`, which Gemini cannot express; inline the definitions"),
                        )
                    })?;
                config.response_schema = schema;
            }
            other => {
                return Err(invalid(
                    "response_format",
                    &format!(
                        "`response_format` type `{}` is not supported (use `text`, `json_object` or `json_schema`)",
                        truncate(other, 32)
                    ),
                ))
            }
        }
    }

    let request = GenerateContentRequest {
        contents,
        system_instruction: system,
        generation_config: config,
        tools: if tools.is_empty() {
            Vec::new()
        } else {
            vec![Tools {
                function_declarations: tools,
            }]
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
    n: Option<&'a RawValue>,
    #[serde(borrow, default)]
    seed: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence_penalty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    frequency_penalty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    audio: Option<&'a RawValue>,
    #[serde(borrow, default)]
    modalities: Option<&'a RawValue>,
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

/// Refuses parameters whose meaning Gemini's API cannot honour here (no-op values pass).
fn refuse_unsupported(chat: &Chat<'_>) -> Result<(), ApiError> {
    let unsupported = |param: &'static str, what: &str| {
        Err(invalid(
            param,
            &format!("{what} is not supported for this model (Gemini)."),
        ))
    };
    if decode::<Option<bool>>(chat.logprobs, "logprobs")?.flatten() == Some(true) {
        return unsupported("logprobs", "`logprobs`");
    }
    if chat.top_logprobs.is_some_and(|raw| raw.get() != "null") {
        return unsupported("top_logprobs", "`top_logprobs`");
    }
    if chat.audio.is_some_and(|raw| raw.get() != "null") {
        return unsupported("audio", "Audio output");
    }
    if decode::<Option<Vec<Cow<'_, str>>>>(chat.modalities, "modalities")?
        .flatten()
        .is_some_and(|modalities| modalities.iter().any(|m| m != "text"))
    {
        return unsupported("modalities", "Output modalities other than `text`");
    }
    if decode::<Option<serde_json::Map<String, Value>>>(chat.logit_bias, "logit_bias")?
        .flatten()
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
        if raw.is_some_and(|raw| raw.get() != "null") {
            return unsupported(param, what);
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    json_schema: Option<JsonSchema>,
}

#[derive(Deserialize)]
struct JsonSchema {
    #[serde(default)]
    schema: Option<Value>,
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
    #[serde(default)]
    parameters: Option<Value>,
}

fn tools(raw: Option<&RawValue>) -> Result<Vec<FunctionDeclaration<'_>>, ApiError> {
    let Some(defs) = decode::<Option<Vec<ToolDef<'_>>>>(raw, "tools")?.flatten() else {
        return Ok(Vec::new());
    };
    let mut declarations = Vec::with_capacity(defs.len());
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
                        "tools[{i}]: tools of type `{}` are not supported for this model (Gemini)",
                        truncate(kind, 32)
                    ),
                ))
            }
        };
        let parameters = match function.parameters {
            None | Some(Value::Null) => None,
            Some(schema @ Value::Object(_)) => {
                let sanitized = schema::sanitize(&schema).map_err(|keyword| {
                    invalid(
                        "tools",
                        &format!(
                            "tools[{i}] (`{}`): the parameters schema uses `{keyword}`, which Gemini cannot express; inline the definitions",
                            truncate(&function.name, 64)
                        ),
                    )
                })?;
                (!schema::is_empty_object(&sanitized)).then_some(sanitized)
            }
            Some(_) => {
                return Err(invalid(
                    "tools",
                    &format!("tools[{i}].function.parameters must be a JSON Schema object"),
                ))
            }
        };
        declarations.push(FunctionDeclaration {
            name: function.name,
            description: function.description,
            parameters,
        });
    }
    Ok(declarations)
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

/// `tool_choice` → `functionCallingConfig` (`auto` → `AUTO`, `none` → `NONE`, `required` →
/// `ANY`, a named function → `ANY` limited to it).
fn tool_choice(
    raw: Option<&RawValue>,
    has_tools: bool,
) -> Result<Option<ToolConfig<'_>>, ApiError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok(None);
    };
    let (mode, name) = if raw.get().starts_with('"') {
        match decode::<Cow<'_, str>>(Some(raw), "tool_choice")?.as_deref() {
            Some("auto") => ("AUTO", None),
            Some("none") => ("NONE", None),
            Some("required") => ("ANY", None),
            _ => {
                return Err(invalid(
                    "tool_choice",
                    "`tool_choice` must be `auto`, `required`, `none` or a named function",
                ))
            }
        }
    } else {
        match decode::<NamedChoice<'_>>(Some(raw), "tool_choice")? {
            Some(NamedChoice {
                kind,
                function: Some(function),
            }) if kind == "function" => ("ANY", Some(function.name)),
            _ => {
                return Err(invalid(
                    "tool_choice",
                    "`tool_choice` objects must look like {\"type\": \"function\", \"function\": {\"name\": …}}",
                ))
            }
        }
    };
    if !has_tools {
        return if mode == "NONE" {
            Ok(None)
        } else {
            Err(invalid(
                "tool_choice",
                "`tool_choice` is only allowed when `tools` are specified",
            ))
        };
    }
    Ok(Some(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: name.map(|name| [name]),
        },
    }))
}

// --- scalars --------------------------------------------------------------------------

fn number(
    raw: Option<&RawValue>,
    param: &'static str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    let range = || format!("`{param}` must be a number between {min} and {max}");
    match decode::<Option<f64>>(raw, param) {
        Ok(Some(Some(value))) if !(min..=max).contains(&value) => Err(invalid(param, &range())),
        Ok(value) => Ok(value.flatten()),
        Err(_) => Err(invalid(param, &range())),
    }
}

fn stop(raw: Option<&RawValue>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok(None);
    };
    let sequences = if raw.get().starts_with('"') {
        decode::<String>(Some(raw), "stop")?.map(|one| vec![one])
    } else {
        decode::<Vec<String>>(Some(raw), "stop")?
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

pub(super) fn invalid(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message.to_owned()).with_param(param)
}
