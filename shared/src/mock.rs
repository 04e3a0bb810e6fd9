//! Settings of the built-in `mock` provider, read from a catalog entry's `metadata`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `mock_latency_ms` | 0 | delay before a non-streamed answer |
//! | `mock_ttft_ms` | 0 | delay before the first streamed content chunk |
//! | `mock_chunk_interval_ms` | 0 | delay between streamed chunks |
//! | `mock_chunks` | 8 | content chunks per answer (one word each) |
//! | `mock_completion_tokens` | = chunks | completion tokens reported |
//! | `mock_prompt_tokens` | estimated from the input | prompt tokens reported |
//! | `mock_embedding_dims` | 8 | embedding dimensions |

use std::collections::BTreeMap;

/// Parsed `mock_*` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockSettings {
    /// Delay before a non-streamed answer, ms.
    pub latency_ms: u64,
    /// Delay before the first streamed content chunk, ms.
    pub ttft_ms: u64,
    /// Delay between streamed chunks, ms.
    pub chunk_interval_ms: u64,
    /// Content chunks per answer.
    pub chunks: u64,
    /// Completion tokens reported (default: one per chunk).
    pub completion_tokens: Option<u64>,
    /// Prompt tokens reported (default: estimated from the input).
    pub prompt_tokens: Option<u64>,
    /// Embedding dimensions.
    pub embedding_dims: u64,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            ttft_ms: 0,
            chunk_interval_ms: 0,
            chunks: 8,
            completion_tokens: None,
            prompt_tokens: None,
            embedding_dims: 8,
        }
    }
}

const MAX_DELAY_MS: u64 = 600_000;

impl MockSettings {
    /// Reads the `mock_*` keys of a metadata map; other keys are ignored. Errors name the key.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, (String, String)> {
        let mut settings = Self::default();
        for (key, value) in metadata {
            let Some(name) = key.strip_prefix("mock_") else {
                continue;
            };
            let number = || -> Result<u64, (String, String)> {
                value.trim().parse::<u64>().map_err(|_| {
                    (
                        key.clone(),
                        format!("`{value}` is not a non-negative integer"),
                    )
                })
            };
            let bounded = |max: u64, min: u64| -> Result<u64, (String, String)> {
                let n = number()?;
                if n < min || n > max {
                    return Err((key.clone(), format!("{n} is outside {min}..={max}")));
                }
                Ok(n)
            };
            match name {
                "latency_ms" => settings.latency_ms = bounded(MAX_DELAY_MS, 0)?,
                "ttft_ms" => settings.ttft_ms = bounded(MAX_DELAY_MS, 0)?,
                "chunk_interval_ms" => settings.chunk_interval_ms = bounded(MAX_DELAY_MS, 0)?,
                "chunks" => settings.chunks = bounded(100_000, 1)?,
                "completion_tokens" => settings.completion_tokens = Some(bounded(10_000_000, 0)?),
                "prompt_tokens" => settings.prompt_tokens = Some(bounded(10_000_000, 0)?),
                "embedding_dims" => settings.embedding_dims = bounded(8192, 1)?,
                _ => {
                    return Err((
                        key.clone(),
                        "unknown mock setting; expected one of mock_latency_ms, mock_ttft_ms, \
                         mock_chunk_interval_ms, mock_chunks, mock_completion_tokens, \
                         mock_prompt_tokens, mock_embedding_dims"
                            .to_owned(),
                    ))
                }
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut metadata = BTreeMap::new();
        metadata.insert("mock_chunks".to_owned(), "3".to_owned());
        metadata.insert("description".to_owned(), "ignored".to_owned());
        let settings = MockSettings::from_metadata(&metadata).unwrap_or_default();
        assert_eq!(settings.chunks, 3);
        metadata.insert("mock_chunks".to_owned(), "0".to_owned());
        assert!(MockSettings::from_metadata(&metadata).is_err());
        metadata.insert("mock_chunks".to_owned(), "2".to_owned());
        metadata.insert("mock_speed".to_owned(), "2".to_owned());
        let error = MockSettings::from_metadata(&metadata)
            .err()
            .unwrap_or_default();
        assert_eq!(error.0, "mock_speed");
    }
}
