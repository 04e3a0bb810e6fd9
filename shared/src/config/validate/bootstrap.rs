//! The rules of `bootstrap.*`: tenant names are unique, keys, memberships, limits and
//! budgets name listed tenants and known model aliases, and their values parse.

use std::collections::HashSet;

use super::catalog::Aliases;
use super::is_share;
use crate::config::{
    BootstrapApiKey, BootstrapConfig, BootstrapMembership, BootstrapTenantBudget, ConfigError,
};
use crate::keys::valid_prefix;
use crate::money::usd_to_micros;
use crate::snapshot::BudgetWindow;

/// What the checks of one section need to know: the catalog's aliases, the tenants listed.
struct Known<'a> {
    aliases: &'a Aliases,
    tenants: HashSet<&'a str>,
}

impl Known<'_> {
    /// Each alias in `models` must be in the catalog.
    fn models(&self, path: &str, models: &Option<Vec<String>>, errors: &mut Vec<ConfigError>) {
        for (index, alias) in models.iter().flatten().enumerate() {
            if !self.aliases.contains_key(alias) {
                errors.push(ConfigError::new(
                    format!("{path}[{index}]"),
                    format!("unknown model alias `{alias}` (not in `model_catalog`)"),
                ));
            }
        }
    }

    /// `name` must be a tenant listed in `bootstrap.tenants`.
    fn tenant(&self, path: String, name: &str, errors: &mut Vec<ConfigError>) {
        if !self.tenants.contains(name) {
            errors.push(ConfigError::new(
                path,
                format!("unknown tenant `{name}` (not in `bootstrap.tenants`)"),
            ));
        }
    }
}

/// All of `bootstrap.*`, section by section.
pub(super) fn rules(bootstrap: &BootstrapConfig, aliases: &Aliases, errors: &mut Vec<ConfigError>) {
    let known = tenant_rules(bootstrap, aliases, errors);
    let mut prefixes = HashSet::new();
    for (index, key) in bootstrap.api_keys.iter().enumerate() {
        api_key_rules(&known, index, key, &mut prefixes, errors);
    }
    for (index, membership) in bootstrap.memberships.iter().enumerate() {
        membership_rules(bootstrap, &known, index, membership, errors);
    }
    let mut limited = HashSet::new();
    for (index, limits) in bootstrap.tenant_limits.iter().enumerate() {
        let path = format!("bootstrap.tenant_limits[{index}].tenant");
        known.tenant(path.clone(), &limits.tenant, errors);
        if !limited.insert(limits.tenant.as_str()) {
            errors.push(ConfigError::new(
                path,
                format!(
                    "tenant `{}` already has an entry in `bootstrap.tenant_limits`; merge them",
                    limits.tenant
                ),
            ));
        }
    }
    let mut budgeted = HashSet::new();
    for (index, budget) in bootstrap.tenant_budgets.iter().enumerate() {
        tenant_budget_rules(&known, index, budget, &mut budgeted, errors);
    }
    for (index, user) in bootstrap.admin_users.iter().enumerate() {
        if !user.email.contains('@') {
            errors.push(ConfigError::new(
                format!("bootstrap.admin_users[{index}].email"),
                format!("`{}` is not an email address", user.email),
            ));
        }
    }
}

/// `bootstrap.tenants`: names present, unique and without `:` (personal tenants are named
/// `personal:<email>`), allowed models known. Returns what later
/// sections check their references against.
fn tenant_rules<'a>(
    bootstrap: &'a BootstrapConfig,
    aliases: &'a Aliases,
    errors: &mut Vec<ConfigError>,
) -> Known<'a> {
    let mut known = Known {
        aliases,
        tenants: HashSet::new(),
    };
    for (index, tenant) in bootstrap.tenants.iter().enumerate() {
        let path = format!("bootstrap.tenants[{index}]");
        if tenant.name.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.name"),
                "must not be empty",
            ));
        } else if tenant.name.contains(':') {
            errors.push(ConfigError::new(
                format!("{path}.name"),
                "must not contain `:` (reserved for personal tenants, `personal:<email>`)",
            ));
        } else if !known.tenants.insert(tenant.name.as_str()) {
            errors.push(ConfigError::new(
                format!("{path}.name"),
                format!("tenant `{}` is listed twice", tenant.name),
            ));
        }
        known.models(
            &format!("{path}.allowed_models"),
            &tenant.allowed_models,
            errors,
        );
    }
    known
}

