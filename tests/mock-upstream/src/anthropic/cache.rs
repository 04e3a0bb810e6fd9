//! Anthropic's prompt cache, as the mock plays it: the request's prefix up to its last
//! `cache_control` marker (tools, then `system`, then the messages' blocks, as Anthropic
//! orders them) is written to the cache the first time it is seen (`cache_creation_input_tokens`)
//! and read on every later request with the same prefix and model
//! (`cache_read_input_tokens`). Tokens are the prefix's words, like the mock's other counts.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::openai;

/// The cacheable prefix of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The model and the prefix's blocks, serialized: the cache key.
    key: String,
    /// The prefix's tokens.
    pub tokens: u64,
}

/// What the cache did for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheUse {
    pub read: u64,
    pub write: u64,
}

/// Prefixes written so far (one cache per mock instance; entries never expire).
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    written: Mutex<HashSet<String>>,
}

impl PromptCache {
    /// Reads `prefix` if it was written before, else writes it.
    pub(crate) fn take(&self, prefix: Option<&Prefix>) -> CacheUse {
        let Some(prefix) = prefix else {
            return CacheUse::default();
        };
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if written.contains(&prefix.key) {
            CacheUse {
                read: prefix.tokens,
                write: 0,
            }
        } else {
            written.insert(prefix.key.clone());
            CacheUse {
                read: 0,
                write: prefix.tokens,
            }
        }
    }
}

/// The prefix up to the last block carrying `cache_control`, if any block does.
pub(crate) fn prefix(
    model: &str,
    request: &Map<String, Value>,
    messages: &[Value],
) -> Option<Prefix> {
    let tools = request.get("tools").and_then(Value::as_array);
    let system = match request.get("system") {
        Some(Value::Array(system)) => system.as_slice(),
        _ => &[],
    };
    let contents = messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten();
    let blocks: Vec<Value> = tools
        .into_iter()
        .flatten()
        .chain(system)
        .chain(contents)
        .cloned()
        .collect();
    let end = blocks
        .iter()
        .rposition(|block| block.get("cache_control").is_some())?;
    let prefix = Value::Array(blocks[..=end].to_vec());
    let key = format!("{model}\n{prefix}");
    let tokens = openai::chat_prompt_tokens(&[serde_json::json!({ "content": prefix })]);
    Some(Prefix { key, tokens })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_prefix_is_written_once_then_read() {
        let request = json!({
            "system": [{"type": "text", "text": "one two three", "cache_control": {"type": "ephemeral"}}],
        });
        let messages = [json!({"role": "user", "content": "four five"})];
        let Some(map) = request.as_object() else {
            panic!("an object")
        };
        let prefix = prefix("claude", map, &messages);
        assert_eq!(prefix.as_ref().map(|p| p.tokens), Some(3));
        let cache = PromptCache::default();
        assert_eq!(cache.take(prefix.as_ref()), CacheUse { read: 0, write: 3 });
        assert_eq!(cache.take(prefix.as_ref()), CacheUse { read: 3, write: 0 });
        // Another model has its own cache; no marker, no cache.
        let other = super::prefix("other", map, &messages);
        assert_eq!(cache.take(other.as_ref()), CacheUse { read: 0, write: 3 });
        let plain = json!({"system": "one two three"});
        let Some(plain) = plain.as_object() else {
            panic!("an object")
        };
        assert_eq!(super::prefix("claude", plain, &messages), None);
    }
}
