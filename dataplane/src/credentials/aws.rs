//! AWS credentials of a Bedrock deployment, resolved once when the snapshot is built: what
//! the snapshot carries (an API key or a static access key, see [`omg_shared::bedrock`]),
//! else a named profile (`metadata.aws_profile`), else this process's environment —
//! `AWS_BEARER_TOKEN_BEDROCK`, then `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN`, then the profile `AWS_PROFILE` (default `default`) of the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `$HOME/.aws/credentials`).
//!
//! Temporary credentials read here are not refreshed: reload the configuration (or publish a
//! new snapshot) when they rotate. Nothing here logs or prints a secret.

use std::path::{Path, PathBuf};

use omg_shared::bedrock::{AwsKeys, BedrockSettings};
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;

use crate::providers::bedrock::BedrockCredential;

/// What the resolution may read: environment variables and files (injected for tests).
pub trait Source {
    /// An environment variable (`None`: unset or empty).
    fn var(&self, name: &str) -> Option<String>;
    /// A file's text.
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// This process's environment and file system.
pub struct Process;

impl Source for Process {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The deployment's credential, from the snapshot or this process's environment.
pub fn for_deployment(deployment: &Deployment) -> Result<BedrockCredential, String> {
    resolve(deployment, &Process)
}

/// [`for_deployment`] with an explicit source; `Err` says which keys were looked at.
pub fn resolve(deployment: &Deployment, source: &dyn Source) -> Result<BedrockCredential, String> {
    if let Some(keys) = &deployment.aws_keys {
        return Ok(BedrockCredential::Keys(keys.clone()));
    }
    if let Some(key) = &deployment.api_key {
        return Ok(BedrockCredential::ApiKey(key.clone()));
    }
    let settings = BedrockSettings::from_metadata(&deployment.metadata)
        .map_err(|(key, message)| format!("metadata `{key}`: {message}"))?;
    if let Some(profile) = &settings.profile {
        return profile_keys(source, profile).map(BedrockCredential::Keys);
    }
    if let Some(token) = source.var("AWS_BEARER_TOKEN_BEDROCK") {
        return Ok(BedrockCredential::ApiKey(Secret::new(token.trim())));
    }
    match (
        source.var("AWS_ACCESS_KEY_ID"),
        source.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => {
            return Ok(BedrockCredential::Keys(AwsKeys {
                access_key_id: id.trim().to_owned(),
                secret_access_key: Secret::new(secret.trim()),
                session_token: source
                    .var("AWS_SESSION_TOKEN")
                    .map(|token| Secret::new(token.trim())),
            }))
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together".to_owned(),
            )
        }
        (None, None) => {}
    }
    let profile = source
        .var("AWS_PROFILE")
        .unwrap_or_else(|| "default".to_owned());
    let path = credentials_file(source);
    if let Some(Ok(text)) = path.as_deref().map(|path| source.read(path)) {
        if let Some(keys) = parse_profile(&text, &profile)? {
            return Ok(BedrockCredential::Keys(keys));
        }
    }
    Err(format!(
        "no AWS credentials for Bedrock: set the entry's `api_key` (a Bedrock API key, or with \
         `metadata.aws_access_key_id` a secret access key), `metadata.aws_profile`, \
         `providers.bedrock_api_key`, `providers.aws_access_key_id` + \
         `providers.aws_secret_access_key`, or in the data plane's environment \
         AWS_BEARER_TOKEN_BEDROCK, AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or a `{profile}` \
         profile in the shared credentials file"
    ))
}

/// `AWS_SHARED_CREDENTIALS_FILE`, else `$HOME/.aws/credentials`.
fn credentials_file(source: &dyn Source) -> Option<PathBuf> {
    if let Some(path) = source.var("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(PathBuf::from(path));
    }
    source
        .var("HOME")
        .map(|home| Path::new(&home).join(".aws").join("credentials"))
}

/// The keys of a named profile (`metadata.aws_profile`): the file must exist and hold it.
fn profile_keys(source: &dyn Source, profile: &str) -> Result<AwsKeys, String> {
    let path = credentials_file(source).ok_or_else(|| {
        format!("metadata `aws_profile` `{profile}`: no shared credentials file (set AWS_SHARED_CREDENTIALS_FILE or HOME)")
    })?;
    let text = source.read(&path).map_err(|error| {
        format!(
            "metadata `aws_profile` `{profile}`: cannot read {}: {error}",
            path.display()
        )
    })?;
    parse_profile(&text, profile)?.ok_or_else(|| {
        format!(
            "metadata `aws_profile`: {} has no profile `{profile}` with aws_access_key_id and aws_secret_access_key",
            path.display()
        )
    })
}

/// Reads a profile from a shared credentials file (INI: `[name]` sections — `[profile
/// name]` accepted too —, `key = value` lines, `#` and `;` comments). `Ok(None)`: the profile
/// is absent; `Err`: it is present but incomplete.
pub fn parse_profile(text: &str, profile: &str) -> Result<Option<AwsKeys>, String> {
    let mut in_profile = false;
    let mut found = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let name = section.strip_prefix("profile ").map_or(section, str::trim);
            in_profile = name == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(value.to_owned()),
            "aws_secret_access_key" => secret = Some(Secret::new(value)),
            "aws_session_token" => token = Some(Secret::new(value)),
            _ => {}
        }
    }
    if !found {
        return Ok(None);
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(AwsKeys {
            access_key_id,
            secret_access_key,
            session_token: token,
        })),
        _ => Err(format!(
            "the AWS profile `{profile}` lacks aws_access_key_id or aws_secret_access_key (profiles using roles, SSO or processes are not supported)"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use super::*;

    struct Fake {
        vars: HashMap<&'static str, &'static str>,
        files: HashMap<PathBuf, &'static str>,
    }

    impl Source for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).map(|v| (*v).to_owned())
        }
        fn read(&self, path: &Path) -> std::io::Result<String> {
            self.files
                .get(path)
                .map(|t| (*t).to_owned())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    const FILE: &str = "\
# comment
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

[profile prod]
aws_access_key_id=AKIAPROD
aws_secret_access_key=prod-secret
aws_session_token = prod-token
; another comment
[broken]
aws_access_key_id = AKIAONLY
";

    fn deployment(metadata: &[(&str, &str)]) -> Deployment {
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "id": "b#0", "provider": "bedrock", "provider_model": "m", "weight": 1,
            "enabled": true, "pricing": {"input": 0, "output": 0}, "region": "us-east-1"
        }))
        .unwrap();
        deployment.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        deployment
    }

    fn fake(vars: &[(&'static str, &'static str)]) -> Fake {
        Fake {
            vars: vars.iter().copied().collect(),
            files: HashMap::from([(PathBuf::from("/home/u/.aws/credentials"), FILE)]),
        }
    }

    fn keys(credential: BedrockCredential) -> AwsKeys {
        match credential {
            BedrockCredential::Keys(keys) => keys,
            BedrockCredential::ApiKey(_) => panic!("expected keys"),
        }
    }

    #[test]
    fn profiles_are_read_from_the_shared_file() {
        let parsed = parse_profile(FILE, "prod").unwrap().unwrap();
        assert_eq!(parsed.access_key_id, "AKIAPROD");
        assert_eq!(parsed.secret_access_key.expose(), "prod-secret");
        assert_eq!(parsed.session_token.unwrap().expose(), "prod-token");
        assert!(parse_profile(FILE, "missing").unwrap().is_none());
        let error = parse_profile(FILE, "broken").unwrap_err();
        assert!(!error.contains("AKIAONLY"), "{error}");
    }

    #[test]
    fn the_environment_is_the_fallback_in_order() {
        let home = [("HOME", "/home/u")];
        let found = keys(resolve(&deployment(&[("aws_profile", "prod")]), &fake(&home)).unwrap());
        assert_eq!(found.access_key_id, "AKIAPROD");
        let found = keys(resolve(&deployment(&[]), &fake(&home)).unwrap());
        assert_eq!(found.access_key_id, "AKIADEFAULT");
        let vars = [("HOME", "/home/u"), ("AWS_PROFILE", "prod")];
        assert_eq!(
            keys(resolve(&deployment(&[]), &fake(&vars)).unwrap()).access_key_id,
            "AKIAPROD"
        );
        let vars = [
            ("HOME", "/home/u"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
        ];
        let found = keys(resolve(&deployment(&[]), &fake(&vars)).unwrap());
        assert_eq!(found.access_key_id, "AKIAENV");
        assert_eq!(found.session_token.unwrap().expose(), "env-token");
        let vars = [
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-key"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ];
        match resolve(&deployment(&[]), &fake(&vars)).unwrap() {
            BedrockCredential::ApiKey(key) => assert_eq!(key.expose(), "bedrock-key"),
            BedrockCredential::Keys(_) => panic!("the API key comes first"),
        }
    }

    #[test]
    fn missing_credentials_name_the_keys() {
        let error = resolve(&deployment(&[]), &fake(&[])).unwrap_err();
        for key in [
            "api_key",
            "aws_profile",
            "AWS_ACCESS_KEY_ID",
            "providers.bedrock_api_key",
        ] {
            assert!(error.contains(key), "{error}");
        }
        let error = resolve(
            &deployment(&[("aws_profile", "nope")]),
            &fake(&[("HOME", "/home/u")]),
        )
        .unwrap_err();
        assert!(error.contains("nope"), "{error}");
        let error = resolve(&deployment(&[]), &fake(&[("AWS_ACCESS_KEY_ID", "AKIA")])).unwrap_err();
        assert!(error.contains("together"), "{error}");
    }

    #[test]
    fn the_snapshot_credential_wins() {
        let mut with_key = deployment(&[]);
        with_key.api_key = Some(Secret::new("k"));
        let vars = [("AWS_BEARER_TOKEN_BEDROCK", "env")];
        match resolve(&with_key, &fake(&vars)).unwrap() {
            BedrockCredential::ApiKey(key) => assert_eq!(key.expose(), "k"),
            BedrockCredential::Keys(_) => panic!("expected the entry's key"),
        }
    }
}
