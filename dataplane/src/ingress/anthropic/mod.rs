//! Native Anthropic ingress: `POST /v1/messages` and `POST /v1/messages/count_tokens` for
//! clients using Anthropic's SDKs, under the same keys, limits, budgets and usage records
//! as `/v1/chat/completions`.
//!
//! Pure translation, no I/O. A Messages request becomes an OpenAI chat body
//! ([`to_openai`]) that routes, admits and meters like any chat request. What goes back:
//! - from an Anthropic deployment, Anthropic's own answer, passed through (the request went
//!   upstream as the client wrote it, only `model` replaced: prompt caching, thinking, server
//!   tools and every other Messages feature work);
//! - from any other provider, the OpenAI answer translated: [`from_openai`] for JSON,
//!   [`EventConverter`] for streams;
//! - errors always in Anthropic's shape ([`error_body`]).

mod error;
mod json;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use error::{error_body, error_event, error_type, from_openai_error};
pub use request::{model_of, to_openai, to_openai_for_native, Translated};
pub use response::from_openai;
pub use stream::EventConverter;
