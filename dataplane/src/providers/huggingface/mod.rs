//! Hugging Face (`provider: huggingface`): chat, completions and streams through an
//! OpenAI-compatible route (Text Generation Inference's `/v1/chat/completions`, or the
//! Inference Providers router `https://router.huggingface.co/v1`, the default), passed
//! through as for `openai-compatible` except for TGI's departures from OpenAI's chat shapes,
//! which are mended (see `chat`); embeddings through Text Embeddings Inference's
//! `POST /embed`, the Inference API's feature-extraction pipeline, or an OpenAI-format
//! `/embeddings` (`metadata.hf_embeddings`, see `omg_shared::huggingface`). The credential,
//! when set, is a bearer token (`api_key` or `providers.hugging_face_token`).

mod chat;
mod embed;
#[cfg(test)]
mod tests;

use omg_shared::huggingface::{self, EmbeddingApi};
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, join, Answer, Call, ClientError, ProbeRequest, ProviderAdapter,
    StreamTranslator, UpstreamRequest,
};
use crate::providers::openai::OpenAiAdapter;
use crate::request::Route;

/// One Hugging Face deployment's adapter.
#[derive(Debug)]
pub struct HuggingFaceAdapter {
    openai: OpenAiAdapter,
    embeddings: EmbeddingApi,
    truncate: bool,
}

impl HuggingFaceAdapter {
    /// Reads the deployment's `hf_*` metadata; `Err` names the bad key.
    pub fn for_deployment(deployment: &Deployment) -> Result<Self, String> {
        let host = deployment.endpoint.as_ref().map_or("", |e| e.host.as_str());
        Ok(Self {
            openai: OpenAiAdapter::new(ProviderKind::HuggingFace),
            embeddings: EmbeddingApi::from_metadata(&deployment.metadata, host)?,
            truncate: huggingface::truncate(&deployment.metadata)?,
        })
    }

    /// Whether this call goes to TEI's or the Inference API's own embeddings format.
    fn native_embeddings(&self, call: &Call<'_>) -> bool {
        *call.route == Route::Embeddings && self.embeddings != EmbeddingApi::OpenAi
    }
}

/// The endpoint's path without a trailing `/v1` (TEI and the Inference API live at the root).
fn root(deployment: &Deployment) -> &str {
    let prefix = endpoint_path(deployment).trim_end_matches('/');
    prefix.strip_suffix("/v1").unwrap_or(prefix)
}

fn bearer(deployment: &Deployment) -> Vec<(&'static str, String)> {
    deployment
        .api_key
        .as_ref()
        .map(|key| vec![("authorization", format!("Bearer {}", key.expose()))])
        .unwrap_or_default()
}

impl ProviderAdapter for HuggingFaceAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::HuggingFace
    }

    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError> {
        if !self.native_embeddings(call) {
            return self.openai.request(call, deployment);
        }
        let input = embed::inputs(call.raw)?;
        let (path, body) = match self.embeddings {
            EmbeddingApi::Tei => (
                join(root(deployment), "/embed"),
                embed::tei_body(&input, self.truncate),
            ),
            _ => (
                join(
                    root(deployment),
                    &format!(
                        "/hf-inference/models/{}/pipeline/feature-extraction",
                        embed::model_path(&deployment.provider_model)
                    ),
                ),
                embed::inference_body(&input, self.truncate)?,
            ),
        };
        Ok(UpstreamRequest {
            path,
            headers: bearer(deployment),
            body,
        })
    }

    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
        if self.native_embeddings(call) {
            return embed::answer(call, body);
        }
        if *call.route == Route::Chat {
            return chat::answer(call, body);
        }
        self.openai.response(call, body)
    }

    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator> {
        if *call.route == Route::Chat {
            return Box::new(chat::TgiStream::new(call));
        }
        self.openai.stream(call)
    }

    fn client_error(&self, status: u16, body: &[u8]) -> ClientError {
        embed::client_error(status, body).unwrap_or_else(|| self.openai.client_error(status, body))
    }

    fn probe(&self, deployment: &Deployment) -> ProbeRequest {
        if self.embeddings == EmbeddingApi::Tei {
            // TEI's and TGI's own liveness route.
            return ProbeRequest {
                path: join(root(deployment), "/health"),
                headers: bearer(deployment),
            };
        }
        self.openai.probe(deployment)
    }
}
