//! `ROUTER_*` environment overrides: every scalar key of the schema can be set by a variable
//! named `ROUTER_` + its path with `_` for `.`, upper-cased (`rate_limits.default_tokens_per_minute`
//! → `ROUTER_RATE_LIMITS_DEFAULT_TOKENS_PER_MINUTE`). The key list is derived from the
//! serialized defaults, so new keys are overridable without a table to maintain. Values are
//! inserted into the YAML document before it is deserialized, typed after the key's default.

use serde_yaml::{Mapping, Value};

use super::{ConfigError, GatewayConfig};

/// `ROUTER_*` variables that configure the process rather than a config key.
pub const NON_CONFIG_VARIABLES: &[&str] = &["ROUTER_CONFIG_FILE", "ROUTER_ENV_FILE"];

const PREFIX: &str = "ROUTER_";

/// Short names kept from the earlier version: (variable, key path).
const ALIASES: &[(&str, &str)] = &[("ROUTER_DB_URL", "database.url")];

/// A scalar key of the schema and its default value.
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    /// Path segments, `["database", "url"]`.
    pub path: Vec<String>,
    /// The serialized default (`Null` for optional keys).
    pub default: Value,
}

impl Leaf {
    /// `database.url`
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// `ROUTER_DATABASE_URL`
    pub fn variable(&self) -> String {
        format!("{PREFIX}{}", self.path.join("_").to_ascii_uppercase())
    }
}

/// The overridable keys (every scalar reachable through mappings) and the list-valued keys
/// (never overridable), from the serialized default config.
pub(super) fn schema_keys() -> Result<(Vec<Leaf>, Vec<Vec<String>>), String> {
    let defaults = serde_yaml::to_value(GatewayConfig::default())
        .map_err(|error| format!("cannot list the config keys: {error}"))?;
    let mut leaves = Vec::new();
    let mut lists = Vec::new();
    walk(&defaults, &mut Vec::new(), &mut leaves, &mut lists);
    Ok((leaves, lists))
}

fn walk(
    value: &Value,
    path: &mut Vec<String>,
    leaves: &mut Vec<Leaf>,
    lists: &mut Vec<Vec<String>>,
) {
    match value {
        Value::Mapping(map) => {
            for (key, item) in map {
                if let Some(key) = key.as_str() {
                    path.push(key.to_owned());
                    walk(item, path, leaves, lists);
                    path.pop();
                }
            }
        }
        Value::Sequence(_) => lists.push(path.clone()),
        Value::Tagged(_) => {}
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => leaves.push(Leaf {
            path: path.clone(),
            default: value.clone(),
        }),
    }
}

/// Every variable name that sets a key, with the key's index in `leaves` (aliases included).
pub(super) fn variables(leaves: &[Leaf]) -> Vec<(String, usize)> {
    let mut names: Vec<(String, usize)> = leaves
        .iter()
        .enumerate()
        .map(|(index, leaf)| (leaf.variable(), index))
        .collect();
    for (alias, target) in ALIASES {
        if let Some(index) = leaves.iter().position(|leaf| leaf.dotted() == *target) {
            names.push(((*alias).to_owned(), index));
        }
    }
    names
}

/// One override to apply: the value candidates are tried in turn until one deserializes.
#[derive(Debug, Clone)]
pub(super) struct Override {
    /// The variable's name as given.
    pub variable: String,
    /// The key it sets.
    pub path: Vec<String>,
    /// `path` joined with `.`.
    pub dotted: String,
    /// The raw value.
    raw: String,
    /// Typed readings of the value, best first.
    pub candidates: Vec<Value>,
    /// The candidate currently in the document.
    pub current: usize,
    /// The error of the first candidate, reported when none fits.
    pub first_error: Option<String>,
}

impl Override {
    /// `message` with the variable named.
    pub fn explain(&self, message: &str) -> String {
        format!("{message} (from environment variable `{}`)", self.variable)
    }
}

