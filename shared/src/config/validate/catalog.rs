//! The rules of `model_catalog`: each entry on its own (also checked by the control plane's
//! catalog API), and the entries of one alias agreeing on their model type.

use std::collections::BTreeMap;

use crate::config::{CatalogEntry, ConfigError, GatewayConfig, ModelType};
use crate::mock::MockSettings;
use crate::provider::ProviderKind;
use crate::snapshot::deployment_from_entry;

/// The aliases the catalog declares, each with the model type of its first entry.
pub(super) type Aliases = BTreeMap<String, ModelType>;

/// Checks every catalog entry and returns the aliases declared.
pub(super) fn catalog_rules(config: &GatewayConfig, errors: &mut Vec<ConfigError>) -> Aliases {
    let mut alias_types = BTreeMap::new();
    for (index, entry) in config.model_catalog.iter().enumerate() {
        let path = format!("model_catalog[{index}]");
        for problem in catalog_entry_rules(config, entry, &path) {
            errors.push(ConfigError::new(problem.path, problem.message));
        }
        match alias_types.get(&entry.alias) {
            Some(model_type) if *model_type != entry.model_type => errors.push(ConfigError::new(
                format!("{path}.model_type"),
                format!("alias `{}` is declared earlier with model_type {:?}; all its entries must agree", entry.alias, model_type),
            )),
            _ => {
                alias_types.insert(entry.alias.clone(), entry.model_type);
            }
        }
    }
    alias_types
}

/// The rules of one catalog entry (also used by the control plane's catalog API). `path` is
/// prefixed to every error's key path (`model_catalog[3]`, or empty for an API body).
pub fn catalog_entry_rules(
    config: &GatewayConfig,
    entry: &CatalogEntry,
    path: &str,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |field: &str, message: String| {
        let path = format!("{path}.{field}");
        errors.push(ConfigError::new(path.trim_start_matches('.'), message))
    };
    if let Some(message) = alias_problem(&entry.alias) {
        error("alias", message);
    }
    if let Some(message) = provider_problem(entry.provider) {
        error("provider", message);
    }
    if entry.currency != "USD" {
        error(
            "currency",
            format!("only `USD` is supported, got `{}`", entry.currency),
        );
    }
    if entry.weight == 0 {
        error(
            "weight",
            "must be at least 1 (use `enabled: false` to take an entry out)".to_owned(),
        );
    }
    if let Err((field, message)) = deployment_from_entry(config, entry, 0) {
        error(field, message);
    }
    if let Err((field, message)) = metadata_problem(entry) {
        error(&field, message);
    }
    errors
}

/// Why `alias` is not a usable alias: 1-128 characters without spaces or controls.
fn alias_problem(alias: &str) -> Option<String> {
    let bad = alias.is_empty()
        || alias.len() > 128
        || alias.chars().any(|c| c.is_whitespace() || c.is_control());
    bad.then(|| "must be 1-128 characters without spaces".to_owned())
}

/// Why `provider` cannot serve an entry: it has no adapter in this build.
fn provider_problem(provider: ProviderKind) -> Option<String> {
    if provider.is_supported() {
        return None;
    }
    let supported: Vec<&str> = ProviderKind::ALL
        .iter()
        .filter(|kind| kind.is_supported())
        .map(|kind| kind.as_str())
        .collect();
    Some(format!(
        "provider `{}` has no adapter in this build yet (supported: {})",
        provider,
        supported.join(", ")
    ))
}

/// The provider-specific `metadata` rules (mock and Anthropic read settings from it): the
/// field under the entry's path, and the message.
fn metadata_problem(entry: &CatalogEntry) -> Result<(), (String, String)> {
    if entry.provider == ProviderKind::Mock {
        MockSettings::from_metadata(&entry.metadata)
            .map_err(|(key, message)| (format!("metadata.{key}"), message))?;
    }
    if entry.provider == ProviderKind::Anthropic {
        crate::anthropic::AnthropicDefaults::from_metadata(&entry.metadata)
            .map_err(|message| ("metadata".to_owned(), message))?;
    }
    Ok(())
}
