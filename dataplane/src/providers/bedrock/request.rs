//! OpenAI chat completion request → Converse request: the parameters, tools and tool
//! choice (the `messages` array is `messages.rs`, the output body `wire.rs`; the OpenAI side
//! is read by `crate::providers::chat`).
//!
//! The body is read into borrowed typed structs and the Converse body is serialized from
//! borrowed output structs; tool schemas pass through as raw JSON. Every refusal names the
//! parameter.

use omg_shared::bedrock::BedrockSettings;
use serde_json::value::RawValue;

use super::messages::conversation;
use super::wire::{
    ConverseRequest, InferenceConfig, InputSchema, NamedTool, Tool, ToolChoice, ToolConfig,
    ToolSpec,
};
use super::PROVIDER;
use crate::error::ApiError;
pub(super) use crate::providers::chat::invalid;
use crate::providers::chat::json::{EmptyObject, JsonObject};
use crate::providers::chat::messages::no_turns;
use crate::providers::chat::refuse::{refuse_unsupported, Refusals};
pub(super) use crate::providers::chat::request::decode;
use crate::providers::chat::request::{number, to_body, ChatRequest};
use crate::providers::chat::tools::{self, ToolChoice as Choice};

/// Translates an OpenAI chat completion body into a Converse (or ConverseStream) body. See
/// the module docs of [`super`] for what is translated, refused and ignored.
pub fn build_converse(body: &[u8], settings: &BedrockSettings) -> Result<Vec<u8>, ApiError> {
    let chat = ChatRequest::parse(body)?;
    refuse_unsupported(&chat, PROVIDER, Refusals::ALL)?;
    let conversation = conversation(chat.messages()?)?;
    if conversation.turns.is_empty() {
        return Err(no_turns());
    }
    let tools = tools::tools(chat.tools, PROVIDER, |_, tool| {
        Ok(Tool {
            tool_spec: ToolSpec {
                name: tool.name,
                description: tool.description.filter(|d| !d.is_empty()),
                input_schema: InputSchema {
                    json: JsonObject::schema(tool.parameters),
                },
            },
        })
    })?;
    let tool_config = tool_config(chat.tool_choice, tools, conversation.has_tool_blocks)?;

    let max_tokens = chat.max_tokens()?;
    let request = ConverseRequest {
        messages: conversation.turns,
        system: conversation.system,
        inference_config: InferenceConfig {
            max_tokens: max_tokens.or(settings.default_max_tokens),
            temperature: number(chat.temperature, "temperature", (0.0, 1.0), Some(PROVIDER))?,
            top_p: number(chat.top_p, "top_p", (0.0, 1.0), Some(PROVIDER))?,
            stop_sequences: chat.stop()?,
        },
        tool_config,
    };
    to_body(&request)
}

/// `toolConfig` from `tools` and `tool_choice`. Converse has no `none` choice: with it the
/// tools are left out, which Converse allows only when no turn holds a tool call or result.
fn tool_config<'a>(
    raw: Option<&'a RawValue>,
    tools: Vec<Tool<'a>>,
    has_tool_blocks: bool,
) -> Result<Option<ToolConfig<'a>>, ApiError> {
    if tools.is_empty() && has_tool_blocks {
        return Err(invalid(
            "tools",
            "`tools` must be given when the conversation holds tool calls or results (Bedrock \
             requires the tool definitions)",
        ));
    }
    let choice = tools::tool_choice(raw, !tools.is_empty())?;
    if tools.is_empty() {
        return Ok(None);
    }
    let tool_choice = match choice {
        None => None,
        Some(Choice::Auto) => Some(ToolChoice::Auto(EmptyObject {})),
        Some(Choice::Required) => Some(ToolChoice::Any(EmptyObject {})),
        Some(Choice::None) if has_tool_blocks => {
            return Err(invalid(
                "tool_choice",
                "`tool_choice: none` cannot be honoured for this model (Bedrock) once the \
                 conversation holds tool calls; use `auto`",
            ))
        }
        Some(Choice::None) => return Ok(None),
        Some(Choice::Function(name)) => Some(ToolChoice::Tool(NamedTool { name })),
    };
    Ok(Some(ToolConfig { tools, tool_choice }))
}
