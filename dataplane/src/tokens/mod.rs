//! Prompt tokens the data plane must count itself: the reservation a request takes from token
//! limits and budgets before it goes upstream, and the usage of answers that report none
//! (streams cut before their usage chunk, providers that count nothing).
//!
//! With `server.tokenizer: bpe` (the default) texts are counted with OpenAI's byte-pair
//! encodings: `cl100k_base` for the models that use it (GPT-4, GPT-3.5, `text-embedding-*`),
//! `o200k_base` for every other model. That is exact for OpenAI's models and an approximation
//! for other families, still far closer than a characters-per-token rule on code and on
//! languages written without spaces (a Chinese prompt has about as many tokens as characters,
//! four times what the rule says). A vocabulary is loaded on first use, or ahead of it by
//! [`warm`] when a snapshot has token limits or budgets, into the compact encoder of [`bpe`]
//! (about 8 MB resident for `o200k_base`: 3.3 MB of tables, the rest the binary's pages of
//! the vocabulary it was read from; 4 MB for `cl100k_base`; 0.2-0.8 s). With `heuristic` nothing
//! is loaded and [`omg_shared::tokens::estimate_tokens`] is used. Billing always prefers the
//! provider's usage.

mod bpe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use omg_shared::config::TokenizerKind;
use omg_shared::tokens::estimate_tokens;
use tiktoken_rs::tokenizer::Tokenizer;

use bpe::Encoder;

use crate::request::text::Text;
use crate::request::{Prompt, RequestBody};
use crate::snapshot::{DeploymentEntry, RuntimeSnapshot};

/// Whether [`count`] uses the byte-pair encodings; set once from `server.tokenizer`. Off until
/// then (unit tests count with the heuristic, and load nothing).
static BPE: AtomicBool = AtomicBool::new(false);

/// Tokens added to a bounded count for the piece the cut splits (the encoder's pre-split
/// around the cut may differ from the whole text's).
const CUT_SLACK: u64 = 16;

/// Prompts longer than this (or counted with a vocabulary not loaded yet) are counted on
/// the blocking pool rather than on a proxy worker.
const INLINE_BYTES: usize = 16 * 1024;

/// Tokens OpenAI adds per chat message (role and delimiters) and to prime the answer.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_TO_PRIME_ANSWER: u64 = 3;

/// How `cl100k_base` splits text before merging (tiktoken's; tiktoken-rs exports only
/// `o200k_base`'s).
const CL100K_BASE_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

/// Applies `server.tokenizer`.
pub fn configure(kind: TokenizerKind) {
    BPE.store(kind == TokenizerKind::Bpe, Ordering::Relaxed);
}

/// An OpenAI byte-pair encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// GPT-4o and later, the o-series; also the approximation for other families.
    O200k,
    /// GPT-4, GPT-3.5 and the `text-embedding-*` models.
    Cl100k,
}

impl Vocabulary {
    /// The vocabulary to count a provider's model with (`openai/gpt-4` and `ft:gpt-4:…`
    /// names included).
    pub fn for_model(model: &str) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        match tiktoken_rs::tokenizer::get_tokenizer(name) {
            Some(Tokenizer::Cl100kBase | Tokenizer::P50kBase | Tokenizer::P50kEdit)
            | Some(Tokenizer::R50kBase | Tokenizer::Gpt2) => Self::Cl100k,
            _ => Self::O200k,
        }
    }

    /// The vocabulary of the first deployment a request would go to (`o200k_base` when there
    /// is none).
    pub fn of_first(deployments: &[Arc<DeploymentEntry>]) -> Self {
        deployments.first().map_or(Self::O200k, |first| {
            Self::for_model(&first.deployment.provider_model)
        })
    }

    fn cell(self) -> &'static OnceLock<Option<Encoder>> {
        static O200K: OnceLock<Option<Encoder>> = OnceLock::new();
        static CL100K: OnceLock<Option<Encoder>> = OnceLock::new();
        match self {
            Self::O200k => &O200K,
            Self::Cl100k => &CL100K,
        }
    }

    /// The encoder, loaded on first call; `None` if it failed to load (logged once, and
    /// counts fall back to the heuristic).
    fn encoder(self) -> Option<&'static Encoder> {
        self.cell()
            .get_or_init(|| {
                let started = std::time::Instant::now();
                match self.load() {
                    Ok(encoder) => {
                        tracing::info!(
                            vocabulary = ?self,
                            tokens = encoder.len(),
                            bytes = encoder.footprint(),
                            load_ms = started.elapsed().as_millis() as u64,
                            "tokenizer loaded"
                        );
                        Some(encoder)
                    }
                    Err(error) => {
                        tracing::error!(
                            vocabulary = ?self,
                            error = %error,
                            "tokenizer failed to load; estimating ~4 characters per token"
                        );
                        None
                    }
                }
            })
            .as_ref()
    }

    /// tiktoken-rs's encoder, copied into a compact one.
    fn load(self) -> Result<Encoder, String> {
        match self {
            Self::O200k => Encoder::load(
                || tiktoken_rs::o200k_base().map_err(|error| error.to_string()),
                tiktoken_rs::O200K_BASE_PAT_STR,
            ),
            Self::Cl100k => Encoder::load(
                || tiktoken_rs::cl100k_base().map_err(|error| error.to_string()),
                CL100K_BASE_PATTERN,
            ),
        }
    }

    fn loaded(self) -> bool {
        self.cell().get().is_some()
    }
}

