//! The built-in `mock` provider: deterministic OpenAI-shaped answers without a network.
//!
//! For quick starts, demos, client CI and load tests. It sits behind [`ProviderAdapter`]
//! like every provider, but answers in process: its adapter's
//! [`local`](ProviderAdapter::local) describes the whole answer ([`Local`]: bodies, stream
//! events, delays, usage) and the glue plays it out with the same response path as real
//! upstreams (headers, streaming, metering). So a mock deployment can sit anywhere in an
//! alias's order, a failover target included.
//!
//! [`ProviderAdapter`]: super::ProviderAdapter

mod adapter;
mod answers;

pub use adapter::MockAdapter;
pub use answers::*;

use std::time::Duration;

use super::{Call, Usage};

/// An adapter that answers in process: nothing goes upstream.
pub trait LocalAnswer: Send + Sync {
    /// The whole answer to `call`, for the glue to play out.
    fn answer(&self, call: &Call<'_>) -> Local;
}

/// An answer made in process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// A complete JSON body, sent after `delay`.
    Json {
        /// Waited before the answer.
        delay: Duration,
        /// The OpenAI-shaped body.
        body: Vec<u8>,
        /// Its exact usage.
        usage: Usage,
    },
    /// A server-sent-events stream.
    Stream(LocalStream),
}

/// A streamed answer made in process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStream {
    /// The first event, sent at once (chat: the assistant role).
    pub opening: Option<Vec<u8>>,
    /// Content events, each after its delay.
    pub chunks: Vec<(Duration, Vec<u8>)>,
    /// Completion tokens each content event carries (until the end, the stream is billed
    /// the prompt plus what was delivered).
    pub tokens_per_chunk: u64,
    /// The closing events (finish reason, usage when asked, `[DONE]`).
    pub closing: Vec<u8>,
    /// The whole answer's usage.
    pub usage: Usage,
}
