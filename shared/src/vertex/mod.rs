//! Google Vertex AI / Gemini settings shared by config validation and the data plane's
//! adapter: how a `vertex` catalog entry resolves (which API, credential, project, location,
//! base URL), and the service-account JSON key, checked at config load.
//!
//! Two APIs are served by `provider: vertex`, chosen by the entry's `metadata.vertex_api`:
//!
//! - `vertex` (the default): Vertex AI,
//!   `/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:…`, with an
//!   OAuth access token the data plane mints from a **service-account JSON key** (the entry's
//!   `api_key`, else `providers.gcp_json_credentials`). The project is `metadata.vertex_project`,
//!   else `providers.gcp_project_id`, else the key's `project_id`; the location is the entry's
//!   `region`, else `metadata.vertex_location`, else `us-central1`. The base URL defaults to
//!   `https://{location}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com` for
//!   `global`).
//! - `gemini`: the Gemini API (Google AI Studio), `/v1beta/models/{model}:…`, with the entry's
//!   `api_key` (an AI Studio API key) sent as `x-goog-api-key`. The base URL defaults to
//!   `https://generativelanguage.googleapis.com`.
//!
//! Image entries' `vertex_image_*` keys (Imagen) are read by [`image`].

pub mod image;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use crate::config::{CatalogEntry, ProvidersConfig};
use crate::secret::Secret;

/// The metadata key choosing the API (`vertex` or `gemini`).
pub const API_METADATA_KEY: &str = "vertex_api";
/// The metadata key naming the GCP project (Vertex mode). The resolved project is written
/// back under this key in the snapshot's deployment.
pub const PROJECT_METADATA_KEY: &str = "vertex_project";
/// The metadata key naming the location when the entry has no `region` (Vertex mode).
pub const LOCATION_METADATA_KEY: &str = "vertex_location";
/// The location used when none is configured.
pub const DEFAULT_LOCATION: &str = "us-central1";
/// The Gemini API's base URL.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// The OAuth scope of the access tokens minted for Vertex AI.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Which Google API a `vertex` deployment calls (`metadata.vertex_api`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VertexApi {
    /// Vertex AI with a service account's OAuth token (`vertex`, the default).
    #[default]
    Vertex,
    /// The Gemini API (AI Studio) with an API key (`gemini`).
    Gemini,
}

impl VertexApi {
    /// Reads `vertex_api` from a catalog entry's metadata; `Err` says what is accepted.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        match metadata.get(API_METADATA_KEY).map(|value| value.trim()) {
            None | Some("vertex") => Ok(Self::Vertex),
            Some("gemini") => Ok(Self::Gemini),
            Some(other) => Err(format!(
                "`{other}` is not a Google API; use `vertex` (Vertex AI with a service-account key, the default) or `gemini` (the Gemini API with an AI Studio API key)"
            )),
        }
    }
}

/// The base URL of Vertex AI in a location.
pub fn vertex_base_url(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// A service-account JSON key, as Google issues it (only the fields used). `Debug` leaves the
/// private key out.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account` (checked when present).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The project the account belongs to.
    #[serde(default)]
    pub project_id: Option<String>,
    /// The key's id (the JWT's `kid`).
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// The RSA private key, PKCS#8 PEM.
    pub private_key: Secret,
    /// The account (the JWT's `iss`).
    pub client_email: String,
    /// Where access tokens are minted (the JWT's `aud`).
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Parses and checks a service-account JSON key. Errors say what is wrong without quoting
    /// the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        let key: ServiceAccountKey = serde_json::from_str(json).map_err(|error| {
            // serde's message may quote a value; keep only its position.
            format!(
                "is not a service-account JSON key (line {}, column {}: expected an object with `client_email`, `private_key` and `token_uri`)",
                error.line(),
                error.column()
            )
        })?;
        if key
            .kind
            .as_deref()
            .is_some_and(|kind| kind != "service_account")
        {
            return Err(
                "is not a service-account key (its `type` is not `service_account`)".to_owned(),
            );
        }
        if key.client_email.trim().is_empty() {
            return Err("has an empty `client_email`".to_owned());
        }
        if !(key.token_uri.starts_with("https://") || key.token_uri.starts_with("http://")) {
            return Err("has a `token_uri` that is not an http(s) URL".to_owned());
        }
        check_private_key(key.private_key.expose())?;
        Ok(key)
    }

    /// A stable digest of the key's identity and material, naming it without revealing it
    /// (equal keys share one token refresher).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            self.client_email.as_str(),
            self.private_key_id.as_deref().unwrap_or(""),
            self.token_uri.as_str(),
            self.private_key.expose(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(hash.finalize())
    }
}

/// The key must be an RSA private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
fn check_private_key(pem: &str) -> Result<(), String> {
    let bad = || {
        "has a `private_key` that is not an RSA private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)"
            .to_owned()
    };
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.trim_end().strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or_else(bad)?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| bad())?;
    ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|_| bad())?;
    Ok(())
}

/// What a `vertex` entry resolves to.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The base URL (the entry's `endpoint`, else Google's).
    pub endpoint: String,
    /// The credential: the service-account JSON (Vertex) or the API key (Gemini).
    pub credential: Secret,
    /// The location (Vertex mode).
    pub location: Option<String>,
    /// The project (Vertex mode).
    pub project: Option<String>,
}