/// Tokens of `text`.
pub fn count(text: &str, vocabulary: Vocabulary) -> u64 {
    count_text(&Text::of(text), vocabulary)
}

/// Tokens of a text kept to its start (see [`Text`]): the byte-pair encoding's count when
/// it is on, the heuristic's otherwise.
pub fn count_text(text: &Text, vocabulary: Vocabulary) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let encoder = if BPE.load(Ordering::Relaxed) {
        vocabulary.encoder()
    } else {
        None
    };
    match encoder {
        Some(encoder) => count_with(encoder, text),
        None => text.estimate(),
    }
}

/// Tokens of `text` by `encoder`: exact up to [`KEPT_BYTES`](crate::request::text::KEPT_BYTES) (the start a [`Text`] keeps),
/// bounded from above by its bytes beyond; the heuristic's count should the splitting
/// pattern give up on the text.
fn count_with(encoder: &Encoder, text: &Text) -> u64 {
    let head = text.head();
    let exact = encoder
        .count(head)
        .map_or_else(|| estimate_tokens(head), |tokens| tokens as u64);
    if text.is_whole() {
        return exact;
    }
    let rest = text.len().saturating_sub(head.len() as u64);
    exact.saturating_add(rest).saturating_add(CUT_SLACK)
}

/// What a request's prompt is counted from.
#[derive(Debug, Clone, Default)]
pub struct PromptSource {
    prompt: Prompt,
    /// Tool and function definitions, the `response_format` schema and a predicted output,
    /// as JSON (the model reads them as part of the prompt, or bills them), kept to their
    /// start.
    tools: Vec<Text>,
}

impl PromptSource {
    /// The prompt of a parsed request.
    pub fn of(body: &RequestBody<'_>) -> Self {
        let tools = ["tools", "functions", "response_format", "prediction"]
            .into_iter()
            .filter_map(|name| body.raw(name))
            .map(|raw| Text::of(raw.get()))
            .collect();
        Self {
            prompt: body.prompt(),
            tools,
        }
    }

    fn bytes(&self) -> u64 {
        let tools = self.tools.iter().map(Text::len);
        tools.fold(self.prompt.text.len(), u64::saturating_add)
    }

    /// Its tokens: the text, the framing of each chat message as OpenAI counts it, the tool
    /// definitions and schemas, and what is billed beyond text (images, audio, files, token
    /// arrays).
    pub fn count(&self, vocabulary: Vocabulary) -> u64 {
        let mut tokens = count_text(&self.prompt.text, vocabulary);
        if self.prompt.messages > 0 {
            let framing = TOKENS_PER_MESSAGE.saturating_mul(self.prompt.messages as u64);
            tokens = tokens.saturating_add(framing.saturating_add(TOKENS_TO_PRIME_ANSWER));
        }
        for tools in &self.tools {
            tokens = tokens.saturating_add(count_text(tools, vocabulary));
        }
        tokens.saturating_add(self.prompt.extra_tokens)
    }

    /// How many prompts a completions request holds (1 for other requests).
    pub fn prompts(&self) -> u64 {
        self.prompt.prompts.max(1)
    }

    /// [`Self::count`], on the blocking pool when it could hold a proxy worker (a long
    /// prompt, or a vocabulary still to load).
    pub async fn count_off_worker(self, vocabulary: Vocabulary) -> u64 {
        let inline = !BPE.load(Ordering::Relaxed)
            || (vocabulary.loaded() && self.bytes() <= INLINE_BYTES as u64);
        if inline {
            return self.count(vocabulary);
        }
        let fallback = self.prompt.text.estimate();
        tokio::task::spawn_blocking(move || self.count(vocabulary))
            .await
            .unwrap_or(fallback)
    }
}