/// One `bootstrap.api_keys` entry; `prefixes` collects the prefixes seen so far.
fn api_key_rules<'a>(
    known: &Known<'_>,
    index: usize,
    key: &'a BootstrapApiKey,
    prefixes: &mut HashSet<&'a str>,
    errors: &mut Vec<ConfigError>,
) {
    let path = format!("bootstrap.api_keys[{index}]");
    known.tenant(format!("{path}.tenant"), &key.tenant, errors);
    let mut error = |field: &str, message: String| {
        errors.push(ConfigError::new(format!("{path}.{field}"), message))
    };
    if let Some(prefix) = &key.prefix {
        if !valid_prefix(prefix) {
            error(
                "prefix",
                "must be 1-32 characters of A-Z, a-z, 0-9, `_` or `-`".to_owned(),
            );
        } else if !prefixes.insert(prefix.as_str()) {
            error(
                "prefix",
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
                "secret",
                "must be 1-256 visible ASCII characters".to_owned(),
            );
        }
    }
    if let Some(expires_at) = &key.expires_at {
        if chrono::DateTime::parse_from_rfc3339(expires_at).is_err() {
            error(
                "expires_at",
                format!("`{expires_at}` is not an RFC 3339 time such as `2027-01-01T00:00:00Z`"),
            );
        }
    }
    if let Some(Err(message)) = key.budget_usd.map(usd_to_micros) {
        error("budget_usd", message);
    }
    if let Some(threshold) = key.warning_threshold.filter(|t| !is_share(*t)) {
        error(
            "warning_threshold",
            format!("{threshold} must be in (0, 1]"),
        );
    }
    known.models(
        &format!("{path}.allowed_models"),
        &key.allowed_models,
        errors,
    );
}

/// One `bootstrap.memberships` entry: a listed tenant, a role, an email address (or a
/// bootstrap admin user's name).
fn membership_rules(
    bootstrap: &BootstrapConfig,
    known: &Known<'_>,
    index: usize,
    membership: &BootstrapMembership,
    errors: &mut Vec<ConfigError>,
) {
    let path = format!("bootstrap.memberships[{index}]");
    known.tenant(format!("{path}.tenant"), &membership.tenant, errors);
    if !matches!(
        membership.role.as_str(),
        "owner" | "admin" | "viewer" | "user"
    ) {
        errors.push(ConfigError::new(
            format!("{path}.role"),
            format!(
                "`{}` is not a role; use owner, admin, viewer or user",
                membership.role
            ),
        ));
    }
    if !bootstrap
        .admin_users
        .iter()
        .any(|user| user.email == membership.email)
        && !membership.email.contains('@')
    {
        errors.push(ConfigError::new(
            format!("{path}.email"),
            format!("`{}` is not an email address", membership.email),
        ));
    }
}

/// One `bootstrap.tenant_budgets` entry; `budgeted` collects the tenants seen so far.
fn tenant_budget_rules<'a>(
    known: &Known<'_>,
    index: usize,
    budget: &'a BootstrapTenantBudget,
    budgeted: &mut HashSet<&'a str>,
    errors: &mut Vec<ConfigError>,
) {
    let path = format!("bootstrap.tenant_budgets[{index}]");
    known.tenant(format!("{path}.tenant"), &budget.tenant, errors);
    let mut error = |field: &str, message: String| {
        errors.push(ConfigError::new(format!("{path}.{field}"), message))
    };
    if !budgeted.insert(budget.tenant.as_str()) {
        error(
            "tenant",
            format!(
                "tenant `{}` already has an entry in `bootstrap.tenant_budgets`; merge them",
                budget.tenant
            ),
        );
    }
    if let Err(message) = usd_to_micros(budget.budget_usd) {
        error("budget_usd", message);
    }
    if let Some(Err(message)) = budget.refresh_schedule.as_deref().map(BudgetWindow::parse) {
        error("refresh_schedule", message);
    }
    if let Some(threshold) = budget.warning_threshold.filter(|t| !is_share(*t)) {
        error(
            "warning_threshold",
            format!("{threshold} must be in (0, 1]"),
        );
    }
    if let Some(Err(message)) = budget.alert_cooldown.as_deref().map(crate::duration::parse) {
        error("alert_cooldown", message);
    }
}
