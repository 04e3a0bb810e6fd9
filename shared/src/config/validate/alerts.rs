//! The rules of `budgets.alert.*` (only the control plane sends alerts): recipients parse,
//! the channels they need are configured, timeouts and retries make sense.

use std::time::Duration;

use crate::config::{AlertConfig, ConfigError, GatewayConfig};

/// `budgets.alert.*`, with the tenants' own recipients in `bootstrap.tenant_budgets`.
pub(super) fn alert_rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let alert = &config.budgets.alert;
    let any_webhook = recipient_rules(config, &mut errors);
    if alert.sweep_interval < Duration::from_secs(1) {
        errors.push(ConfigError::new(
            "budgets.alert.sweep_interval",
            "must be at least 1s, e.g. `60s`",
        ));
    }
    if let Err((index, message)) = crate::ssrf::TargetPolicy::parse(&alert.allow_private_targets) {
        errors.push(ConfigError::new(
            format!("budgets.alert.allow_private_targets[{index}]"),
            message,
        ));
    }
    smtp_rules(alert, &mut errors);
    webhook_rules(alert, any_webhook, &mut errors);
    relay_required_rules(alert, &mut errors);
    errors
}

/// Every recipient (the defaults and each tenant's) is an email address or a webhook URL.
/// Returns whether any webhook is configured.
fn recipient_rules(config: &GatewayConfig, errors: &mut Vec<ConfigError>) -> bool {
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
    any_webhook
}

/// `budgets.alert.smtp.*`: a timeout above zero, a sender address, a user for a password.
fn smtp_rules(alert: &AlertConfig, errors: &mut Vec<ConfigError>) {
    let smtp = &alert.smtp;
    if smtp.connect_timeout.is_zero() {
        errors.push(ConfigError::new(
            "budgets.alert.smtp.connect_timeout",
            "must be greater than zero",
        ));
    }
    if !smtp.from.is_empty() {
        if let Some(message) = email_problem(&smtp.from) {
            errors.push(ConfigError::new("budgets.alert.smtp.from", message));
        }
    }
    if smtp.password.is_some() && smtp.username.is_empty() {
        errors.push(ConfigError::new(
            "budgets.alert.smtp.username",
            "required when `budgets.alert.smtp.password` is set",
        ));
    }
}

/// `budgets.alert.webhook.*`: timeout and retries, and a signing secret long enough and
/// present when webhooks are configured.
fn webhook_rules(alert: &AlertConfig, any_webhook: bool, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
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
}

/// Default email recipients need a relay and a sender. (Tenants' own recipients may exist
/// without one: they are then recorded as refused deliveries naming this key.)
fn relay_required_rules(alert: &AlertConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    let smtp = &alert.smtp;
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
