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
mod credential;
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
pub use credential::{Credential, TokenSource};
/// The adapter for a deployment, checking its provider settings (`Err` names the bad
/// metadata key), with the credential resolved for it. `mock`'s answers in process
/// ([`ProviderAdapter::local`]).
pub fn adapter_for(
    deployment: &Deployment,
    credential: Credential,
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
            &credential,
        )?)),
        ProviderKind::HuggingFace => Some(Arc::new(
            huggingface::HuggingFaceAdapter::for_deployment(deployment)?,
        )),
        ProviderKind::Vertex => Some(Arc::new(vertex::VertexAdapter::for_deployment(
            deployment,
            &credential,
        )?)),
        ProviderKind::Bedrock => {
            let Credential::Aws(credential) = credential else {
                return Err("no AWS credential was resolved".to_owned());
            };
            Some(Arc::new(bedrock::BedrockAdapter::new(
                deployment, credential,
            )?))
        }
        ProviderKind::Mock => Some(Arc::new(mock::MockAdapter::for_deployment(deployment)?)),
    })
}
