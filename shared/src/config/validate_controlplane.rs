//! The control plane's own configuration rules (database, Redis, sessions, encryption keys,
//! alert channels), applied on top of the rules it shares with the data plane (`validate.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use super::encryption::decode_key;
use super::{ConfigError, GatewayConfig};

/// The control plane's own requirements, on top of the rules it shares with the data plane
/// (which [`load_layered`](super::load_layered) with [`Mode::Controlplane`](super::Mode)
/// applies together with these): `database.url`, `admin.session.jwt_secret`,
/// `security.api_key_pepper` and at least one `security.encryption_keys` entry are required;
/// `database.*`, `redis.*`, `admin.*` and the encryption keys must make sense.
pub fn validate_controlplane(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));

    // database
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

    // redis
    let redis = &config.redis;
    if let Some(url) = &redis.url {
        if !has_scheme(url.expose(), &["redis", "rediss"]) {
            error(
                "redis.url",
                "must be a Redis URL starting with `redis://` (or `rediss://` for TLS)".to_owned(),
            );
        }
    }
    if !(1..=1000).contains(&redis.pool_size) {
        error(
            "redis.pool_size",
            format!("{} is outside 1..=1000", redis.pool_size),
        );
    }

    // admin sessions
    let session = &config.admin.session;
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
    let cookie = session.cookie_name.as_str();
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        error(
            "admin.session.cookie_name",
            format!("`{cookie}` is not a cookie name; use letters, digits, `_` or `-`"),
        );
    } else if (cookie.starts_with("__Secure-") || cookie.starts_with("__Host-"))
        && !session.cookie_secure
    {
        error(
            "admin.session.cookie_secure",
            format!("must be true for a `{cookie}` cookie (browsers drop it otherwise)"),
        );
    }
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
            error(path, "must be at least 1".to_owned());
        }
    }
    if throttle.window.is_zero() {
        error(
            "admin.login_throttle.window",
            "must be greater than zero".to_owned(),
        );
    }

    // security
    let security = &config.security;
    if security.api_key_pepper.is_none() {
        error(
            "security.api_key_pepper",
            "required by the control plane (every data plane must use the same value to hash \
             API keys); generate one with `openssl rand -base64 32` and set it here or with \
             `ROUTER_SECURITY_API_KEY_PEPPER`"
                .to_owned(),
        );
    }
    if security.encryption_keys.is_empty() {
        error(
            "security.encryption_keys",
            "at least one key is required to encrypt provider credentials; add \
             `- {version: 1, key: \"<output of openssl rand -base64 32>\"}`"
                .to_owned(),
        );
    }
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
    if let Some(active) = security.active_encryption_key {
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
    errors.extend(alert_rules(config));
    errors
}

/// Whether `url` starts with `<one of schemes>://` (case-insensitive) and has more after it.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    url.split_once("://").is_some_and(|(scheme, rest)| {
        !rest.is_empty() && schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s))
    })
}

