//! The rules of `server.*`: listeners parse and differ, the body limit, timeouts and
//! connection limits make sense.

use super::parse_listen_addr;
use crate::config::{ConfigError, GatewayConfig};

/// `server.*`, with `server.listen_addr` read as `default_listen` when unset (each plane has
/// its own).
pub(super) fn rules(config: &GatewayConfig, default_listen: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let server = &config.server;
    let listen_addr = server.listen_addr_or(default_listen);
    listener_rules(config, listen_addr, &mut errors);
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    if !(1..=1024).contains(&server.body_limit_mb) {
        error(
            "server.body_limit_mb",
            format!("{} is outside 1..=1024", server.body_limit_mb),
        );
    }
    for (path, value) in [
        ("server.sync_timeout", server.sync_timeout),
        ("server.stream_idle_timeout", server.stream_idle_timeout),
        ("server.stream_max_duration", server.stream_max_duration),
        ("server.provider_timeout", server.provider_timeout),
        ("server.connect_timeout", server.connect_timeout),
        ("server.request_head_timeout", server.request_head_timeout),
        ("server.request_body_timeout", server.request_body_timeout),
        ("server.upload_body_timeout", server.upload_body_timeout),
        ("server.write_timeout", server.write_timeout),
    ] {
        if value.is_zero() {
            error(path, "must be greater than zero".to_owned());
        }
    }
    if server.max_connections == 0 {
        error("server.max_connections", "must be at least 1".to_owned());
    }
    if server.threads > 256 {
        error(
            "server.threads",
            format!("{} threads is more than 256", server.threads),
        );
    }
    errors
}

/// Both listen addresses parse, and they do not claim the same socket.
fn listener_rules(config: &GatewayConfig, listen_addr: &str, errors: &mut Vec<ConfigError>) {
    let server = &config.server;
    for (path, value) in [
        ("server.listen_addr", listen_addr),
        (
            "server.admin_listen_addr",
            server.admin_listen_addr.as_str(),
        ),
    ] {
        if let Err(message) = parse_listen_addr(value) {
            errors.push(ConfigError::new(path, message));
        }
    }
    if same_listener(listen_addr, &server.admin_listen_addr) {
        let shown = match &server.listen_addr {
            Some(_) => format!("`server.listen_addr` ({listen_addr})"),
            None => format!("`server.listen_addr` (default {listen_addr})"),
        };
        errors.push(ConfigError::new(
            "server.admin_listen_addr",
            format!("must differ from {shown}"),
        ));
    }
}

/// Whether two listen addresses would claim the same socket: the same text, or the same
/// (non-ephemeral) port where the hosts are equal or one is a wildcard.
fn same_listener(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (parse_listen_addr(a), parse_listen_addr(b)) {
        (Ok(a), Ok(b)) => {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => false,
    }
}
