//! Reads the data plane's configuration: the YAML file (optional in cluster mode), then the
//! `ROUTER_*` overrides of the process environment, then the command-line flags (which win).
//! Rules are the data plane's ([`Mode::Dataplane`]); every problem is reported at once with
//! its key path. The same [`ConfigSource`] is re-read on reload, so overrides keep applying.

use std::path::{Path, PathBuf};

use omg_shared::config::{load_layered, ConfigErrors, GatewayConfig, Mode};
use omg_shared::secret::Secret;
use serde_yaml::{Mapping, Value};

/// Where the configuration comes from, captured once at start-up. `Debug` shows variable
/// names, never values (they carry secrets).
#[derive(Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    /// `ROUTER_*` variables of the environment, then the flags' (later entries win).
    overrides: Vec<(String, String)>,
    /// `--encryption-keys` / `OMG_ENCRYPTION_KEYS`: replaces `security.encryption_keys`.
    encryption_keys: Option<Secret>,
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .field(
                "overrides",
                &self
                    .overrides
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("encryption_keys", &self.encryption_keys)
            .finish()
    }
}

impl ConfigSource {
    /// `file` (if any), the `ROUTER_*` variables among `env`, then `flags` given as
    /// `(ROUTER_* variable, value)` so they override both the file and the environment.
    pub fn new(
        file: Option<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<(String, String)>,
        encryption_keys: Option<Secret>,
    ) -> Self {
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with("ROUTER_"))
            .collect();
        overrides.extend(flags);
        Self {
            file,
            overrides,
            encryption_keys,
        }
    }

    /// The config file, if one was given.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where the settings come from, for messages: the file, or the environment.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(path) => format!("`{}`", path.display()),
            None => "the environment and flags (no config file)".to_owned(),
        }
    }

    /// Reads and validates the configuration. `${NAME}` references in the file are resolved
    /// from the process environment.
    pub fn load(&self) -> Result<GatewayConfig, ConfigErrors> {
        let text = match &self.file {
            Some(path) => std::fs::read_to_string(path).map_err(|error| {
                ConfigErrors::one(
                    "",
                    format!("cannot read config file `{}`: {error}", path.display()),
                )
            })?,
            None => String::new(),
        };
        let text = match &self.encryption_keys {
            Some(keys) => with_encryption_keys(&text, keys.expose())?,
            None => text,
        };
        load_layered(
            &text,
            &|name| std::env::var(name).ok(),
            &self.overrides,
            Mode::Dataplane,
        )
    }
}

/// The message when neither a config file nor `redis.url` is given.
pub const NO_CONFIG: &str = "no config file: pass `--config FILE` to serve it (standalone \
     mode), or set `redis.url` (`--redis-url`, `ROUTER_REDIS_URL`) to follow a control plane \
     (cluster mode)";

impl ConfigSource {
    /// [`load`](Self::load) with the errors worded for the operator, and the mode checked:
    /// standalone mode (no `redis.url`) needs a config file.
    pub fn load_for_start(&self) -> Result<GatewayConfig, String> {
        let config = self
            .load()
            .map_err(|errors| format!("invalid config ({}):\n{errors}", self.describe()))?;
        if config.redis.url.is_none() && self.file.is_none() {
            return Err(NO_CONFIG.to_owned());
        }
        Ok(config)
    }
}

