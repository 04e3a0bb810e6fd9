//! The control plane's own configuration rules (database, Redis, sessions, login throttling,
//! encryption keys; alert channels in `alerts.rs`), applied on top of the rules it shares
//! with the data plane (`mod.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::encryption::decode_key;
use crate::config::{ConfigError, GatewayConfig, SecurityConfig, SessionConfig};

/// The control plane's own requirements, on top of the rules it shares with the data plane
/// (which [`load_layered`](crate::config::load_layered) with
/// [`Mode::Controlplane`](crate::config::Mode) applies together with these): `database.url`,
/// `admin.session.jwt_secret`, `security.api_key_pepper` and at least one
/// `security.encryption_keys` entry are required; `database.*`, `redis.*`, `admin.*` and the
/// encryption keys must make sense.
pub fn validate_controlplane(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    database_rules(config, &mut errors);
    redis_rules(config, &mut errors);
    session_rules(&config.admin.session, &mut errors);
    throttle_rules(config, &mut errors);
    security_rules(&config.security, &mut errors);
    errors.extend(super::alerts::alert_rules(config));
    errors
}

/// `database.*`: a Postgres URL is required; the pool size and timeout make sense.
fn database_rules(config: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    let database = &config.database;
    match &database.url {
        None => error(
            "database.url",
            "required by the control plane; set it here or with `ROUTER_DB_URL`, e.g. \
             `postgres://user:pass@host:5432/gateway`"
                .to_owned(),
        ),
        Some(url) if !has_scheme(url.expose(), &["postgres", "postgresql"]) => error(
            "database.url",
            "must be a Postgres URL starting with `postgres://` or `postgresql://`".to_owned(),
        ),
        Some(_) => {}
    }
    if !(1..=1000).contains(&database.max_connections) {
        error(
            "database.max_connections",
            format!("{} is outside 1..=1000", database.max_connections),
        );
    }
    if database.connect_timeout.is_zero() {
        error(
            "database.connect_timeout",
            "must be greater than zero".to_owned(),
        );
    }
}

/// `redis.*`: a Redis URL when set (required by the internal listener), a pool size that
/// makes sense.
fn redis_rules(config: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let redis = &config.redis;
    if let Some(url) = &redis.url {
        if !has_scheme(url.expose(), &["redis", "rediss"]) {
            errors.push(ConfigError::new(
                "redis.url",
                "must be a Redis URL starting with `redis://` (or `rediss://` for TLS)",
            ));
        }
    }
    if redis.url.is_none() && config.cluster.internal_listen_addr.is_some() {
        errors.push(ConfigError::new(
            "cluster.internal_listen_addr",
            "needs `redis.url`: the internal channel's replay guard records each identity's \
             nonce in Redis, so a forwarded request is accepted once across all control-plane \
             replicas; set `redis.url` (the data planes' Redis) or unset the listener",
        ));
    }
    if !(1..=1000).contains(&redis.pool_size) {
        errors.push(ConfigError::new(
            "redis.pool_size",
            format!("{} is outside 1..=1000", redis.pool_size),
        ));
    }
}

/// `admin.session.*`: a long enough signing secret, token lifetimes, the cookie's name.
fn session_rules(session: &SessionConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    match &session.jwt_secret {
        None => error(
            "admin.session.jwt_secret",
            "required by the control plane to sign admin sessions; generate one with \
             `openssl rand -base64 48` and set it here or with `ROUTER_ADMIN_SESSION_JWT_SECRET`"
                .to_owned(),
        ),
        Some(secret) if secret.expose().chars().count() < 32 => error(
            "admin.session.jwt_secret",
            format!(
                "is {} characters; use at least 32 (generate one with `openssl rand -base64 48`)",
                secret.expose().chars().count()
            ),
        ),
        Some(_) => {}
    }
    let (minute, day) = (Duration::from_secs(60), Duration::from_secs(24 * 3600));
    if !(minute..=day).contains(&session.access_token_ttl) {
        error(
            "admin.session.access_token_ttl",
            format!(
                "{} is outside 1m..=24h",
                humantime::format_duration(session.access_token_ttl)
            ),
        );
    }
    if session.refresh_token_ttl <= session.access_token_ttl {
        error(
            "admin.session.refresh_token_ttl",
            format!(
                "{} must be longer than `admin.session.access_token_ttl` ({})",
                humantime::format_duration(session.refresh_token_ttl),
                humantime::format_duration(session.access_token_ttl)
            ),
        );
    }
    cookie_rules(session, errors);
}

