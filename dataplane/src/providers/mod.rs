//! Provider adapters: pure functions from OpenAI requests to provider requests and from
//! provider responses back to OpenAI's shapes, plus usage extraction. No I/O and no Pingora
//! types: the proxy glue (`crate::proxy`) moves the bytes.

use std::sync::Arc;

use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

mod adapter;
pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod chat;
#[cfg(test)]
mod conformance;
mod embeddings;
#[cfg(test)]
mod golden;
pub mod huggingface;
mod images;
mod json_scan;
pub mod mock;
pub mod openai;
pub mod vertex;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Of the prompt tokens, those read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Of the prompt tokens, those written to the provider's prompt cache (Anthropic,
    /// Bedrock).
    pub cache_write_tokens: u64,
    /// Images generated (image generation).
    pub images: u64,
}

impl Usage {
    /// What the request consumed, for pricing.
    pub fn consumption(&self) -> omg_shared::money::Consumption {
        omg_shared::money::Consumption {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cache_read_tokens: self.cached_tokens,
            cache_write_tokens: self.cache_write_tokens,
            images: self.images,
        }
    }
}

pub use adapter::{
    Answer, Call, ClientError, Ingress, ProbeRequest, ProviderAdapter, StreamFault, StreamState,
    StreamTranslator, UpstreamRequest,
};
/// Credentials adapters cannot make themselves: minted with I/O, in the background, by
/// [`crate::credentials`]; adapters only read them.
pub trait Credentials {
    /// The token cell of a Google service account (its refresher started on first sight,
    /// shared by every snapshot that names the same key).
    fn google(
        &self,
        key: &omg_shared::vertex::ServiceAccountKey,
    ) -> Result<Arc<crate::credentials::TokenCell>, String>;

    /// The token cell of a Microsoft Entra ID app registration (Azure OpenAI with
    /// `azure_auth: entra`), its refresher started on first sight.
    fn entra(
        &self,
        client: &omg_shared::azure::EntraClient,
    ) -> Result<Arc<crate::credentials::TokenCell>, String>;
}

/// The adapter for a deployment, checking its provider settings (`Err` names the bad
/// metadata key). `None` for `mock`, which answers in process.
pub fn adapter_for(
    deployment: &Deployment,
    credentials: &dyn Credentials,
) -> Result<Option<Arc<dyn ProviderAdapter>>, String> {
    Ok(match deployment.provider {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            Some(Arc::new(openai::OpenAiAdapter::new(deployment.provider)))
        }
        ProviderKind::Anthropic => Some(Arc::new(anthropic::AnthropicAdapter::from_metadata(
            &deployment.metadata,
        )?)),
        ProviderKind::Azure => Some(Arc::new(azure::AzureAdapter::for_deployment(
            deployment,
            credentials,
        )?)),
        ProviderKind::HuggingFace => Some(Arc::new(
            huggingface::HuggingFaceAdapter::for_deployment(deployment)?,
        )),
        ProviderKind::Vertex => Some(Arc::new(vertex::VertexAdapter::for_deployment(
            deployment,
            credentials,
        )?)),
        // Credentials are found (environment, profile file) once, here, beside the pure adapter.
        ProviderKind::Bedrock => Some(Arc::new(bedrock::BedrockAdapter::new(
            deployment,
            crate::credentials::aws::for_deployment(deployment)?,
        )?)),
        ProviderKind::Mock => None,
    })
}
