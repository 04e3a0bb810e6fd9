//! [`VertexAdapter`]: Vertex AI and the Gemini API behind the [`ProviderAdapter`] trait.

use std::sync::Arc;

use crate::tokens::{prompt_tokens, Vocabulary};
use omg_shared::error::ErrorCode;
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;
use omg_shared::vertex::{ServiceAccountKey, VertexApi, DEFAULT_LOCATION, PROJECT_METADATA_KEY};

use super::stream::GeminiStream;
use super::{build_chat, build_embeddings, map_error, translate_embeddings, translate_response};
use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, join, Answer, Call, ClientError, ProbeRequest, ProviderAdapter,
    StreamTranslator, UpstreamRequest,
};
use crate::providers::{Credential, TokenSource};
use crate::request::Route;

/// One `vertex` deployment's adapter.
#[derive(Debug)]
pub struct VertexAdapter {
    api: VertexApi,
    /// `projects/{project}/locations/{location}` (Vertex mode).
    resource: String,
    /// The service account's current token (Vertex mode).
    tokens: Option<Arc<dyn TokenSource>>,
}

impl VertexAdapter {
    /// Reads the deployment's settings (resolved by the snapshot builder: project in
    /// `metadata.vertex_project`, location in `region`, the service-account key in `api_key`)
    /// and, in Vertex mode, takes the key's token (`credential`). `Err` names what is wrong.
    pub fn for_deployment(
        deployment: &Deployment,
        credential: &Credential,
    ) -> Result<Self, String> {
        let api = VertexApi::from_metadata(&deployment.metadata)
            .map_err(|message| format!("metadata `vertex_api`: {message}"))?;
        if api == VertexApi::Gemini {
            if deployment.api_key.is_none() {
                return Err("`vertex_api: gemini` needs `api_key`".to_owned());
            }
            return Ok(Self {
                api,
                resource: String::new(),
                tokens: None,
            });
        }
        let key = deployment
            .api_key
            .as_ref()
            .ok_or("a Vertex AI deployment needs a service-account key")?;
        ServiceAccountKey::parse(key.expose())
            .map_err(|problem| format!("the service-account key {problem}"))?;
        let project = deployment
            .metadata
            .get(PROJECT_METADATA_KEY)
            .ok_or("no GCP project (metadata `vertex_project`)")?;
        let location = deployment.region.as_deref().unwrap_or(DEFAULT_LOCATION);
        let Credential::Token(tokens) = credential else {
            return Err("no token was resolved for the service-account key".to_owned());
        };
        Ok(Self {
            api,
            resource: format!("projects/{project}/locations/{location}"),
            tokens: Some(Arc::clone(tokens)),
        })
    }

    /// The path of a model method (`generateContent`, `predict`, …) below the endpoint.
    fn method_path(&self, deployment: &Deployment, method: &str) -> String {
        let model = escape(&deployment.provider_model);
        let below = match self.api {
            VertexApi::Vertex => format!(
                "/v1/{}/publishers/google/models/{model}:{method}",
                self.resource
            ),
            VertexApi::Gemini => format!("/v1beta/models/{model}:{method}"),
        };
        join(base(deployment), &below)
    }

    /// The credential header.
    fn auth(&self, deployment: &Deployment) -> Result<(&'static str, String), String> {
        match &self.tokens {
            Some(token) => token.bearer().map(|bearer| ("authorization", bearer)),
            None => deployment
                .api_key
                .as_ref()
                .map(|key| ("x-goog-api-key", key.expose().to_owned()))
                .ok_or_else(|| "no API key".to_owned()),
        }
    }
}

/// The endpoint's path prefix; a configured `…/v1` or `…/v1beta` is accepted too.
fn base(deployment: &Deployment) -> &str {
    let prefix = endpoint_path(deployment).trim_end_matches('/');
    prefix
        .strip_suffix("/v1beta")
        .or_else(|| prefix.strip_suffix("/v1"))
        .unwrap_or(prefix)
}

/// A model name as a path segment (`/`, `?`, `#`, `%`, `:` and spaces escaped).
fn escape(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for c in model.chars() {
        match c {
            '/' | '?' | '#' | '%' | ':' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl ProviderAdapter for VertexAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vertex
    }

    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError> {
        let (path, body) = match call.route {
            Route::Chat => {
                let method = if call.body.stream {
                    "streamGenerateContent?alt=sse"
                } else {
                    "generateContent"
                };
                (self.method_path(deployment, method), build_chat(call.raw)?)
            }
            Route::Embeddings => {
                let method = match self.api {
                    VertexApi::Vertex => "predict",
                    VertexApi::Gemini => "batchEmbedContents",
                };
                let body = build_embeddings(call.raw, self.api, &deployment.provider_model)?;
                (self.method_path(deployment, method), body)
            }
            Route::ImagesGenerations => (
                self.method_path(deployment, "predict"),
                super::image::imagen_request(call.body, deployment, self.api)?,
            ),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::OperationUnsupported,
                    "This model (Gemini) serves chat completions, embeddings and image generation (Imagen) only.",
                )
                .with_param("model"))
            }
        };
        let auth = self.auth(deployment).map_err(|message| {
            tracing::error!(deployment = %deployment.id, %message, "no credential for the upstream request");
            ApiError::new(
                ErrorCode::UpstreamError,
                "The upstream credential is not available; retry later.",
            )
        })?;
        Ok(UpstreamRequest {
            path,
            headers: vec![auth],
            body,
        })
    }

    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
        if matches!(call.route, Route::ImagesGenerations) {
            return super::image::translate_imagen(body, call.created, call.body.image_format);
        }
        if matches!(call.route, Route::Embeddings) {
            let estimate = prompt_tokens(call.body, Vocabulary::O200k);
            let (body, usage) = translate_embeddings(
                body,
                self.api,
                call.alias,
                call.body.base64_embeddings,
                estimate,
            )?;
            return Ok(Answer { body, usage });
        }
        let (body, usage) = translate_response(body, call.alias, call.request_id, call.created)?;
        Ok(Answer {
            body,
            usage: Some(usage),
        })
    }

    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(
            call.alias,
            call.request_id,
            call.created,
            call.body.include_usage,
        ))
    }

    fn client_error(&self, status: u16, body: &[u8]) -> ClientError {
        map_error(status, body).into()
    }

    /// A model lookup: `GET /v1beta/models/{model}` (Gemini API, `models.get`) or
    /// `GET /v1beta1/publishers/google/models/{model}` (Vertex AI, `publishers.models.get`),
    /// free of charge. Without a token yet, the check fails (401).
    fn probe(&self, deployment: &Deployment) -> ProbeRequest {
        let model = escape(&deployment.provider_model);
        let below = match self.api {
            VertexApi::Vertex => format!("/v1beta1/publishers/google/models/{model}"),
            VertexApi::Gemini => format!("/v1beta/models/{model}"),
        };
        ProbeRequest {
            path: join(base(deployment), &below),
            headers: self.auth(deployment).into_iter().collect(),
        }
    }

    fn ready(&self) -> Result<(), String> {
        match &self.tokens {
            Some(token) => token.bearer().map(|_| ()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_escaped_in_paths() {
        assert_eq!(escape("gemini-2.5-flash"), "gemini-2.5-flash");
        assert_eq!(escape("a/b:c d"), "a%2Fb%3Ac%20d");
        assert_eq!(escape("gemini-test+fail-503"), "gemini-test+fail-503");
    }
}
