//! Cross-field rules a schema cannot express: addresses parse, names are unique, references
//! point at things that exist, prices and windows make sense, providers have adapters. One
//! file per config section: `server.rs`, `catalog.rs`, `limits.rs` (budgets and rate
//! limits), `bootstrap.rs`, and the control plane's own sections in `controlplane.rs` and
//! `alerts.rs`; `routing.*` and `cluster.*` keep their rules beside their schema.

mod alerts;
mod bootstrap;
mod catalog;
mod controlplane;
mod limits;
mod server;

use std::net::{SocketAddr, ToSocketAddrs};

use super::{ConfigError, GatewayConfig, ServerConfig};

pub use alerts::{email_problem, webhook_url_problem};
pub use catalog::catalog_entry_rules;
pub use controlplane::validate_controlplane;

/// Parses a listen address: `host:port`, `:port` (all interfaces) or `[v6]:port`.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let candidate = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    if let Ok(addr) = candidate.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // `localhost:8080` and other names: resolve once at start-up.
    candidate
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("`{text}` is not a listen address; use `host:port` or `:port`"))
}

/// The data plane's rules.
pub(super) fn validate(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = server::rules(config, ServerConfig::DATAPLANE_LISTEN_ADDR);
    errors.extend(common_rules(config));
    errors.extend(super::routing::rules(config));
    errors.extend(super::cluster::cluster_rules(config));
    errors.extend(super::cluster::dataplane_rules(config));
    errors
}

/// The rules the control plane shares with the data plane: `server.*` with the control
/// plane's default listener, and the plane-independent rules.
pub(super) fn validate_for_controlplane(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = server::rules(config, ServerConfig::CONTROLPLANE_LISTEN_ADDR);
    errors.extend(common_rules(config));
    errors.extend(super::routing::rules(config));
    errors.extend(super::cluster::cluster_rules(config));
    errors.extend(super::cluster::controlplane_rules(config));
    errors.extend(super::retention::rules(config));
    errors.extend(super::files::files_rules(config));
    errors.extend(super::files::batches_rules(config));
    errors
}

/// Rules that hold whichever plane reads the file: `security.api_key_pepper`, the model
/// catalog, budgets, rate limits and `bootstrap.*`, in that order.
fn common_rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(pepper) = &config.security.api_key_pepper {
        if pepper.expose().len() < 16 {
            errors.push(ConfigError::new(
                "security.api_key_pepper",
                "must be at least 16 characters (use a random string)",
            ));
        }
    }
    let aliases = catalog::catalog_rules(config, &mut errors);
    limits::budget_rules(config, &mut errors);
    limits::rate_limit_rules(&config.rate_limits, &mut errors);
    bootstrap::rules(&config.bootstrap, &aliases, &mut errors);
    errors
}

/// Whether `threshold` is a warning share in (0, 1].
fn is_share(threshold: f64) -> bool {
    threshold > 0.0 && threshold <= 1.0
}
