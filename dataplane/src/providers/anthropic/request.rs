//! OpenAI chat completion request → Anthropic Messages request: the parameters, tools and
//! tool choice (the `messages` array is `messages.rs`, the output body `wire.rs`; the OpenAI
//! side is read by `crate::providers::chat`).
//!
//! The body is read into borrowed typed structs (strings without escapes, such as base64
//! image data, are not copied) and the Messages body is serialized from borrowed output
//! structs; tool schemas pass through as raw JSON. Every refusal names the parameter.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::messages::conversation;
use super::wire::{MessagesRequest, Metadata, Tool, ToolChoice};
use super::PROVIDER;
use super::{AnthropicDefaults, AnthropicRequest, MESSAGES_PATH};
use crate::error::ApiError;
use crate::providers::chat::json::JsonObject;
use crate::providers::chat::messages::no_turns;
use crate::providers::chat::refuse::{refuse_unsupported, Refusals};
use crate::providers::chat::request::{decode, number, to_body, ChatRequest};
use crate::providers::chat::tools::{self, ToolChoice as Choice};

/// Translates an OpenAI chat completion body for `provider_model`. See the module docs for
/// what is translated, refused and ignored.
pub fn build_request(
    body: &[u8],
    provider_model: &str,
    defaults: &AnthropicDefaults,
) -> Result<AnthropicRequest, ApiError> {
    let chat = ChatRequest::parse(body)?;
    refuse_unsupported(&chat, PROVIDER, Refusals::ALL)?;
    let (system, turns) = conversation(chat.messages()?)?;
    if turns.is_empty() {
        return Err(no_turns());
    }
    let tools = tools::tools(chat.tools, PROVIDER, |_, tool| {
        Ok(Tool {
            name: tool.name,
            description: tool.description,
            input_schema: JsonObject::schema(tool.parameters),
        })
    })?;
    let tools = (!tools.is_empty()).then_some(tools);
    let parallel: Option<bool> = decode(chat.parallel_tool_calls, "parallel_tool_calls")?;
    let tool_choice = tool_choice(chat.tool_choice, tools.is_some(), parallel == Some(false))?;

    let max_tokens = chat.max_tokens()?;
    let temperature = number(chat.temperature, "temperature", (0.0, 1.0), Some(PROVIDER))?;
    let top_p = number(chat.top_p, "top_p", (0.0, 1.0), Some(PROVIDER))?;
    let stop_sequences = chat.stop()?;
    let stream: Option<bool> = decode(chat.stream, "stream")?;
    let user: Option<Cow<'_, str>> = match decode(chat.safety_identifier, "safety_identifier")? {
        Some(id) => Some(id),
        None => decode(chat.user, "user")?,
    };

    let request = MessagesRequest {
        model: provider_model,
        max_tokens: max_tokens.unwrap_or(defaults.max_tokens),
        system,
        messages: turns,
        stop_sequences,
        temperature,
        top_p,
        stream: stream.unwrap_or(false),
        metadata: user.map(|user_id| Metadata { user_id }),
        tools,
        tool_choice,
    };
    let body = to_body(&request)?;
    let mut headers = vec![("anthropic-version", defaults.version.clone())];
    if let Some(beta) = &defaults.beta {
        headers.push(("anthropic-beta", beta.clone()));
    }
    Ok(AnthropicRequest {
        path: MESSAGES_PATH,
        headers,
        body,
    })
}

/// Anthropic's `tool_choice`: left out when it is the default (`auto`, parallel calls
/// allowed); `parallel_tool_calls: false` becomes `disable_parallel_tool_use`.
fn tool_choice<'a>(
    raw: Option<&'a RawValue>,
    has_tools: bool,
    no_parallel: bool,
) -> Result<Option<ToolChoice<'a>>, ApiError> {
    let choice = tools::tool_choice(raw, has_tools)?;
    if !has_tools {
        return Ok(None);
    }
    let mut choice = match choice {
        None if !no_parallel => return Ok(None), // Anthropic's default is `auto` too.
        None | Some(Choice::Auto) => ToolChoice::new("auto", None),
        Some(Choice::Required) => ToolChoice::new("any", None),
        Some(Choice::None) => return Ok(Some(ToolChoice::new("none", None))),
        Some(Choice::Function(name)) => ToolChoice::new("tool", Some(name)),
    };
    choice.disable_parallel_tool_use = no_parallel;
    Ok(Some(choice))
}
