//! Tool-call ids and the thought signatures they carry.
//!
//! Gemini function calls often have no id, so the gateway names them `call_<n>` (or keeps
//! Gemini's `id`). Newer Gemini models attach a `thoughtSignature` to a function-call part
//! that must come back verbatim on the next turn; OpenAI clients echo only the tool call's
//! `id`, so the signature travels inside it: `<id>:ts:<base64url(signature)>`. On the next
//! request the gateway splits the id and puts the signature back on the `functionCall` part.
//! Nothing is stored server-side; any data plane can read any id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Separates an id from the signature it carries (not in the base64url alphabet).
const MARKER: &str = ":ts:";

/// The OpenAI id of a function call: Gemini's id, else `call_<n>`, plus its signature.
pub(super) fn encode(gemini_id: Option<&str>, n: usize, signature: Option<&str>) -> String {
    let mut id = match gemini_id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("call_{n}"),
    };
    if let Some(signature) = signature.filter(|s| !s.is_empty()) {
        id.push_str(MARKER);
        URL_SAFE_NO_PAD.encode_string(signature.as_bytes(), &mut id);
    }
    id
}

/// The thought signature an id carries, if any (ids made elsewhere carry none).
pub(super) fn signature(id: &str) -> Option<String> {
    let (_, encoded) = id.rsplit_once(MARKER)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_through_ids() {
        assert_eq!(encode(None, 3, None), "call_3");
        assert_eq!(encode(Some("fc-1"), 3, None), "fc-1");
        let id = encode(None, 0, Some("CiQB+/sig=="));
        assert!(id.starts_with("call_0:ts:"), "{id}");
        assert!(!id.contains('+') && !id.contains('/') && !id.contains('='));
        assert_eq!(signature(&id).as_deref(), Some("CiQB+/sig=="));
        assert_eq!(signature("call_abc123"), None);
        assert_eq!(signature("x:ts:!!"), None);
    }
}
