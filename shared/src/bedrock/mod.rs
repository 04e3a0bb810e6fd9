//! AWS Bedrock settings shared by config validation and the data plane's adapter: how a
//! `bedrock` catalog entry resolves (region, endpoint, credential, from the entry or
//! `providers.*`) and the `bedrock_*` / `aws_*` metadata keys.
//!
//! # Credentials
//!
//! Resolved once, when the snapshot is built, in this order (the first that applies wins):
//!
//! 1. The entry's `api_key` with `metadata.aws_access_key_id`: a static access key, the
//!    `api_key` being its **secret access key** (so the secret travels like every other
//!    credential: sealed in the database, redacted in logs; the key id is not a secret).
//!    Requests are signed with SigV4.
//! 2. The entry's `api_key` alone: an **Amazon Bedrock API key**, sent as
//!    `Authorization: Bearer`; nothing is signed.
//! 3. `metadata.aws_profile`: the named profile of the data plane's shared credentials file
//!    (read by the data plane).
//! 4. `providers.bedrock_api_key` (Bedrock API key), then `providers.aws_access_key_id` +
//!    `providers.aws_secret_access_key` (+ `providers.aws_session_token`).
//! 5. Otherwise the data plane's environment when it builds its snapshot:
//!    `AWS_BEARER_TOKEN_BEDROCK`, then `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//!    `AWS_SESSION_TOKEN`, then the profile `AWS_PROFILE` (or `default`) of the shared
//!    credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`). A data
//!    plane that finds none refuses the snapshot, naming these keys.
//!
//! Image entries' `bedrock_image_*` keys are read by [`image`].

pub mod image;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{CatalogEntry, ModelType, ProvidersConfig};
use crate::secret::Secret;
pub use image::{ImageFamily, ImageQuality, ImageSettings};

/// Metadata key: the access key id whose secret is the entry's `api_key`.
pub const ACCESS_KEY_ID_KEY: &str = "aws_access_key_id";
/// Metadata key: a named profile of the data plane's shared credentials file.
pub const PROFILE_KEY: &str = "aws_profile";
/// Metadata key: `maxTokens` sent when the client gives no `max_tokens`.
pub const DEFAULT_MAX_TOKENS_KEY: &str = "bedrock_default_max_tokens";
/// Metadata key: the body format of an embedding entry (`titan_text`).
pub const EMBEDDING_FORMAT_KEY: &str = "bedrock_embedding_format";
/// Metadata key: Titan's `dimensions` when the client gives none.
pub const EMBED_DIMS_KEY: &str = "bedrock_embed_dims";
/// Metadata key: Titan's `normalize` (`true` / `false`).
pub const EMBED_NORMALIZE_KEY: &str = "bedrock_embed_normalize";

/// A static AWS access key, as it travels in the snapshot (every part redacted in `Debug`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsKeys {
    /// The access key id (`AKIA…` / `ASIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key id is not a secret, but it names the account's key: keep it out of logs too.
        f.debug_struct("AwsKeys")
            .field("access_key_id", &"[REDACTED]")
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

/// The body format of an embedding entry (`metadata.bedrock_embedding_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EmbeddingFormat {
    /// Amazon Titan text embeddings (`amazon.titan-embed-text-v1` / `-v2:0`):
    /// `{"inputText", "dimensions"?, "normalize"?}`, one text per request.
    #[default]
    TitanText,
}

/// Per-deployment settings, read from the catalog entry's `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BedrockSettings {
    /// `inferenceConfig.maxTokens` when the client sends none (`None`: left to the model).
    pub default_max_tokens: Option<u64>,
    /// Embedding body format.
    pub embedding_format: EmbeddingFormat,
    /// Titan `dimensions` when the client sends none.
    pub embed_dims: Option<u64>,
    /// Titan `normalize`.
    pub embed_normalize: Option<bool>,
    /// A named profile of the shared credentials file.
    pub profile: Option<String>,
    /// The access key id of a static key whose secret is the entry's `api_key`.
    pub access_key_id: Option<String>,
    /// Image generation (`bedrock_image_*`).
    pub image: ImageSettings,
}

