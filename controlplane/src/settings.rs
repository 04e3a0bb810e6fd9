//! Reads the control plane's configuration: the YAML file (`--config` / `ROUTER_CONFIG_FILE`,
//! optional), a `.env` file, and `ROUTER_*` environment overrides (the process environment
//! wins over `.env`). Every problem is reported at once with its key path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use omg_shared::config::{load_layered, parse_dotenv, ConfigErrors, GatewayConfig, Mode};

/// Where the settings came from (for the start-up log).
#[derive(Debug, Clone)]
pub struct Sources {
    pub config_file: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
}

/// Loads and validates the control plane's config. `env` is the process environment.
pub fn load(
    config_file: Option<&Path>,
    env_file: Option<&Path>,
    env: Vec<(String, String)>,
) -> Result<(GatewayConfig, Sources), ConfigErrors> {
    let mut merged: HashMap<String, String> = HashMap::new();
    let mut env_file_used = None;
    let default_env = Path::new(".env");
    let env_path = env_file.or_else(|| default_env.exists().then_some(default_env));
    if let Some(path) = env_path {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(
                "",
                format!("cannot read env file `{}`: {e}", path.display()),
            )
        })?;
        for (k, v) in parse_dotenv(&text)? {
            merged.insert(k, v);
        }
        env_file_used = Some(path.to_path_buf());
    }
    for (k, v) in env {
        merged.insert(k, v);
    }
    let text = match config_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(
                "",
                format!("cannot read config file `{}`: {e}", path.display()),
            )
        })?,
        None => String::new(),
    };
    let overrides: Vec<(String, String)> = merged
        .iter()
        .filter(|(k, _)| k.starts_with("ROUTER_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let lookup = |name: &str| merged.get(name).cloned();
    let config = load_layered(&text, &lookup, &overrides, Mode::Controlplane)?;
    Ok((
        config,
        Sources {
            config_file: config_file.map(Path::to_path_buf),
            env_file: env_file_used,
        },
    ))
}

/// A database URL with its password replaced by `****`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:****@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("garbage"), "****");
    }
}