/// Checks a `vertex` catalog entry and resolves it. `Err` names the entry's field.
pub(crate) fn resolve_entry(
    entry: &CatalogEntry,
    providers: &ProvidersConfig,
) -> Result<Resolved, (&'static str, String)> {
    let api = VertexApi::from_metadata(&entry.metadata)
        .map_err(|message| ("metadata.vertex_api", message))?;
    image::ImageSettings::from_metadata(&entry.metadata, api)?;
    let api_key = entry.api_key.clone().filter(|key| !key.is_empty());
    if api == VertexApi::Gemini {
        let credential = api_key.ok_or((
            "api_key",
            "a `vertex` entry with `vertex_api: gemini` needs `api_key`, a Gemini API (AI Studio) key".to_owned(),
        ))?;
        return Ok(Resolved {
            endpoint: entry
                .endpoint
                .clone()
                .unwrap_or_else(|| GEMINI_BASE_URL.to_owned()),
            credential,
            location: None,
            project: None,
        });
    }
    let (credential, source) = match api_key {
        Some(key) => (key, "api_key"),
        None => match providers.gcp_json_credentials.clone().filter(|k| !k.is_empty()) {
            Some(key) => (key, "providers.gcp_json_credentials"),
            None => return Err((
                "api_key",
                "a `vertex` entry needs a service-account JSON key as `api_key` or in `providers.gcp_json_credentials` (or `metadata.vertex_api: gemini` with a Gemini API key)".to_owned(),
            )),
        },
    };
    let key = ServiceAccountKey::parse(credential.expose())
        .map_err(|problem| ("api_key", format!("`{source}` {problem}")))?;
    let project = entry
        .metadata
        .get(PROJECT_METADATA_KEY)
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .or_else(|| providers.gcp_project_id.clone().filter(|p| !p.is_empty()))
        .or_else(|| key.project_id.clone().filter(|p| !p.is_empty()))
        .ok_or((
            "metadata.vertex_project",
            "no GCP project: set `metadata.vertex_project`, `providers.gcp_project_id`, or use a key with a `project_id`".to_owned(),
        ))?;
    if !valid_name(&project) {
        return Err((
            "metadata.vertex_project",
            format!("`{project}` is not a GCP project id"),
        ));
    }
    let (location, field) = match (&entry.region, entry.metadata.get(LOCATION_METADATA_KEY)) {
        (Some(region), _) => (region.trim().to_owned(), "region"),
        (None, Some(location)) => (location.trim().to_owned(), "metadata.vertex_location"),
        (None, None) => (DEFAULT_LOCATION.to_owned(), "region"),
    };
    if !valid_name(&location) {
        return Err((field, format!("`{location}` is not a Vertex AI location")));
    }
    Ok(Resolved {
        endpoint: entry
            .endpoint
            .clone()
            .unwrap_or_else(|| vertex_base_url(&location)),
        credential,
        location: Some(location),
        project: Some(project),
    })
}

/// Lowercase letters, digits and `-` (GCP project ids and locations; they go in URL paths).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':' || b == b'.'
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The test-only service account shared with the mock upstream.
    const TEST_KEY: &str = include_str!("../../../tests/fixtures/vertex/test-service-account.json");

    #[test]
    fn service_account_keys_are_checked_without_quoting_them() {
        let key = ServiceAccountKey::parse(TEST_KEY).unwrap();
        assert_eq!(
            key.client_email,
            "omg-test@omg-test-project.iam.gserviceaccount.com"
        );
        assert_eq!(key.project_id.as_deref(), Some("omg-test-project"));
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        assert_eq!(key.fingerprint().len(), 64);

        let mut value: serde_json::Value = serde_json::from_str(TEST_KEY).unwrap();
        value["private_key"] =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let error = ServiceAccountKey::parse(&value.to_string()).unwrap_err();
        assert!(error.contains("PKCS#8"), "{error}");
        assert!(!error.contains("AAAA"), "{error}");

        let error = ServiceAccountKey::parse("{\"private_key\": \"secret-stuff\"").unwrap_err();
        assert!(!error.contains("secret-stuff"), "{error}");
        let error = ServiceAccountKey::parse("sk-not-json").unwrap_err();
        assert!(error.contains("service-account JSON"), "{error}");

        let mut value: serde_json::Value = serde_json::from_str(TEST_KEY).unwrap();
        value["type"] = "authorized_user".into();
        assert!(ServiceAccountKey::parse(&value.to_string()).is_err());
    }

    #[test]
    fn apis_and_base_urls() {
        let mut metadata = BTreeMap::new();
        assert_eq!(VertexApi::from_metadata(&metadata), Ok(VertexApi::Vertex));
        metadata.insert(API_METADATA_KEY.to_owned(), "gemini".to_owned());
        assert_eq!(VertexApi::from_metadata(&metadata), Ok(VertexApi::Gemini));
        metadata.insert(API_METADATA_KEY.to_owned(), "palm".to_owned());
        assert!(VertexApi::from_metadata(&metadata).is_err());
        assert_eq!(
            vertex_base_url("europe-west4"),
            "https://europe-west4-aiplatform.googleapis.com"
        );
        assert_eq!(
            vertex_base_url("global"),
            "https://aiplatform.googleapis.com"
        );
    }
}