/// Resolves the `ROUTER_*` variables among `vars` (others are ignored) to the keys they set.
/// Unknown names and values that cannot be read as the key's type are errors naming the
/// variable. When a name appears twice, the later value wins.
pub(super) fn resolve(vars: &[(String, String)]) -> Result<Vec<Override>, Vec<ConfigError>> {
    let (leaves, lists) = schema_keys().map_err(|message| vec![ConfigError::new("", message)])?;
    let names = variables(&leaves);
    let mut errors = Vec::new();
    let mut resolved: Vec<Override> = Vec::new();
    for (name, raw) in vars {
        if !name.starts_with(PREFIX) || NON_CONFIG_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let wanted = name.to_ascii_uppercase();
        let Some(&(_, index)) = names.iter().find(|(variable, _)| *variable == wanted) else {
            errors.push(ConfigError::new(
                "",
                unknown_variable(name, &names, &leaves, &lists),
            ));
            continue;
        };
        let leaf = &leaves[index];
        let dotted = leaf.dotted();
        let candidates = match candidates(raw, &leaf.default) {
            Ok(candidates) => candidates,
            Err(message) => {
                errors.push(ConfigError::new(
                    dotted,
                    format!("{message} (from environment variable `{name}`)"),
                ));
                continue;
            }
        };
        if let Some(earlier) = resolved.iter_mut().find(|o| o.dotted == dotted) {
            if earlier.variable == *name || earlier.raw == *raw {
                earlier.variable.clone_from(name);
                earlier.raw.clone_from(raw);
                earlier.candidates = candidates;
            } else {
                errors.push(ConfigError::new(
                    dotted,
                    format!(
                        "set by both `{}` and `{name}` with different values; keep one",
                        earlier.variable
                    ),
                ));
            }
            continue;
        }
        resolved.push(Override {
            variable: name.clone(),
            path: leaf.path.clone(),
            dotted,
            raw: raw.clone(),
            candidates,
            current: 0,
            first_error: None,
        });
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}

/// The readings of `raw` for a key whose default is `default`: booleans and numbers must
/// parse as such; strings stay strings (then, for keys such as durations that also take a
/// number, the YAML scalar); optional keys (null default) are tried as a string first, so
/// secrets and URLs that look like numbers stay intact, and an empty value unsets them.
fn candidates(raw: &str, default: &Value) -> Result<Vec<Value>, String> {
    let text = raw.trim();
    match default {
        Value::Bool(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(vec![Value::Bool(true)]),
            "false" | "0" | "no" | "off" => Ok(vec![Value::Bool(false)]),
            _ => Err(format!("`{raw}` is not a boolean; use `true` or `false`")),
        },
        Value::Number(number) if number.is_f64() => match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(vec![Value::Number(value.into())]),
            _ => Err(format!("`{raw}` is not a number")),
        },
        Value::Number(_) => {
            if let Ok(value) = text.parse::<u64>() {
                Ok(vec![Value::Number(value.into())])
            } else if let Ok(value) = text.parse::<i64>() {
                Ok(vec![Value::Number(value.into())])
            } else {
                Err(format!("`{raw}` is not a whole number"))
            }
        }
        Value::Null if raw.is_empty() => Ok(vec![Value::Null]),
        _ => {
            let mut readings = vec![Value::String(raw.to_owned())];
            if let Ok(scalar) = serde_yaml::from_str::<Value>(raw) {
                if matches!(scalar, Value::Bool(_) | Value::Number(_) | Value::Null) {
                    readings.push(scalar);
                }
            }
            Ok(readings)
        }
    }
}

/// Sets `path` in `document` to `value`, creating the mappings on the way.
pub(super) fn set(document: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key path".to_owned());
    };
    let mut node = document;
    for (depth, segment) in parents.iter().enumerate() {
        let map = as_mapping(node, &path[..depth])?;
        node = map
            .entry(Value::String(segment.clone()))
            .or_insert(Value::Null);
    }
    as_mapping(node, parents)?.insert(Value::String(last.clone()), value);
    Ok(())
}

fn as_mapping<'a>(node: &'a mut Value, path: &[String]) -> Result<&'a mut Mapping, String> {
    if node.is_null() {
        *node = Value::Mapping(Mapping::new());
    }
    match node {
        Value::Mapping(map) => Ok(map),
        _ if path.is_empty() => Err("the config file is not a mapping of keys".to_owned()),
        _ => Err(format!(
            "`{}` is not a mapping in the file, so no key inside it can be set",
            path.join(".")
        )),
    }
}

fn unknown_variable(
    name: &str,
    names: &[(String, usize)],
    leaves: &[Leaf],
    lists: &[Vec<String>],
) -> String {
    let wanted = name.to_ascii_uppercase();
    let key = wanted[PREFIX.len()..].to_ascii_lowercase();
    if let Some(list) = lists.iter().find(|list| {
        let joined = list.join("_");
        key == joined || key.starts_with(&format!("{joined}_"))
    }) {
        return format!(
            "`{name}`: `{}` is a list, which can only be set in the config file",
            list.join(".")
        );
    }
    let mut ranked: Vec<(usize, &String, usize)> = names
        .iter()
        .map(|(variable, index)| (closeness(&wanted, variable), variable, *index))
        .collect();
    ranked.sort();
    let closest: Vec<String> = ranked
        .iter()
        .take(3)
        .map(|(_, variable, index)| format!("`{variable}` (`{}`)", leaves[*index].dotted()))
        .collect();
    format!(
        "`{name}`: no config key matches this variable; closest known: {}. A variable is \
         `ROUTER_` + a key path with `_` for `.` (see docs/configuration.md)",
        closest.join(", ")
    )
}

/// How far `variable` is from what was typed: the edit distance, or (plus one) the edit
/// distance to its start, so a truncated or section-only name finds the keys it begins.
fn closeness(typed: &str, variable: &str) -> usize {
    let start = variable.get(..typed.len()).unwrap_or(variable);
    distance(typed, variable).min(distance(typed, start) + 1)
}

/// Levenshtein distance over bytes.
fn distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("DATABSE", "DATABASE"), 1);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn set_creates_missing_sections_and_refuses_scalars() {
        let mut document = Value::Mapping(Mapping::new());
        let path = vec![
            "admin".to_owned(),
            "session".to_owned(),
            "cookie_name".to_owned(),
        ];
        assert!(set(&mut document, &path, Value::String("x".to_owned())).is_ok());
        assert_eq!(
            document["admin"]["session"]["cookie_name"],
            Value::String("x".to_owned())
        );
        let mut document: Value = serde_yaml::from_str("admin: 3").unwrap_or(Value::Null);
        let message = set(&mut document, &path, Value::Null)
            .err()
            .unwrap_or_default();
        assert!(message.contains("`admin` is not a mapping"), "{message}");
    }
}
