//! OpenAI chat completion request → Gemini `generateContent` request: parameters, tools and
//! tool choice (the `messages` array is `messages.rs`, the output body `wire.rs`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::messages::conversation;
use super::schema;
use super::wire::{
    FunctionCallingConfig, FunctionDeclaration, GenerateContentRequest, GenerationConfig,
    ToolConfig, Tools,
};
use super::PROVIDER;
use crate::error::{truncate, ApiError};
pub(super) use crate::providers::chat::invalid;
use crate::providers::chat::messages::no_turns;
use crate::providers::chat::refuse::{refuse_unsupported, Refusals, Refused};
pub(super) use crate::providers::chat::request::decode;
use crate::providers::chat::request::{number, to_body, ChatRequest};
use crate::providers::chat::tools::{
    self, parse_tool_choice, tools_required, ToolChoice as Choice,
};

/// What Gemini cannot honour (it takes `n`, penalties and JSON response formats).
const REFUSALS: Refusals = Refusals(&[
    Refused::Logprobs,
    Refused::AudioOutput,
    Refused::LogitBias,
    Refused::Prediction,
    Refused::ReasoningEffort,
    Refused::WebSearch,
    Refused::LegacyFunctions,
]);

/// Translates an OpenAI chat completion body into a `generateContent` body. See the module
/// docs of [`super`] for what is translated, refused and ignored.
pub fn build_chat(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let chat = ChatRequest::parse(body)?;
    refuse_unsupported(&chat, PROVIDER, REFUSALS)?;
    let (system, contents) = conversation(chat.messages()?)?;
    if contents.is_empty() {
        return Err(no_turns());
    }
    let tools = tools::tools(chat.tools, PROVIDER, declaration)?;
    let tool_config = tool_choice(chat.tool_choice, !tools.is_empty())?;

    let config = generation_config(&chat)?;

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
    to_body(&request)
}

/// `generationConfig`: the sampling parameters, `n`, and the output format.
fn generation_config(chat: &ChatRequest<'_>) -> Result<GenerationConfig, ApiError> {
    let mut config = GenerationConfig {
        max_output_tokens: chat.max_tokens()?,
        ..GenerationConfig::default()
    };
    config.temperature = number(chat.temperature, "temperature", (0.0, 2.0), None)?;
    config.top_p = number(chat.top_p, "top_p", (0.0, 1.0), None)?;
    config.presence_penalty =
        number(chat.presence_penalty, "presence_penalty", (-2.0, 2.0), None)?.filter(|p| *p != 0.0);
    config.frequency_penalty = number(
        chat.frequency_penalty,
        "frequency_penalty",
        (-2.0, 2.0),
        None,
    )?
    .filter(|p| *p != 0.0);
    config.seed = decode::<i64>(chat.seed, "seed")?;
    config.stop_sequences = chat
        .stop()?
        .map(|sequences| sequences.into_iter().map(Cow::into_owned).collect());
    match decode::<u64>(chat.n, "n")? {
        Some(0) => return Err(invalid("n", "`n` must be at least 1")),
        Some(1) | None => {}
        Some(n) => config.candidate_count = Some(n),
    }
    if let Some(format) = decode::<ResponseFormat<'_>>(chat.response_format, "response_format")? {
        response_format(&mut config, format)?;
    }
    Ok(config)
}

/// `response_format` → `responseMimeType` (and `responseSchema`).
fn response_format(
    config: &mut GenerationConfig,
    format: ResponseFormat<'_>,
) -> Result<(), ApiError> {
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

/// A function tool → a `functionDeclaration`, its parameters schema cut down to Gemini's
/// `Schema` (left out when it is an empty object).
fn declaration(
    i: usize,
    tool: tools::FunctionTool<'_>,
) -> Result<FunctionDeclaration<'_>, ApiError> {
    let parameters = match decode::<Value>(tool.parameters, "tools")? {
        None => None,
        Some(schema) => {
            let sanitized = schema::sanitize(&schema).map_err(|keyword| {
                invalid(
                    "tools",
                    &format!(
                        "tools[{i}] (`{}`): the parameters schema uses `{keyword}`, which Gemini cannot express; inline the definitions",
                        truncate(&tool.name, 64)
                    ),
                )
            })?;
            (!schema::is_empty_object(&sanitized)).then_some(sanitized)
        }
    };
    Ok(FunctionDeclaration {
        name: tool.name,
        description: tool.description,
        parameters,
    })
}

/// `tool_choice` → `functionCallingConfig` (`auto` → `AUTO`, `none` → `NONE`, `required` →
/// `ANY`, a named function → `ANY` limited to it).
fn tool_choice(
    raw: Option<&RawValue>,
    has_tools: bool,
) -> Result<Option<ToolConfig<'_>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let (mode, name) = match parse_tool_choice(raw)? {
        Choice::None if !has_tools => return Ok(None),
        _ if !has_tools => return Err(tools_required()),
        Choice::Auto => ("AUTO", None),
        Choice::None => ("NONE", None),
        Choice::Required => ("ANY", None),
        Choice::Function(name) => ("ANY", Some(name)),
    };
    Ok(Some(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: name.map(|name| [name]),
        },
    }))
}
