//! The cheap token estimate: the tokens of a stream's deltas as they pass (about one per
//! delta), the built-in mock's usage, and prompts when the data plane runs with
//! `server.tokenizer: heuristic` (otherwise prompts are counted with OpenAI's tokenizer, see
//! the data plane's `tokens.rs`).
//!
//! Billing always prefers provider-reported usage; records built from an estimate carry
//! `usage_estimated: true`. The heuristic (about 4 characters per token, never fewer tokens
//! than words) tracks OpenAI's BPE tokenizers within roughly ±25 % on English prose, costs
//! nothing (no vocabulary in memory, no allocation), and under-counts code and languages
//! written without spaces.

/// Largest `max_tokens` / `max_completion_tokens` (and Anthropic `max_tokens`) accepted for a
/// model whose catalog entry sets no `max_output_tokens`: 262,144 tokens, twice the largest
/// output any current model offers. With `max_output_tokens` set, that is the cap instead.
/// A request above the cap is refused with a 400 naming the parameter, so the worst case a
/// budget reserves is bounded.
pub const MAX_OUTPUT_TOKENS_CAP: u64 = 262_144;

/// Largest token count believed from a provider's usage report, per field (prompt,
/// completion, cache reads, cache writes): 100 million tokens, far above any model's context.
/// A larger report is a provider bug (or a hostile upstream); it is clamped to this and
/// logged, so sums of usage never wrap.
pub const MAX_REPORTED_TOKENS: u64 = 100_000_000;

/// Estimated token count of a text.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let chars = text.chars().count() as u64;
    let words = text.split_whitespace().count() as u64;
    chars.div_ceil(4).max(words).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_plausible() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("Hello world"), 3);
        assert_eq!(estimate_tokens("a b c d e f"), 6);
        let prose = "The quick brown fox jumps over the lazy dog near the river bank.";
        let estimate = estimate_tokens(prose);
        assert!((12..=18).contains(&estimate), "{estimate}");
    }
}
