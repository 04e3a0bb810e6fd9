//! Routing and resilience, without I/O: the per-deployment circuit breaker ([`breaker`]),
//! the health registry with in-flight counts and active-check results ([`health`]), the
//! attempt order of a request ([`select`]) and a provider's requested wait
//! ([`retry_after`]). The proxy glue acquires a [`health::Permit`] per
//! attempt and reports its [`health::Outcome`]; the active checks run in
//! `proxy/health_check.rs`.

pub mod breaker;
pub mod health;
pub mod retry_after;
pub mod select;
#[cfg(test)]
mod tests;

pub use health::{DeploymentHealth, HealthRegistry, Outcome, Permit};
pub use select::{order, Order};
