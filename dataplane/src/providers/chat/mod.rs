//! The OpenAI side of the translating chat adapters (`anthropic/`, `bedrock/`, `vertex/`),
//! written once: each adapter keeps only its provider's wire format and what it decides.
//!
//! - [`request`]: the chat request with borrowed raw fields, and the shared scalar readings
//!   (`max_tokens`, `stop`, ranged numbers).
//! - [`refuse`]: [`refuse::refuse_unsupported`], each provider passing what it cannot honour.
//! - [`messages`]: roles, content parts, images as `data:` URLs, assistant tool calls.
//! - [`tools`]: function tools and `tool_choice`.
//! - [`json`]: JSON objects passed through (schemas, arguments).
//! - [`response`]: the `chat.completion` body and `usage`.
//! - [`stream`]: `chat.completion.chunk` events, in-band errors and the end of a stream.
//! - [`error`]: provider messages passed on to clients.

pub(crate) mod error;
pub(crate) mod json;
pub(crate) mod messages;
pub(crate) mod refuse;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;
pub(crate) mod tools;

use omg_shared::error::ErrorCode;

use crate::error::ApiError;

/// `400 invalid_parameter` naming `param`.
pub(crate) fn invalid(param: &'static str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message.to_owned()).with_param(param)
}
