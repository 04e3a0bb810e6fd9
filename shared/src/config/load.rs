//! Parsing: YAML text → `${ENV}` expansion → typed config with the failing key's path →
//! cross-field validation. The caller supplies the environment lookup, so this stays free of
//! I/O and is testable.

use std::fmt;

use serde_yaml::Value;

use super::GatewayConfig;

/// One config problem, located by its key path (`model_catalog[2].provider`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, `[i]` for list items; empty for the document itself.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config, reported together so an operator fixes them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single error.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(path, message)])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Which plane's rules a config is validated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The data plane's rules (`server.listen_addr` defaults to `:8080`).
    Dataplane,
    /// The control plane's: the plane-independent rules (catalog, bootstrap, budgets,
    /// reporting, `security.api_key_pepper` length), `server.*` with `server.listen_addr`
    /// defaulting to `:8090`, and [`validate_controlplane`](super::validate_controlplane).
    Controlplane,
}

/// Parses and validates config text with the data plane's rules. `env` resolves `${NAME}`
/// references (write `$${` for a literal `${`); an unset variable is an error naming the key
/// that used it.
pub fn load_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, ConfigErrors> {
    load_layered(text, env, &[], Mode::Dataplane)
}

/// Parses config text, expands its `${NAME}` references with `env`, applies the `ROUTER_*`
/// overrides found in `overrides` (the process's variables as `(name, value)`, `.env` ones
/// merged in by the caller), then deserializes and validates with the rules of `rules`.
///
/// Every `ROUTER_*` name except [`NON_CONFIG_VARIABLES`](super::NON_CONFIG_VARIABLES) must
/// name a scalar key: `ROUTER_` + the key path with `_` for `.` (case-insensitive), or the
/// alias `ROUTER_DB_URL` (`database.url`); lists cannot be overridden. Values are read as the
/// key's type; they are not `${}`-expanded. Other names are ignored. Errors name the variable
/// and the key.
pub fn load_layered(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &[(String, String)],
    rules: Mode,
) -> Result<GatewayConfig, ConfigErrors> {
    let mut document: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_yaml::from_str(text)
            .map_err(|error| ConfigErrors::one("", format!("not valid YAML: {error}")))?
    };
    if matches!(document, Value::Null) {
        document = Value::Mapping(Default::default());
    }
    let mut errors = Vec::new();
    expand_env(&mut document, &mut String::new(), env, &mut errors);
    let mut overrides = match super::env::resolve(overrides) {
        Ok(overrides) => overrides,
        Err(problems) => {
            errors.extend(problems);
            Vec::new()
        }
    };
    for item in &overrides {
        let value = item.candidates.first().cloned().unwrap_or(Value::Null);
        if let Err(message) = super::env::set(&mut document, &item.path, value) {
            errors.push(ConfigError::new(
                item.dotted.clone(),
                item.explain(&message),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let config = deserialize(document, &mut overrides)?;
    let mut errors = match rules {
        Mode::Dataplane => super::validate::validate(&config),
        Mode::Controlplane => {
            let mut errors = super::validate::validate_for_controlplane(&config);
            errors.extend(super::validate::validate_controlplane(&config));
            errors
        }
    };
    if errors.is_empty() {
        return Ok(config);
    }
    for error in &mut errors {
        if let Some(item) = overrides.iter().find(|item| item.dotted == error.path) {
            error.message = format!("{} (set by `{}`)", error.message, item.variable);
        }
    }
    Err(ConfigErrors(errors))
}

/// Deserializes, trying an override's next reading when its current one does not fit the
/// key's type (a duration given as a number, an optional number given as a string).
fn deserialize(
    mut document: Value,
    overrides: &mut [super::env::Override],
) -> Result<GatewayConfig, ConfigErrors> {
    loop {
        let error = match serde_path_to_error::deserialize(document.clone()) {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = error.into_inner().to_string();
        let Some(item) = overrides.iter_mut().find(|item| item.dotted == path) else {
            return Err(ConfigErrors::one(path, message));
        };
        let first = item.first_error.get_or_insert(message).clone();
        let next = item.current + 1;
        let retried = item
            .candidates
            .get(next)
            .cloned()
            .is_some_and(|value| super::env::set(&mut document, &item.path, value).is_ok());
        if !retried {
            return Err(ConfigErrors::one(path, item.explain(&first)));
        }
        item.current = next;
    }
}

/// Reads a file and [`load_str`]s it with the process environment (`${NAME}` references
/// only; no `ROUTER_*` overrides). This is the one place the shared crate touches the file
/// system.
pub fn load_file(path: &std::path::Path) -> Result<GatewayConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors::one(
            "",
            format!("cannot read config file `{}`: {error}", path.display()),
        )
    })?;
    load_str(&text, &|name| std::env::var(name).ok())
}

fn expand_env(
    value: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(text) => {
            if text.contains('$') {
                match expand_string(text, env) {
                    Ok(expanded) => *text = expanded,
                    Err(message) => errors.push(ConfigError::new(path.clone(), message)),
                }
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                expand_env(item, path, env, errors);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.as_str().unwrap_or("?"));
                expand_env(item, path, env, errors);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, env, errors),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn expand_string(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$${` for a literal)".to_owned())?;
            let name = &tail[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            let value = env(name).ok_or_else(|| {
                format!("environment variable `{name}` is not set (referenced as `${{{name}}}`)")
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
