//! Provider kinds and what each can do.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An upstream provider kind, as written in `model_catalog[].provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderKind {
    /// api.openai.com (or `endpoint` when set).
    #[serde(rename = "openai")]
    OpenAi,
    /// Any server speaking the OpenAI API (vLLM, TGI, Ollama, LM Studio, other gateways).
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Azure OpenAI.
    #[serde(rename = "azure")]
    Azure,
    /// Anthropic Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// AWS Bedrock.
    #[serde(rename = "bedrock")]
    Bedrock,
    /// Google Vertex AI / Gemini.
    #[serde(rename = "vertex")]
    Vertex,
    /// Hugging Face (TEI, TGI, Inference API).
    #[serde(rename = "huggingface")]
    HuggingFace,
    /// Built-in deterministic provider for quick starts, demos, client CI and load tests.
    #[serde(rename = "mock")]
    Mock,
}

/// Operations a deployment may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `stream: true` on chat or completions.
    Stream,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/images/generations`.
    ImagesGenerate,
    /// `POST /v1/images/edits`.
    ImagesEdit,
    /// `POST /v1/images/variations`.
    ImagesVariation,
    /// `/v1/audio/*`.
    Audio,
}

impl ProviderKind {
    /// Every kind, in documentation order.
    pub const ALL: [ProviderKind; 8] = [
        ProviderKind::OpenAi,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Azure,
        ProviderKind::Anthropic,
        ProviderKind::Bedrock,
        ProviderKind::Vertex,
        ProviderKind::HuggingFace,
        ProviderKind::Mock,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
            ProviderKind::HuggingFace => "huggingface",
            ProviderKind::Mock => "mock",
        }
    }

    /// Whether this build's data plane has an adapter for the kind. Config naming a kind
    /// without one is refused at start-up rather than failing per request.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAi
                | ProviderKind::OpenAiCompatible
                | ProviderKind::Azure
                | ProviderKind::Anthropic
                | ProviderKind::HuggingFace
                | ProviderKind::Vertex
                | ProviderKind::Bedrock
                | ProviderKind::Mock
        )
    }

    /// Whether catalog entries of the kind get active health checks unless they say
    /// otherwise: self-hosted kinds yes; paid APIs no (a check costs quota); `mock` never.
    pub fn checked_by_default(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAiCompatible | ProviderKind::HuggingFace
        )
    }

    /// The operations the kind's adapter implements in this build.
    pub fn capabilities(self) -> &'static [Operation] {
        match self {
            ProviderKind::OpenAi
            | ProviderKind::OpenAiCompatible
            | ProviderKind::Azure
            | ProviderKind::Mock => &[
                Operation::Chat,
                Operation::Stream,
                Operation::Completions,
                Operation::Embeddings,
                Operation::ImagesGenerate,
            ],
            ProviderKind::HuggingFace => &[
                Operation::Chat,
                Operation::Stream,
                Operation::Completions,
                Operation::Embeddings,
            ],
            ProviderKind::Anthropic => &[Operation::Chat, Operation::Stream],
            ProviderKind::Vertex | ProviderKind::Bedrock => &[
                Operation::Chat,
                Operation::Stream,
                Operation::Embeddings,
                Operation::ImagesGenerate,
            ],
        }
    }

    /// Whether the kind can serve an operation.
    pub fn supports(self, operation: Operation) -> bool {
        self.capabilities().contains(&operation)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