/// Tokens of a request's prompt (see [`PromptSource::count`]).
pub fn prompt_tokens(body: &RequestBody<'_>, vocabulary: Vocabulary) -> u64 {
    PromptSource::of(body).count(vocabulary)
}

/// Loads, on a background thread, the vocabularies a snapshot will count with when it has
/// token limits or budgets, so the first request does not wait for them.
pub fn warm(snapshot: &RuntimeSnapshot) {
    if !BPE.load(Ordering::Relaxed) || !snapshot.reserves_tokens() {
        return;
    }
    let mut wanted: Vec<Vocabulary> = snapshot
        .provider_models()
        .map(Vocabulary::for_model)
        .filter(|vocabulary| !vocabulary.loaded())
        .collect();
    wanted.sort_by_key(|vocabulary| *vocabulary as u8);
    wanted.dedup();
    if wanted.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("omg-tokenizer".to_owned())
        .spawn(move || {
            for vocabulary in wanted {
                vocabulary.encoder();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(error = %error, "could not start the tokenizer loader; loading on first use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::text::KEPT_BYTES;

    #[test]
    fn models_map_to_their_vocabulary() {
        for model in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
        ] {
            assert_eq!(Vocabulary::for_model(model), Vocabulary::Cl100k, "{model}");
        }
        for model in [
            "gpt-4o",
            "gpt-4.1-mini",
            "o3",
            "gpt-5",
            "openai/gpt-4o",
            "claude-sonnet-4-5",
            "gemini-2.0-flash",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "my-azure-deployment",
        ] {
            assert_eq!(Vocabulary::for_model(model), Vocabulary::O200k, "{model}");
        }
        assert_eq!(Vocabulary::for_model("openai/gpt-4"), Vocabulary::Cl100k);
        assert_eq!(
            Vocabulary::for_model("ft:gpt-3.5-turbo:acme::abc"),
            Vocabulary::Cl100k
        );
    }

    /// Counts with the encoders directly (the process-wide switch stays off in unit tests).
    fn bpe_count(text: &str, vocabulary: Vocabulary) -> u64 {
        let encoder = vocabulary.encoder().unwrap_or_else(|| unreachable!());
        encoder.count(text).unwrap_or_else(|| unreachable!()) as u64
    }

    #[test]
    fn long_texts_are_bounded_from_above() {
        let encoder = Vocabulary::O200k
            .encoder()
            .unwrap_or_else(|| unreachable!());
        let text = "The gateway reserves the tokens of a prompt before it goes upstream, \
                    then settles them with the provider's usage. 42 × 7 = 294.\n"
            .repeat(4000);
        assert!(text.len() > 4 * KEPT_BYTES);
        let exact = encoder.count(&text).unwrap_or_else(|| unreachable!()) as u64;
        let counted = count_with(encoder, &Text::of(&text));
        assert!(counted >= exact, "{counted} vs {exact}");
        // A cheap start followed by an expensive tail (Chinese, about a token per character)
        // was extrapolated from the start: several times under the real count.
        let mixed = format!(
            "{}{}",
            "hello world ".repeat(KEPT_BYTES / 12 + 1),
            "网关在请求之前预留令牌".repeat(5_000)
        );
        let exact = encoder.count(&mixed).unwrap_or_else(|| unreachable!()) as u64;
        let counted = count_with(encoder, &Text::of(&mixed));
        assert!(counted >= exact, "{counted} vs {exact}");
        // Cut inside a multi-byte character: still a valid count.
        let wide = "令".repeat(KEPT_BYTES);
        assert!(count_with(encoder, &Text::of(&wide)) > 0);
    }

    #[test]
    fn encoders_count_like_openai() {
        // Reference counts from OpenAI's tiktoken.
        assert_eq!(bpe_count("hello world", Vocabulary::O200k), 2);
        assert_eq!(bpe_count("hello world", Vocabulary::Cl100k), 2);
        // A language written without spaces: about one token per character, four times
        // what the heuristic says.
        let chinese = "我们的网关对每个请求都会预先估算令牌数量并在结束后结算实际用量";
        let tokens = bpe_count(chinese, Vocabulary::O200k);
        assert!(tokens > 2 * estimate_tokens(chinese), "{tokens}");
    }
}
