//! Settings of `provider: huggingface` catalog entries (both planes check them).
//!
//! Chat and completions go to an OpenAI-compatible route: Text Generation Inference's
//! `/v1/chat/completions`, or Hugging Face's Inference Providers router (the default base
//! URL). Embeddings go where `metadata.hf_embeddings` says.

use std::collections::BTreeMap;

/// The base URL when a catalog entry names none: Hugging Face's OpenAI-compatible router.
pub const DEFAULT_BASE_URL: &str = "https://router.huggingface.co/v1";

/// Hosts of Hugging Face's hosted APIs (their embeddings are the Inference API's).
const HOSTED: [&str; 2] = ["router.huggingface.co", "api-inference.huggingface.co"];

/// Which API serves a deployment's embeddings (`metadata.hf_embeddings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingApi {
    /// `openai`: `POST <endpoint>/embeddings` in OpenAI's format (TEI's `/v1/embeddings`).
    OpenAi,
    /// `tei`: Text Embeddings Inference's own `POST /embed` (`normalize`, `truncate`,
    /// `dimensions`). The default for self-hosted endpoints.
    Tei,
    /// `inference`: the Inference API's feature-extraction pipeline,
    /// `POST /hf-inference/models/<model>/pipeline/feature-extraction`. The default for
    /// Hugging Face's hosts.
    Inference,
}

impl EmbeddingApi {
    /// Reads `hf_embeddings`; absent, the default for the endpoint's host. `Err` names the
    /// key and the accepted values.
    pub fn from_metadata(metadata: &BTreeMap<String, String>, host: &str) -> Result<Self, String> {
        match metadata.get("hf_embeddings").map(|v| v.trim()) {
            None | Some("") => Ok(if HOSTED.contains(&host) {
                EmbeddingApi::Inference
            } else {
                EmbeddingApi::Tei
            }),
            Some("openai") => Ok(EmbeddingApi::OpenAi),
            Some("tei") => Ok(EmbeddingApi::Tei),
            Some("inference") => Ok(EmbeddingApi::Inference),
            Some(other) => Err(format!(
                "`hf_embeddings` must be `tei`, `inference` or `openai`, got `{other}`"
            )),
        }
    }
}

/// `metadata.hf_truncate` (TEI and the Inference API: cut inputs longer than the model's
/// limit instead of failing). Default `false`.
pub fn truncate(metadata: &BTreeMap<String, String>) -> Result<bool, String> {
    match metadata.get("hf_truncate").map(|v| v.trim()) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!(
            "`hf_truncate` must be `true` or `false`, got `{other}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedding_api_defaults_by_host() {
        let none = BTreeMap::new();
        assert_eq!(
            EmbeddingApi::from_metadata(&none, "router.huggingface.co"),
            Ok(EmbeddingApi::Inference)
        );
        assert_eq!(
            EmbeddingApi::from_metadata(&none, "tei.internal"),
            Ok(EmbeddingApi::Tei)
        );
        let openai = BTreeMap::from([("hf_embeddings".to_owned(), "openai".to_owned())]);
        assert_eq!(
            EmbeddingApi::from_metadata(&openai, "x"),
            Ok(EmbeddingApi::OpenAi)
        );
        let bad = BTreeMap::from([("hf_embeddings".to_owned(), "grpc".to_owned())]);
        assert!(EmbeddingApi::from_metadata(&bad, "x")
            .unwrap_err()
            .contains("hf_embeddings"));
        let truncating = BTreeMap::from([("hf_truncate".to_owned(), "yes".to_owned())]);
        assert!(truncate(&truncating).is_err());
    }
}
