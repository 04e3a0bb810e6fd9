//! Azure OpenAI: OpenAI's wire format at Azure's paths, with Azure's credential header and
//! a few Azure extras smoothed away.
//!
//! - Requests go to `<endpoint>/openai/deployments/<deployment>/<operation>?api-version=<v>`
//!   (`chat/completions`, `completions`, `embeddings`, `images/generations`): `<deployment>` is the catalog entry's
//!   `deployment`, else its `provider_model`, percent-encoded as one path segment; `<v>` is the
//!   entry's `api_version`, else `providers.azure_openai_version` (resolved into the snapshot).
//!   An endpoint given with a trailing `/openai` is accepted too.
//! - The credential is `api-key: <api_key>`; with `metadata.azure_auth: entra`,
//!   `Authorization: Bearer <token>` with a Microsoft Entra ID token the gateway gets for the
//!   app registration (`azure_tenant_id`, `azure_client_id`, client secret in `api_key`) and
//!   renews in the background (`crate::credentials::entra`); with `azure_auth: bearer`,
//!   `Authorization: Bearer <api_key>` (a token the operator provides and replaces).
//! - The body is the client's with `model` replaced (Azure ignores it) and, for streams on
//!   api-versions that accept it (dated 2024-08-01 or later), `stream_options.include_usage`
//!   forced on so streams are metered; older versions refuse the parameter, so their streamed
//!   usage is estimated.
//! - Answers pass through unchanged (Azure's `prompt_filter_results` and
//!   `content_filter_results` included; `finish_reason: "content_filter"` is OpenAI's value
//!   too), usage read. Streams pass through too, except Azure's filter annotation chunks,
//!   which OpenAI clients do not expect: the leading prompt filter chunk (empty `choices`,
//!   empty `id` and `model`) and choices with only filter results (no `delta`) are left out,
//!   or rewritten when they carry a `finish_reason` (`stream.rs`).
//! - Error answers are mapped to OpenAI's shape ([`map_error`]).

mod error;
mod stream;

use std::sync::Arc;

use omg_shared::azure::{stream_usage_supported, valid_api_version, AzureAuth, EntraClient};
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

pub use error::map_error;

use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, Answer, Call, ClientError, ProbeRequest, ProviderAdapter, StreamTranslator,
    UpstreamRequest,
};
use crate::providers::openai::pass_through_answer;
use crate::providers::{Credential, TokenSource};
use crate::request::Route;
use stream::AzureStream;

/// One Azure OpenAI deployment's adapter; paths are built once, with the snapshot.
#[derive(Debug)]
pub struct AzureAdapter {
    auth: AzureAuth,
    /// The Entra ID token (`azure_auth: entra`).
    entra: Option<Arc<dyn TokenSource>>,
    /// `<endpoint path>/openai/deployments/<deployment>`.
    base: String,
    /// `?api-version=<v>`.
    query: String,
    /// `<endpoint path>/openai/models?api-version=<v>`.
    probe_path: String,
    /// Whether streams get `stream_options.include_usage` forced on.
    stream_usage: bool,
}

impl AzureAdapter {
    /// Reads the deployment's Azure settings (`api_version`, `metadata.azure_auth`); `Err`
    /// names the bad one. With `azure_auth: entra`, `credential` is the app registration's
    /// token.
    pub fn for_deployment(
        deployment: &Deployment,
        credential: &Credential,
    ) -> Result<Self, String> {
        let version = match deployment.api_version.as_deref() {
            Some(version) if valid_api_version(version) => version,
            Some(version) => {
                return Err(format!(
                    "`api_version` `{version}` is not an Azure OpenAI api-version (`YYYY-MM-DD` or `YYYY-MM-DD-preview`)"
                ))
            }
            None => {
                return Err(
                    "`api_version` is missing (set it on the catalog entry or `providers.azure_openai_version`)"
                        .to_owned(),
                )
            }
        };
        let auth = AzureAuth::from_metadata(&deployment.metadata)
            .map_err(|message| format!("metadata `azure_auth`: {message}"))?;
        let entra = match auth {
            AzureAuth::Entra => {
                EntraClient::from_metadata(&deployment.metadata, deployment.api_key.as_ref())
                    .map_err(|(key, message)| format!("`{key}`: {message}"))?;
                let Credential::Token(token) = credential else {
                    return Err("no Entra ID token was resolved".to_owned());
                };
                Some(Arc::clone(token))
            }
            AzureAuth::ApiKey | AzureAuth::Bearer => None,
        };
        let name = deployment
            .deployment
            .as_deref()
            .unwrap_or(&deployment.provider_model);
        if name.is_empty() {
            return Err("`deployment` is empty".to_owned());
        }
        let prefix = endpoint_path(deployment);
        let prefix = prefix.trim_end_matches('/');
        let prefix = prefix.strip_suffix("/openai").unwrap_or(prefix);
        Ok(Self {
            auth,
            entra,
            base: format!("{prefix}/openai/deployments/{}", encode_segment(name)),
            query: format!("?api-version={version}"),
            probe_path: format!("{prefix}/openai/models?api-version={version}"),
            stream_usage: stream_usage_supported(version),
        })
    }

    /// The credential header (none while an Entra ID token is not available: [`ready`]
    /// keeps requests from being sent then).
    ///
    /// [`ready`]: ProviderAdapter::ready
    fn credential(&self, deployment: &Deployment) -> Vec<(&'static str, String)> {
        if let Some(token) = &self.entra {
            return token
                .bearer()
                .map_or_else(|_| Vec::new(), |bearer| vec![("authorization", bearer)]);
        }
        let Some(key) = &deployment.api_key else {
            return Vec::new();
        };
        vec![match self.auth {
            AzureAuth::ApiKey => ("api-key", key.expose().to_owned()),
            AzureAuth::Bearer | AzureAuth::Entra => {
                ("authorization", format!("Bearer {}", key.expose()))
            }
        }]
    }
}

/// Percent-encodes a path segment: everything but RFC 3986's unreserved characters, and the
/// dots of `.` and `..` (which would climb the path).
fn encode_segment(text: &str) -> String {
    let dots_only = text.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'~')
            || (byte == b'.' && !dots_only);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl ProviderAdapter for AzureAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Azure
    }

    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError> {
        Ok(UpstreamRequest {
            path: format!("{}{}{}", self.base, call.route.upstream_path(), self.query),
            headers: self.credential(deployment),
            body: call
                .body
                .upstream_body_with(&deployment.provider_model, self.stream_usage),
        })
    }

    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
        match call.route {
            Route::ImagesGenerations => crate::providers::images::pass_through(body),
            _ => pass_through_answer(body),
        }
    }

    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator> {
        Box::new(AzureStream::new(call))
    }

    fn client_error(&self, status: u16, body: &[u8]) -> ClientError {
        map_error(status, body)
    }

    fn ready(&self) -> Result<(), String> {
        match &self.entra {
            Some(token) => token.bearer().map(|_| ()),
            None => Ok(()),
        }
    }

    fn probe(&self, deployment: &Deployment) -> ProbeRequest {
        ProbeRequest {
            path: self.probe_path.clone(),
            headers: self.credential(deployment),
        }
    }
}

#[cfg(test)]
mod tests;
