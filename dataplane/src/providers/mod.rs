//! Provider adapters: pure functions from OpenAI requests to provider requests and from
//! provider responses back to OpenAI's shapes, plus usage extraction. No I/O and no Pingora
//! types: the proxy glue (`crate::proxy`) moves the bytes.

pub mod anthropic;
mod json_scan;
pub mod mock;
pub mod openai;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
}
