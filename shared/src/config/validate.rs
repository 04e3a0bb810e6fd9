//! Cross-field rules a schema cannot express: addresses parse, names are unique, references
//! point at things that exist, prices and windows make sense, providers have adapters.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::encryption::decode_key;
use super::{CatalogEntry, ConfigError, GatewayConfig, ServerConfig};
use crate::keys::valid_prefix;
use crate::mock::MockSettings;
use crate::money::usd_to_micros;
use crate::provider::ProviderKind;
use crate::snapshot::{deployment_from_entry, BudgetWindow};

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
    let mut errors = server_rules(config, ServerConfig::DATAPLANE_LISTEN_ADDR);
    errors.extend(common_rules(config));
    errors.extend(super::routing::rules(config));
    errors.extend(super::cluster::cluster_rules(config));
    errors.extend(super::cluster::dataplane_rules(config));
    errors
}

/// The rules the control plane shares with the data plane: `server.*` with the control
/// plane's default listener, and the plane-independent rules.
pub(super) fn validate_for_controlplane(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = server_rules(config, ServerConfig::CONTROLPLANE_LISTEN_ADDR);
    errors.extend(common_rules(config));
    errors.extend(super::routing::rules(config));
    errors.extend(super::cluster::cluster_rules(config));
    errors.extend(super::cluster::controlplane_rules(config));
    errors
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

/// `server.*`, with `server.listen_addr` read as `default_listen` when unset (each plane has
/// its own).
fn server_rules(config: &GatewayConfig, default_listen: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    let server = &config.server;
    let listen_addr = server.listen_addr_or(default_listen);
    for (path, value) in [
        ("server.listen_addr", listen_addr),
        (
            "server.admin_listen_addr",
            server.admin_listen_addr.as_str(),
        ),
    ] {
        if let Err(message) = parse_listen_addr(value) {
            error(path, message);
        }
    }
    if same_listener(listen_addr, &server.admin_listen_addr) {
        let shown = match &server.listen_addr {
            Some(_) => format!("`server.listen_addr` ({listen_addr})"),
            None => format!("`server.listen_addr` (default {listen_addr})"),
        };
        error(
            "server.admin_listen_addr",
            format!("must differ from {shown}"),
        );
    }
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

/// Rules that hold whichever plane reads the file.
/// The rules of one catalog entry (also used by the control plane's catalog API). `path` is
/// prefixed to every error's key path (`model_catalog[3]`, or empty for an API body).
pub fn catalog_entry_rules(
    config: &GatewayConfig,
    entry: &CatalogEntry,
    path: &str,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| {
        errors.push(ConfigError::new(path.trim_start_matches('.'), message))
    };
    if entry.alias.is_empty()
        || entry.alias.len() > 128
        || entry
            .alias
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        error(
            &format!("{path}.alias"),
            "must be 1-128 characters without spaces".to_owned(),
        );
    }
    if !entry.provider.is_supported() {
        let supported: Vec<&str> = ProviderKind::ALL
            .iter()
            .filter(|kind| kind.is_supported())
            .map(|kind| kind.as_str())
            .collect();
        error(
            &format!("{path}.provider"),
            format!(
                "provider `{}` has no adapter in this build yet (supported: {})",
                entry.provider,
                supported.join(", ")
            ),
        );
    }
    if entry.currency != "USD" {
        error(
            &format!("{path}.currency"),
            format!("only `USD` is supported, got `{}`", entry.currency),
        );
    }
    if entry.weight == 0 {
        error(
            &format!("{path}.weight"),
            "must be at least 1 (use `enabled: false` to take an entry out)".to_owned(),
        );
    }
    if let Err((field, message)) = deployment_from_entry(config, entry, 0) {
        error(&format!("{path}.{field}"), message);
    }
    if entry.provider == ProviderKind::Mock {
        if let Err((key, message)) = MockSettings::from_metadata(&entry.metadata) {
            error(&format!("{path}.metadata.{key}"), message);
        }
    }
    if entry.provider == ProviderKind::Anthropic {
        if let Err(message) = crate::anthropic::AnthropicDefaults::from_metadata(&entry.metadata) {
            error(&format!("{path}.metadata"), message);
        }
    }
    errors
}

fn common_rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));

    // security
    if let Some(pepper) = &config.security.api_key_pepper {
        if pepper.expose().len() < 16 {
            error(
                "security.api_key_pepper",
                "must be at least 16 characters (use a random string)".to_owned(),
            );
        }
    }

    // model catalog
    let mut alias_types = BTreeMap::new();
    for (index, entry) in config.model_catalog.iter().enumerate() {
        let path = format!("model_catalog[{index}]");
        for problem in catalog_entry_rules(config, entry, &path) {
            error(&problem.path, problem.message);
        }
        match alias_types.get(&entry.alias) {
            Some(model_type) if *model_type != entry.model_type => error(
                &format!("{path}.model_type"),
                format!("alias `{}` is declared earlier with model_type {:?}; all its entries must agree", entry.alias, model_type),
            ),
            _ => {
                alias_types.insert(entry.alias.clone(), entry.model_type);
            }
        }
    }
    let check_models =
        |path: &str, models: &Option<Vec<String>>, error: &mut dyn FnMut(&str, String)| {
            for (index, alias) in models.iter().flatten().enumerate() {
                if !alias_types.contains_key(alias) {
                    error(
                        &format!("{path}[{index}]"),
                        format!("unknown model alias `{alias}` (not in `model_catalog`)"),
                    );
                }
            }
        };

    // rate limits need no checks beyond their types; budgets do.
    let budgets = &config.budgets;
    if let Err(message) = usd_to_micros(budgets.default_usd) {
        error("budgets.default_usd", message);
    }
    if !(budgets.warning_threshold_perc > 0.0 && budgets.warning_threshold_perc <= 1.0) {
        error(
            "budgets.warning_threshold_perc",
            format!("{} must be in (0, 1]", budgets.warning_threshold_perc),
        );
    }
    if let Err(message) = BudgetWindow::parse(&budgets.refresh_schedule) {
        error("budgets.refresh_schedule", message);
    }
    if let Err(message) = crate::budget::parse_timezone(&config.reporting.timezone) {
        error("reporting.timezone", message);
    }
    let limits = &config.rate_limits;
    if limits.default_max_tokens == 0 {
        error(
            "rate_limits.default_max_tokens",
            "must be at least 1 (it is the completion size assumed for reservations)".to_owned(),
        );
    }
    if limits.lease_ttl < std::time::Duration::from_secs(3) {
        error(
            "rate_limits.lease_ttl",
            "must be at least 3s (leases are renewed every third of it)".to_owned(),
        );
    }
    if limits.redis_timeout.is_zero() {
        error(
            "rate_limits.redis_timeout",
            "must be above zero, e.g. `250ms`".to_owned(),
        );
    }
    for (alias, _) in limits.models.iter().filter(|(a, _)| a.trim().is_empty()) {
        error(
            "rate_limits.models",
            format!("`{alias}` is not a model alias"),
        );
    }

    // bootstrap
    let bootstrap = &config.bootstrap;
    let mut tenant_names = HashSet::new();
    for (index, tenant) in bootstrap.tenants.iter().enumerate() {
        let path = format!("bootstrap.tenants[{index}]");
        if tenant.name.trim().is_empty() {
            error(&format!("{path}.name"), "must not be empty".to_owned());
        } else if !tenant_names.insert(tenant.name.as_str()) {
            error(
                &format!("{path}.name"),
                format!("tenant `{}` is listed twice", tenant.name),
            );
        }
        check_models(
            &format!("{path}.allowed_models"),
            &tenant.allowed_models,
            &mut error,
        );
    }
    let tenant_ref = |path: String, name: &str, error: &mut dyn FnMut(&str, String)| {
        if !tenant_names.contains(name) {
            error(
                &path,
                format!("unknown tenant `{name}` (not in `bootstrap.tenants`)"),
            );
        }
    };
    let mut prefixes = HashSet::new();
    for (index, key) in bootstrap.api_keys.iter().enumerate() {
        let path = format!("bootstrap.api_keys[{index}]");
        tenant_ref(format!("{path}.tenant"), &key.tenant, &mut error);
        if let Some(prefix) = &key.prefix {
            if !valid_prefix(prefix) {
                error(
                    &format!("{path}.prefix"),
                    "must be 1-32 characters of A-Z, a-z, 0-9, `_` or `-`".to_owned(),
                );
            } else if !prefixes.insert(prefix.as_str()) {
                error(
                    &format!("{path}.prefix"),
                    format!("prefix `{prefix}` is used by another key"),
                );
            }
        }
        if let Some(secret) = &key.secret {
            let text = secret.expose();
            if text.is_empty()
                || text.len() > crate::keys::MAX_SECRET_LEN
                || !text.bytes().all(|b| b.is_ascii_graphic())
            {
                error(
                    &format!("{path}.secret"),
                    "must be 1-256 visible ASCII characters".to_owned(),
                );
            }
        }
        if let Some(expires_at) = &key.expires_at {
            if chrono::DateTime::parse_from_rfc3339(expires_at).is_err() {
                error(
                    &format!("{path}.expires_at"),
                    format!(
                        "`{expires_at}` is not an RFC 3339 time such as `2027-01-01T00:00:00Z`"
                    ),
                );
            }
        }
        if let Some(budget) = key.budget_usd {
            if let Err(message) = usd_to_micros(budget) {
                error(&format!("{path}.budget_usd"), message);
            }
        }
        if let Some(threshold) = key.warning_threshold {
            if !(threshold > 0.0 && threshold <= 1.0) {
                error(
                    &format!("{path}.warning_threshold"),
                    format!("{threshold} must be in (0, 1]"),
                );
            }
        }
        check_models(
            &format!("{path}.allowed_models"),
            &key.allowed_models,
            &mut error,
        );
    }
    for (index, membership) in bootstrap.memberships.iter().enumerate() {
        let path = format!("bootstrap.memberships[{index}]");
        tenant_ref(format!("{path}.tenant"), &membership.tenant, &mut error);
        if !matches!(
            membership.role.as_str(),
            "owner" | "admin" | "viewer" | "user"
        ) {
            error(
                &format!("{path}.role"),
                format!(
                    "`{}` is not a role; use owner, admin, viewer or user",
                    membership.role
                ),
            );
        }
        if !bootstrap
            .admin_users
            .iter()
            .any(|user| user.email == membership.email)
            && !membership.email.contains('@')
        {
            error(
                &format!("{path}.email"),
                format!("`{}` is not an email address", membership.email),
            );
        }
    }
    let mut limited = HashSet::new();
    for (index, limits) in bootstrap.tenant_limits.iter().enumerate() {
        let path = format!("bootstrap.tenant_limits[{index}].tenant");
        tenant_ref(path.clone(), &limits.tenant, &mut error);
        if !limited.insert(limits.tenant.as_str()) {
            error(
                &path,
                format!(
                    "tenant `{}` already has an entry in `bootstrap.tenant_limits`; merge them",
                    limits.tenant
                ),
            );
        }
    }
    let mut budgeted = HashSet::new();
    for (index, budget) in bootstrap.tenant_budgets.iter().enumerate() {
        let path = format!("bootstrap.tenant_budgets[{index}]");
        tenant_ref(format!("{path}.tenant"), &budget.tenant, &mut error);
        if !budgeted.insert(budget.tenant.as_str()) {
            error(
                &format!("{path}.tenant"),
                format!(
                    "tenant `{}` already has an entry in `bootstrap.tenant_budgets`; merge them",
                    budget.tenant
                ),
            );
        }
        if let Err(message) = usd_to_micros(budget.budget_usd) {
            error(&format!("{path}.budget_usd"), message);
        }
        if let Some(window) = &budget.refresh_schedule {
            if let Err(message) = BudgetWindow::parse(window) {
                error(&format!("{path}.refresh_schedule"), message);
            }
        }
        if let Some(threshold) = budget.warning_threshold {
            if !(threshold > 0.0 && threshold <= 1.0) {
                error(
                    &format!("{path}.warning_threshold"),
                    format!("{threshold} must be in (0, 1]"),
                );
            }
        }
        if let Some(cooldown) = &budget.alert_cooldown {
            if let Err(message) = crate::duration::parse(cooldown) {
                error(&format!("{path}.alert_cooldown"), message);
            }
        }
    }
    for (index, user) in bootstrap.admin_users.iter().enumerate() {
        if !user.email.contains('@') {
            error(
                &format!("bootstrap.admin_users[{index}].email"),
                format!("`{}` is not an email address", user.email),
            );
        }
    }
    errors
}

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
