//! Contracts between the Open Model Gateway planes, and nothing else.
//!
//! The data plane (`omg-dataplane`) and the control plane (`omg-controlplane`) agree on these
//! types: the human-written gateway config schema ([`config`]), the versioned snapshot the
//! control plane publishes to data planes ([`snapshot`]), the per-request usage record
//! ([`usage`]), virtual API keys and their keyed hash ([`keys`]), money as integer micro-USD
//! ([`money`]), provider kinds and capabilities ([`provider`]; Azure OpenAI's settings in [`azure`]) and the OpenAI error vocabulary
//! ([`error`]), and in cluster mode the bus between them ([`cluster`]: sealed snapshots,
//! the usage stream, signed identities; sealing with [`vault`]), budget windows ([`budget`])
//! the shared limit counters' names ([`counters`]), routing and breaker policy ([`routing`]) and the policy for outbound targets chosen
//! by operators ([`ssrf`]). No I/O lives here: no tokio, Pingora, actix, diesel or HTTP client.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod budget;
pub mod cluster;
pub mod config;
pub mod counters;
pub mod duration;
pub mod endpoint;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod huggingface;
pub mod keys;
pub mod mock;
pub mod money;
pub mod provider;
pub mod routing;
pub mod secret;
pub mod snapshot;
pub mod ssrf;
pub mod tokens;
pub mod usage;
pub mod vault;
pub mod vertex;