/// The process environment as UTF-8 pairs (others are skipped: no config variable has them).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// `text` with `security.encryption_keys` replaced by the keys of `spec`,
/// `VERSION:BASE64[,VERSION:BASE64…]` (the keys themselves are checked by the config rules).
fn with_encryption_keys(text: &str, spec: &str) -> Result<String, ConfigErrors> {
    const SOURCE: &str = "`--encryption-keys` / `OMG_ENCRYPTION_KEYS`";
    let mut keys = Vec::new();
    for item in spec
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let parsed = item
            .split_once(':')
            .and_then(|(version, key)| Some((version.trim().parse::<u32>().ok()?, key.trim())));
        let Some((version, key)) = parsed else {
            return Err(ConfigErrors::one(
                "security.encryption_keys",
                format!(
                    "{SOURCE}: expected `VERSION:BASE64[,VERSION:BASE64…]`, e.g. `1:$(openssl rand -base64 32)`"
                ),
            ));
        };
        let mut entry = Mapping::new();
        entry.insert(Value::from("version"), Value::from(version));
        entry.insert(Value::from("key"), Value::from(key));
        keys.push(Value::Mapping(entry));
    }
    if keys.is_empty() {
        return Err(ConfigErrors::one(
            "security.encryption_keys",
            format!("{SOURCE} is empty"),
        ));
    }
    let mut document: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        match serde_yaml::from_str(text) {
            Ok(document) => document,
            // Let the loader report the YAML error against the text as written.
            Err(_) => return Ok(text.to_owned()),
        }
    };
    if document.is_null() {
        document = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(root) = &mut document else {
        return Ok(text.to_owned());
    };
    let security = root
        .entry(Value::from("security"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if security.is_null() {
        *security = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(security) = security else {
        return Err(ConfigErrors::one(
            "security",
            "is not a mapping in the file, so `security.encryption_keys` cannot be set",
        ));
    };
    security.insert(Value::from("encryption_keys"), Value::Sequence(keys));
    serde_yaml::to_string(&document).map_err(|error| {
        ConfigErrors::one(
            "security.encryption_keys",
            format!("{SOURCE}: cannot be applied: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    fn source(
        file: Option<PathBuf>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
        keys: Option<&str>,
    ) -> ConfigSource {
        ConfigSource::new(
            file,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            flags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            keys.map(|k| Secret::new(k.to_owned())),
        )
    }

    #[test]
    fn cluster_settings_can_come_from_the_environment_alone() {
        let config = source(
            None,
            &[
                ("ROUTER_REDIS_URL", "redis://127.0.0.1:1/0"),
                (
                    "ROUTER_CLUSTER_SNAPSHOT_PUBLIC_KEYS",
                    "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=",
                ),
                (
                    "ROUTER_SECURITY_API_KEY_PEPPER",
                    "pepper-pepper-pepper-pepper-32ch",
                ),
                ("HOME", "/root"),
            ],
            &[],
            Some(&format!("1:{KEY}")),
        )
        .load()
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(config.redis.url.is_some());
        assert_eq!(config.security.encryption_keys.len(), 1);
        assert_eq!(config.security.active_key_version(), Some(1));
    }

    #[test]
    fn flags_override_the_environment_and_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            format!(
                "cluster:\n  snapshot_key: from-file\nsecurity:\n  api_key_pepper: pepper-pepper-pepper-pepper-32ch\n  encryption_keys:\n    - version: 3\n      key: {KEY}\n"
            ),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let config = source(
            Some(path),
            &[
                ("ROUTER_CLUSTER_SNAPSHOT_KEY", "from-env"),
                ("ROUTER_REDIS_URL", "redis://env:6379"),
                (
                    "ROUTER_CLUSTER_SNAPSHOT_PUBLIC_KEYS",
                    "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=",
                ),
            ],
            &[
                ("ROUTER_CLUSTER_SNAPSHOT_KEY", "from-flag"),
                ("ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH", "/tmp/x.sealed"),
            ],
            None,
        )
        .load()
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(config.cluster.snapshot_key, "from-flag");
        assert_eq!(
            config.cluster.snapshot_cache_path,
            PathBuf::from("/tmp/x.sealed")
        );
        assert_eq!(config.security.active_key_version(), Some(3));
    }

    #[test]
    fn debug_output_names_variables_without_their_values() {
        let shown = format!(
            "{:?}",
            source(
                None,
                &[("ROUTER_REDIS_URL", "redis://:hunter2@h:6379")],
                &[],
                Some("1:c2VjcmV0")
            )
        );
        assert!(shown.contains("ROUTER_REDIS_URL"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
    }

    #[test]
    fn cluster_mode_without_keys_or_pepper_names_what_is_missing() {
        let message = source(None, &[("ROUTER_REDIS_URL", "redis://h:6379")], &[], None)
            .load()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("security.encryption_keys"), "{message}");
        assert!(message.contains("security.api_key_pepper"), "{message}");
        let message = source(None, &[], &[], Some("one:two"))
            .load()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("VERSION:BASE64"), "{message}");
    }
}
