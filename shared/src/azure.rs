//! Azure OpenAI settings shared by config validation and the data plane's adapter: how an
//! `azure` catalog entry resolves (resource endpoint, credential, `api-version`, from the entry
//! or `providers.azure_openai_*`), the `api-version` format, and the `azure_auth` metadata key.

use std::collections::BTreeMap;

use crate::config::{CatalogEntry, ProvidersConfig};

/// The metadata key choosing the credential header.
pub const AUTH_METADATA_KEY: &str = "azure_auth";
/// The Entra ID tenant (directory) of `azure_auth: entra`.
pub const TENANT_ID_METADATA_KEY: &str = "azure_tenant_id";
/// The application (client) id of `azure_auth: entra`; its secret is the entry's `api_key`.
pub const CLIENT_ID_METADATA_KEY: &str = "azure_client_id";
/// The Entra ID authority host of `azure_auth: entra` (sovereign clouds, tests).
pub const AUTHORITY_METADATA_KEY: &str = "azure_authority_host";
/// Microsoft Entra ID's public cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The OAuth scope of Azure OpenAI (Cognitive Services).
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The first `api-version` (by its date) whose streams honour `stream_options.include_usage`
/// (`2024-08-01-preview`; GA from `2024-10-21`). Older versions refuse the parameter, so the
/// gateway does not add it and estimates streamed usage instead.
pub const STREAM_USAGE_SINCE: &str = "2024-08-01";

/// How an Azure deployment authenticates (`metadata.azure_auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AzureAuth {
    /// `api-key: <api_key>` (`azure_auth: api_key`, the default).
    #[default]
    ApiKey,
    /// `Authorization: Bearer <api_key>` (`azure_auth: bearer`): a Microsoft Entra ID access
    /// token the operator injects as the entry's `api_key`. The gateway does not fetch or
    /// refresh it: the operator replaces the token before it expires (a config reload
    /// picks it up). Prefer `entra`.
    Bearer,
    /// `Authorization: Bearer <token>` with tokens the gateway obtains from Microsoft Entra
    /// ID itself (`azure_auth: entra`): the OAuth client-credentials grant of an app
    /// registration (`azure_tenant_id`, `azure_client_id`, the client secret as `api_key`),
    /// renewed in the background before they expire ([`EntraClient`]).
    Entra,
}

/// An Entra ID app registration that the data plane gets Azure OpenAI tokens for.
#[derive(Clone, PartialEq, Eq)]
pub struct EntraClient {
    /// The token endpoint: `<authority>/<tenant>/oauth2/v2.0/token`.
    pub token_url: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: crate::secret::Secret,
}

impl std::fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl EntraClient {
    /// The app registration of an `azure_auth: entra` entry: its metadata and client
    /// secret. `Err` names the metadata key and says what is wrong.
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
        client_secret: Option<&crate::secret::Secret>,
    ) -> Result<Self, (&'static str, String)> {
        let id = |key: &'static str, what: &str| -> Result<String, (&'static str, String)> {
            let value = metadata.get(key).map(|v| v.trim()).unwrap_or_default();
            if value.is_empty() {
                return Err((key, format!("`azure_auth: entra` needs `{key}` ({what})")));
            }
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err((
                    key,
                    format!("`{value}` is not a {what} (a GUID or a domain name)"),
                ));
            }
            Ok(value.to_owned())
        };
        let tenant = id(TENANT_ID_METADATA_KEY, "the Entra ID tenant id")?;
        let client_id = id(CLIENT_ID_METADATA_KEY, "the app registration's client id")?;
        let authority = metadata
            .get(AUTHORITY_METADATA_KEY)
            .map_or(DEFAULT_AUTHORITY, |v| v.trim())
            .trim_end_matches('/');
        if !(authority.starts_with("https://") || authority.starts_with("http://")) {
            return Err((
                AUTHORITY_METADATA_KEY,
                format!("`{authority}` is not a URL such as `{DEFAULT_AUTHORITY}`"),
            ));
        }
        let client_secret = client_secret
            .filter(|secret| !secret.is_empty())
            .cloned()
            .ok_or((
                "api_key",
                "`azure_auth: entra` needs the app registration's client secret as `api_key`"
                    .to_owned(),
            ))?;
        Ok(Self {
            token_url: format!("{authority}/{tenant}/oauth2/v2.0/token"),
            client_id,
            client_secret,
        })
    }
}