impl BedrockSettings {
    /// Reads the `bedrock_*` and `aws_*` metadata keys; `Err` names the bad key.
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, (&'static str, String)> {
        let positive = |key: &'static str| -> Result<Option<u64>, (&'static str, String)> {
            metadata
                .get(key)
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err((key, format!("`{value}` is not a positive integer"))),
                })
                .transpose()
        };
        let name = |key: &'static str| -> Result<Option<String>, (&'static str, String)> {
            metadata
                .get(key)
                .map(|value| {
                    let value = value.trim();
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
                        Err((key, "must be a non-empty name without spaces".to_owned()))
                    } else {
                        Ok(value.to_owned())
                    }
                })
                .transpose()
        };
        let embedding_format = match metadata.get(EMBEDDING_FORMAT_KEY).map(|v| v.trim()) {
            None | Some("titan_text") => EmbeddingFormat::TitanText,
            Some(other) => {
                return Err((
                    EMBEDDING_FORMAT_KEY,
                    format!("`{other}` is not a supported embedding format; use `titan_text`"),
                ))
            }
        };
        let embed_normalize = match metadata.get(EMBED_NORMALIZE_KEY).map(|v| v.trim()) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err((
                    EMBED_NORMALIZE_KEY,
                    format!("`{other}` is not `true` or `false`"),
                ))
            }
        };
        Ok(Self {
            default_max_tokens: positive(DEFAULT_MAX_TOKENS_KEY)?,
            embedding_format,
            embed_dims: positive(EMBED_DIMS_KEY)?,
            embed_normalize,
            profile: name(PROFILE_KEY)?,
            access_key_id: name(ACCESS_KEY_ID_KEY)?,
            image: ImageSettings::from_metadata(metadata)?,
        })
    }
}

/// The config path of a metadata key, for error messages.
fn metadata_path(key: &'static str) -> &'static str {
    match key {
        ACCESS_KEY_ID_KEY => "metadata.aws_access_key_id",
        PROFILE_KEY => "metadata.aws_profile",
        DEFAULT_MAX_TOKENS_KEY => "metadata.bedrock_default_max_tokens",
        EMBEDDING_FORMAT_KEY => "metadata.bedrock_embedding_format",
        EMBED_DIMS_KEY => "metadata.bedrock_embed_dims",
        EMBED_NORMALIZE_KEY => "metadata.bedrock_embed_normalize",
        image::IMAGE_FORMAT_KEY => "metadata.bedrock_image_format",
        image::IMAGE_TASK_TYPE_KEY => "metadata.bedrock_image_task_type",
        image::IMAGE_QUALITY_KEY => "metadata.bedrock_image_quality",
        image::IMAGE_CFG_SCALE_KEY => "metadata.bedrock_image_cfg_scale",
        image::IMAGE_STYLE_KEY => "metadata.bedrock_image_style",
        image::IMAGE_SEED_KEY => "metadata.bedrock_image_seed",
        image::IMAGE_NEGATIVE_PROMPT_KEY => "metadata.bedrock_image_negative_prompt",
        _ => "metadata",
    }
}

/// The default endpoint of a region.
pub fn default_endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// An AWS region name as it may appear in a host name (`us-east-1`, `eu-central-2`, …).
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// What a `bedrock` entry resolves to in the snapshot.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub endpoint: String,
    pub region: String,
    /// A Bedrock API key (bearer).
    pub api_key: Option<Secret>,
    /// A static access key (SigV4).
    pub aws_keys: Option<AwsKeys>,
}