/// `admin.session.cookie_name` is a cookie name, and a `__Secure-`/`__Host-` cookie is secure.
fn cookie_rules(session: &SessionConfig, errors: &mut Vec<ConfigError>) {
    let cookie = session.cookie_name.as_str();
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        errors.push(ConfigError::new(
            "admin.session.cookie_name",
            format!("`{cookie}` is not a cookie name; use letters, digits, `_` or `-`"),
        ));
    } else if (cookie.starts_with("__Secure-") || cookie.starts_with("__Host-"))
        && !session.cookie_secure
    {
        errors.push(ConfigError::new(
            "admin.session.cookie_secure",
            format!("must be true for a `{cookie}` cookie (browsers drop it otherwise)"),
        ));
    }
}

/// `admin.login_throttle.*`: limits of at least 1, a window above zero.
fn throttle_rules(config: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let throttle = &config.admin.login_throttle;
    for (path, value) in [
        (
            "admin.login_throttle.max_failures_per_account",
            throttle.max_failures_per_account,
        ),
        (
            "admin.login_throttle.max_failures_per_ip",
            throttle.max_failures_per_ip,
        ),
        (
            "admin.login_throttle.max_attempts_per_ip",
            throttle.max_attempts_per_ip,
        ),
    ] {
        if value == 0 {
            errors.push(ConfigError::new(path, "must be at least 1"));
        }
    }
    if throttle.window.is_zero() {
        errors.push(ConfigError::new(
            "admin.login_throttle.window",
            "must be greater than zero",
        ));
    }
}

/// `security.*`: the pepper and at least one encryption key are required.
fn security_rules(security: &SecurityConfig, errors: &mut Vec<ConfigError>) {
    if security.api_key_pepper.is_none() {
        errors.push(ConfigError::new(
            "security.api_key_pepper",
            "required by the control plane (every data plane must use the same value to hash \
             API keys); generate one with `openssl rand -base64 32` and set it here or with \
             `ROUTER_SECURITY_API_KEY_PEPPER`",
        ));
    }
    if security.encryption_keys.is_empty() {
        errors.push(ConfigError::new(
            "security.encryption_keys",
            "at least one key is required to encrypt provider credentials; add \
             `- {version: 1, key: \"<output of openssl rand -base64 32>\"}`",
        ));
    }
    encryption_key_rules(security, errors);
}

/// `security.encryption_keys`: versions unique and at least 1, keys decode, the active
/// version is listed.
fn encryption_key_rules(security: &SecurityConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    let mut versions = BTreeSet::new();
    for (index, entry) in security.encryption_keys.iter().enumerate() {
        let path = format!("security.encryption_keys[{index}]");
        if entry.version == 0 {
            error(&format!("{path}.version"), "must be at least 1".to_owned());
        } else if !versions.insert(entry.version) {
            error(
                &format!("{path}.version"),
                format!(
                    "version {} is listed twice; give each key its own version",
                    entry.version
                ),
            );
        }
        if let Err(message) = decode_key(&entry.key) {
            error(&format!("{path}.key"), message);
        }
    }
    let Some(active) = security.active_encryption_key else {
        return;
    };
    if !security
        .encryption_keys
        .iter()
        .any(|entry| entry.version == active)
    {
        let listed: Vec<String> = versions.iter().map(u32::to_string).collect();
        error(
            "security.active_encryption_key",
            format!(
                "version {active} is not in `security.encryption_keys` (listed: {})",
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                }
            ),
        );
    }
}

/// Whether `url` starts with `<one of schemes>://` (case-insensitive) and has more after it.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    url.split_once("://").is_some_and(|(scheme, rest)| {
        !rest.is_empty() && schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s))
    })
}