impl AzureAuth {
    /// Reads `azure_auth` from a catalog entry's metadata; `Err` says what is accepted.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        match metadata.get(AUTH_METADATA_KEY).map(|value| value.trim()) {
            None | Some("api_key") => Ok(Self::ApiKey),
            Some("bearer") => Ok(Self::Bearer),
            Some("entra") => Ok(Self::Entra),
            Some(other) => Err(format!(
                "`{other}` is not an Azure auth mode; use `api_key` (the `api-key` header, the default), `entra` (tokens the gateway gets from Entra ID with `azure_tenant_id`, `azure_client_id` and the client secret as `api_key`) or `bearer` (a static Entra ID token given as `api_key`)"
            )),
        }
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DD-preview`, as Azure OpenAI names its API versions.
pub fn valid_api_version(version: &str) -> bool {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && digits(5..7) && digits(8..10)) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Whether streams of a (valid) `api-version` can report usage ([`STREAM_USAGE_SINCE`]).
pub fn stream_usage_supported(version: &str) -> bool {
    version
        .get(..10)
        .is_some_and(|date| date >= STREAM_USAGE_SINCE)
}

/// Checks an `azure` catalog entry and resolves its `api-version` (the entry's, else
/// `providers.azure_openai_version`). `has_endpoint` / `has_key`: whether the entry or
/// `providers.*` gave one. `Err` names the entry's field.
pub(crate) fn resolve_entry(
    entry: &CatalogEntry,
    providers: &ProvidersConfig,
    has_endpoint: bool,
    has_key: bool,
) -> Result<String, (&'static str, String)> {
    if !has_endpoint {
        return Err((
            "endpoint",
            "an `azure` entry needs `endpoint`, the resource URL `https://<resource>.openai.azure.com`, or `providers.azure_openai_endpoint`".to_owned(),
        ));
    }
    if !has_key {
        return Err((
            "api_key",
            "an `azure` entry needs `api_key` (the resource key, or an Entra ID token with `metadata.azure_auth: bearer`) or `providers.azure_openai_key`".to_owned(),
        ));
    }
    if entry
        .deployment
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return Err((
            "deployment",
            "must not be empty: it is the deployment name of the Azure OpenAI resource (leave it out to use `provider_model`)".to_owned(),
        ));
    }
    let (version, from) = match (&entry.api_version, &providers.azure_openai_version) {
        (Some(version), _) => (version, ""),
        (None, Some(version)) => (version, " (from `providers.azure_openai_version`)"),
        (None, None) => {
            return Err((
                "api_version",
                "an `azure` entry needs `api_version`, e.g. `api_version: \"2024-10-21\"`, or `providers.azure_openai_version` for every entry".to_owned(),
            ))
        }
    };
    if !valid_api_version(version) {
        return Err((
            "api_version",
            format!("`{version}`{from} is not an Azure OpenAI api-version; use `YYYY-MM-DD` or `YYYY-MM-DD-preview`, e.g. `2024-10-21`"),
        ));
    }
    let auth = AzureAuth::from_metadata(&entry.metadata)
        .map_err(|message| ("metadata.azure_auth", message))?;
    if auth == AzureAuth::Entra {
        let secret = entry
            .api_key
            .as_ref()
            .or(providers.azure_openai_key.as_ref());
        EntraClient::from_metadata(&entry.metadata, secret).map_err(|(key, message)| {
            (
                match key {
                    TENANT_ID_METADATA_KEY => "metadata.azure_tenant_id",
                    CLIENT_ID_METADATA_KEY => "metadata.azure_client_id",
                    AUTHORITY_METADATA_KEY => "metadata.azure_authority_host",
                    _ => "api_key",
                },
                message,
            )
        })?;
    }
    Ok(version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_clients_need_a_tenant_a_client_id_and_a_secret() {
        let secret = crate::secret::Secret::new("s3cret");
        let mut metadata = BTreeMap::new();
        metadata.insert("azure_auth".to_owned(), "entra".to_owned());
        assert_eq!(AzureAuth::from_metadata(&metadata), Ok(AzureAuth::Entra));
        let missing = EntraClient::from_metadata(&metadata, Some(&secret)).unwrap_err();
        assert_eq!(missing.0, TENANT_ID_METADATA_KEY);
        metadata.insert(
            TENANT_ID_METADATA_KEY.to_owned(),
            "contoso.onmicrosoft.com".to_owned(),
        );
        metadata.insert(CLIENT_ID_METADATA_KEY.to_owned(), "0f0e-11".to_owned());
        let client = EntraClient::from_metadata(&metadata, Some(&secret)).expect("valid");
        assert_eq!(
            client.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(!format!("{client:?}").contains("s3cret"));
        assert_eq!(
            EntraClient::from_metadata(&metadata, None).unwrap_err().0,
            "api_key"
        );
        metadata.insert(TENANT_ID_METADATA_KEY.to_owned(), "a/../b".to_owned());
        assert!(EntraClient::from_metadata(&metadata, Some(&secret)).is_err());
    }

    #[test]
    fn api_versions() {
        for good in ["2024-02-01", "2024-10-21", "2025-01-01-preview"] {
            assert!(valid_api_version(good), "{good}");
        }
        for bad in [
            "",
            "2024-2-01",
            "2024-13-01",
            "2024-02-00",
            "latest",
            "2024-02-01-beta",
            " 2024-02-01",
            "２０２４-02-01",
        ] {
            assert!(!valid_api_version(bad), "{bad}");
        }
        assert!(!stream_usage_supported("2024-06-01"));
        assert!(!stream_usage_supported("2024-07-01-preview"));
        assert!(stream_usage_supported("2024-08-01-preview"));
        assert!(stream_usage_supported("2024-10-21"));
        assert!(stream_usage_supported("2025-04-01-preview"));
    }

    #[test]
    fn auth_modes() {
        let meta = |value: &str| BTreeMap::from([(AUTH_METADATA_KEY.to_owned(), value.to_owned())]);
        assert_eq!(
            AzureAuth::from_metadata(&BTreeMap::new()),
            Ok(AzureAuth::ApiKey)
        );
        assert_eq!(
            AzureAuth::from_metadata(&meta("api_key")),
            Ok(AzureAuth::ApiKey)
        );
        assert_eq!(
            AzureAuth::from_metadata(&meta(" bearer ")),
            Ok(AzureAuth::Bearer)
        );
        assert_eq!(
            AzureAuth::from_metadata(&meta("entra")),
            Ok(AzureAuth::Entra)
        );
        let error = AzureAuth::from_metadata(&meta("kerberos")).unwrap_err();
        assert!(
            error.contains("`kerberos`") && error.contains("entra") && error.contains("bearer"),
            "{error}"
        );
    }
}
