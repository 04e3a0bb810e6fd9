//! Settings of `provider: anthropic` catalog entries, read from their `metadata` (both planes
//! check them: the control plane when an entry is saved, the data plane when it builds its
//! snapshot).

use std::collections::BTreeMap;

/// The `anthropic-version` sent when the deployment's metadata names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent when neither the client nor the deployment's metadata gives one
/// (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Per-deployment settings, read from the catalog entry's `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicDefaults {
    /// `anthropic-version` header (`metadata.anthropic_version`).
    pub version: String,
    /// `max_tokens` when the client sends none (`metadata.anthropic_max_tokens`).
    pub max_tokens: u64,
    /// `anthropic-beta` header, when set (`metadata.anthropic_beta`).
    pub beta: Option<String>,
}

impl Default for AnthropicDefaults {
    fn default() -> Self {
        Self {
            version: DEFAULT_VERSION.to_owned(),
            max_tokens: DEFAULT_MAX_TOKENS,
            beta: None,
        }
    }
}

impl AnthropicDefaults {
    /// Reads `anthropic_version`, `anthropic_max_tokens` and `anthropic_beta` from a catalog
    /// entry's metadata; absent keys take the defaults. `Err` names the bad key, for config
    /// validation (call it when the snapshot is built, not per request).
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut defaults = Self::default();
        let header_value = |key: &str, value: &str| {
            if value.is_empty() || value.bytes().any(|b| b < 0x20 || b == 0x7f) {
                Err(format!(
                    "metadata `{key}` must be a non-empty header value without control characters"
                ))
            } else {
                Ok(value.to_owned())
            }
        };
        if let Some(version) = metadata.get("anthropic_version") {
            defaults.version = header_value("anthropic_version", version.trim())?;
        }
        if let Some(beta) = metadata.get("anthropic_beta") {
            defaults.beta = Some(header_value("anthropic_beta", beta.trim())?);
        }
        if let Some(max_tokens) = metadata.get("anthropic_max_tokens") {
            defaults.max_tokens = match max_tokens.trim().parse::<u64>() {
                Ok(value) if value > 0 => value,
                _ => {
                    return Err(
                        "metadata `anthropic_max_tokens` must be a positive integer".to_owned()
                    )
                }
            };
        }
        Ok(defaults)
    }
}
