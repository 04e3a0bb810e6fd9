//! Cross-field rules a schema cannot express: addresses parse, names are unique, references
//! point at things that exist, prices and windows make sense, providers have adapters.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};

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