/// `budgets.alert.*` (only the control plane sends alerts): targets parse, the channels they
/// need are configured, timeouts and retries make sense.
fn alert_rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    let alert = &config.budgets.alert;
    let mut any_webhook = !alert.webhooks.is_empty();
    for (index, email) in alert.emails.iter().enumerate() {
        if let Some(message) = email_problem(email) {
            error(&format!("budgets.alert.emails[{index}]"), message);
        }
    }
    for (index, url) in alert.webhooks.iter().enumerate() {
        if let Some(message) = webhook_url_problem(url) {
            error(&format!("budgets.alert.webhooks[{index}]"), message);
        }
    }
    for (index, budget) in config.bootstrap.tenant_budgets.iter().enumerate() {
        let path = format!("bootstrap.tenant_budgets[{index}]");
        any_webhook |= !budget.alert_webhooks.is_empty();
        for (i, email) in budget.alert_emails.iter().enumerate() {
            if let Some(message) = email_problem(email) {
                error(&format!("{path}.alert_emails[{i}]"), message);
            }
        }
        for (i, url) in budget.alert_webhooks.iter().enumerate() {
            if let Some(message) = webhook_url_problem(url) {
                error(&format!("{path}.alert_webhooks[{i}]"), message);
            }
        }
    }
    if alert.sweep_interval < Duration::from_secs(1) {
        error(
            "budgets.alert.sweep_interval",
            "must be at least 1s, e.g. `60s`".to_owned(),
        );
    }
    if let Err((index, message)) = crate::ssrf::TargetPolicy::parse(&alert.allow_private_targets) {
        error(
            &format!("budgets.alert.allow_private_targets[{index}]"),
            message,
        );
    }
    let smtp = &alert.smtp;
    if smtp.connect_timeout.is_zero() {
        error(
            "budgets.alert.smtp.connect_timeout",
            "must be greater than zero".to_owned(),
        );
    }
    if !smtp.from.is_empty() {
        if let Some(message) = email_problem(&smtp.from) {
            error("budgets.alert.smtp.from", message);
        }
    }
    if smtp.password.is_some() && smtp.username.is_empty() {
        error(
            "budgets.alert.smtp.username",
            "required when `budgets.alert.smtp.password` is set".to_owned(),
        );
    }
    let webhook = &alert.webhook;
    if webhook.timeout.is_zero() {
        error(
            "budgets.alert.webhook.timeout",
            "must be greater than zero".to_owned(),
        );
    }
    if webhook.max_retries > 10 {
        error(
            "budgets.alert.webhook.max_retries",
            format!("{} is outside 0..=10", webhook.max_retries),
        );
    }
    if let Some(secret) = &webhook.secret {
        if secret.expose().chars().count() < 16 {
            error(
                "budgets.alert.webhook.secret",
                "must be at least 16 characters (generate one with `openssl rand -hex 32`)"
                    .to_owned(),
            );
        }
    }
    if alert.enabled && any_webhook && webhook.secret.is_none() {
        error(
            "budgets.alert.webhook.secret",
            "required when alert webhooks are configured (`budgets.alert.webhooks` or a tenant's \
             `alert_webhooks`): receivers verify the `X-OMG-Signature` header with it; generate \
             one with `openssl rand -hex 32` and set it here or with \
             `ROUTER_BUDGETS_ALERT_WEBHOOK_SECRET`"
                .to_owned(),
        );
    }
    // Tenants' own recipients may exist without a relay (they are then recorded as refused
    // deliveries naming this key); default recipients need one.
    if alert.enabled && !alert.emails.is_empty() {
        if smtp.host.trim().is_empty() {
            error(
                "budgets.alert.smtp.host",
                "required when `budgets.alert.emails` is set: the SMTP relay alerts are sent \
                 through"
                    .to_owned(),
            );
        }
        if smtp.from.is_empty() {
            error(
                "budgets.alert.smtp.from",
                "required when `budgets.alert.emails` is set: the sender address, e.g. \
                 `gateway@example.com`"
                    .to_owned(),
            );
        }
    }
    errors
}

/// Why `text` is not a usable email address (a light check: one `@`, no spaces or controls).
pub fn email_problem(text: &str) -> Option<String> {
    let valid = text.len() <= 254
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    (!valid).then(|| format!("`{text}` is not an email address"))
}

/// Why `text` is not a usable webhook URL: `http://` or `https://`, a host, no spaces.
pub fn webhook_url_problem(text: &str) -> Option<String> {
    let shown = if text.contains('?') || text.contains('@') {
        "the URL".to_owned()
    } else {
        format!("`{text}`")
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return Some(format!("{shown} is not a URL; use `https://host/path`"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Some(format!(
            "{shown} uses the scheme `{scheme}`; only `http` and `https` are allowed"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Some(format!("{shown} has no host"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("{shown} contains spaces or control characters"));
    }
    None
}
