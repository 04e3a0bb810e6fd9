//! Open Model Gateway data plane: serves the OpenAI-compatible `/v1` API on Pingora from an
//! in-memory snapshot (keys, tenants, catalog), streams provider answers and meters every
//! request. See `ARCHITECTURE.md` for the map.

// Tests may spawn bare tasks; the product spawns through `tasks` (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod dns;
pub mod error;
pub mod flow;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod idempotency;
pub mod ingress;
pub mod limits;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod redis_script;
pub mod request;
pub mod routing;
pub mod snapshot;
pub mod sse;
pub mod tasks;
pub mod tokens;
pub mod usage;