/// Checks a `bedrock` catalog entry and resolves its region, endpoint and configured
/// credential (see the module docs; `None` for both leaves it to the data plane's
/// environment). `Err` names the entry's field.
pub(crate) fn resolve_entry(
    entry: &CatalogEntry,
    providers: &ProvidersConfig,
) -> Result<Resolved, (&'static str, String)> {
    let settings = BedrockSettings::from_metadata(&entry.metadata)
        .map_err(|(key, message)| (metadata_path(key), message))?;
    let (region, from) = match (&entry.region, &providers.aws_region) {
        (Some(region), _) => (region.trim(), ""),
        (None, Some(region)) => (region.trim(), " (from `providers.aws_region`)"),
        (None, None) => {
            return Err((
                "region",
                "a `bedrock` entry needs `region`, e.g. `region: us-east-1`, or `providers.aws_region` for every entry".to_owned(),
            ))
        }
    };
    if !valid_region(region) {
        return Err((
            "region",
            format!("`{region}`{from} is not an AWS region name such as `us-east-1`"),
        ));
    }
    if entry
        .provider_model
        .as_deref()
        .is_some_and(|m| m.trim().is_empty())
    {
        return Err((
            "provider_model",
            "must not be empty: it is the Bedrock model id, inference profile id or ARN".to_owned(),
        ));
    }
    match entry.model_type {
        ModelType::Llm | ModelType::Embedding => {}
        ModelType::Image => {
            let model = entry.provider_model.as_deref().unwrap_or(&entry.alias);
            settings
                .image
                .family(model.trim())
                .map_err(|(key, message)| (metadata_path(key), message))?;
        }
        _ => {
            return Err((
                "model_type",
                "a `bedrock` entry serves `llm` (Converse), `embedding` (Titan text embeddings) or `image` (Titan, Nova Canvas, Stability AI image generation)"
                    .to_owned(),
            ))
        }
    }
    let endpoint = entry
        .endpoint
        .clone()
        .unwrap_or_else(|| default_endpoint(region));
    let entry_key = entry.api_key.clone().filter(|key| !key.is_empty());
    let mut resolved = Resolved {
        endpoint,
        region: region.to_owned(),
        api_key: None,
        aws_keys: None,
    };
    match (settings.access_key_id, entry_key) {
        (Some(access_key_id), Some(secret)) => {
            resolved.aws_keys = Some(AwsKeys {
                access_key_id,
                secret_access_key: secret,
                session_token: None,
            });
            return Ok(resolved);
        }
        (Some(_), None) => {
            return Err((
                "api_key",
                "with `metadata.aws_access_key_id`, the entry's `api_key` must hold that key's secret access key".to_owned(),
            ))
        }
        (None, Some(key)) => {
            resolved.api_key = Some(key);
            return Ok(resolved);
        }
        (None, None) => {}
    }
    if settings.profile.is_some() {
        return Ok(resolved);
    }
    let provider_keys = (
        providers
            .aws_access_key_id
            .as_ref()
            .filter(|key| !key.is_empty()),
        providers
            .aws_secret_access_key
            .clone()
            .filter(|key| !key.is_empty()),
    );
    if let Some(key) = providers.bedrock_api_key.clone().filter(|k| !k.is_empty()) {
        resolved.api_key = Some(key);
        return Ok(resolved);
    }
    match provider_keys {
        (Some(id), Some(secret)) => {
            resolved.aws_keys = Some(AwsKeys {
                access_key_id: id.expose().trim().to_owned(),
                secret_access_key: secret,
                session_token: providers
                    .aws_session_token
                    .clone()
                    .filter(|token| !token.is_empty()),
            })
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err((
                "api_key",
                "`providers.aws_access_key_id` and `providers.aws_secret_access_key` go together; set both (or neither)".to_owned(),
            ))
        }
        (None, None) => {}
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn settings_from_metadata() {
        let settings = BedrockSettings::from_metadata(&meta(&[
            ("bedrock_default_max_tokens", "512"),
            ("bedrock_embed_dims", "256"),
            ("bedrock_embed_normalize", "true"),
            ("aws_profile", "prod"),
        ]))
        .unwrap();
        assert_eq!(settings.default_max_tokens, Some(512));
        assert_eq!(settings.embed_dims, Some(256));
        assert_eq!(settings.embed_normalize, Some(true));
        assert_eq!(settings.profile.as_deref(), Some("prod"));
        for (key, value) in [
            ("bedrock_default_max_tokens", "0"),
            ("bedrock_embed_dims", "x"),
            ("bedrock_embed_normalize", "yes"),
            ("bedrock_embedding_format", "cohere"),
            ("aws_profile", "a b"),
        ] {
            let (bad, _) = BedrockSettings::from_metadata(&meta(&[(key, value)])).unwrap_err();
            assert_eq!(bad, key);
        }
    }

    #[test]
    fn image_entries_are_checked_at_load_naming_the_key() {
        let errors_of = |metadata: &str, model: &str| {
            let text = format!(
                "model_catalog:\n  - alias: pics\n    provider: bedrock\n    model_type: image\n    region: us-east-1\n    api_key: k\n    provider_model: \"{model}\"\n    metadata: {metadata}\n"
            );
            match crate::config::load_str(&text, &|_| None) {
                Ok(_) => String::from("<no error>"),
                Err(errors) => errors.to_string(),
            }
        };
        let titan = "amazon.titan-image-generator-v2:0";
        assert_eq!(
            errors_of("{bedrock_image_quality: premium}", titan),
            "<no error>"
        );
        for (metadata, model, needle) in [
            (
                "{bedrock_image_style: anime}",
                titan,
                "metadata.bedrock_image_style",
            ),
            (
                "{bedrock_image_task_type: INPAINTING}",
                titan,
                "metadata.bedrock_image_task_type",
            ),
            (
                "{}",
                "my-provisioned-model",
                "metadata.bedrock_image_format",
            ),
            (
                "{bedrock_image_cfg_scale: x}",
                titan,
                "metadata.bedrock_image_cfg_scale",
            ),
        ] {
            let message = errors_of(metadata, model);
            assert!(message.contains(needle), "{metadata}: {message}");
        }
    }

    #[test]
    fn regions() {
        for good in ["us-east-1", "eu-central-2", "ap-southeast-1"] {
            assert!(valid_region(good), "{good}");
        }
        for bad in ["", "US-EAST-1", "us east", "-us", "us.east", "evil.com/"] {
            assert!(!valid_region(bad), "{bad}");
        }
        assert_eq!(
            default_endpoint("us-west-2"),
            "https://bedrock-runtime.us-west-2.amazonaws.com"
        );
    }

    #[test]
    fn keys_are_redacted_in_debug() {
        let keys = AwsKeys {
            access_key_id: "AKIAEXAMPLE".to_owned(),
            secret_access_key: Secret::new("very-secret"),
            session_token: Some(Secret::new("token-secret")),
        };
        let text = format!("{keys:?}");
        for secret in ["AKIAEXAMPLE", "very-secret", "token-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
