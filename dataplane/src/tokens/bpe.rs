//! A compact byte-pair encoder that counts tokens. tiktoken-rs's `CoreBPE` keeps every token
//! three times (an encoder map, a decoder map and a sorted list, each token its own
//! allocation): about 46 MB for `o200k_base`. Counting needs only the rank of a byte string,
//! so here the tokens sit back to back in one buffer, indexed by a hash table of ranks: about
//! 4 MB for `o200k_base`. It is filled once from a `CoreBPE`, which is dropped afterwards,
//! and splits text with the same pattern, so its counts are tiktoken's (the tests compare
//! them).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use fancy_regex::Regex;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use tiktoken_rs::{CoreBPE, Rank};

/// Pieces up to this long are merged by scanning; longer ones with a heap.
const SCAN_BYTES: usize = 128;

/// Ranks of one vocabulary's ordinary tokens (special tokens are never counted: prompts are
/// encoded as plain text).
pub struct Encoder {
    /// Every token's bytes, in rank order.
    bytes: Vec<u8>,
    /// Where each rank's bytes end in `bytes` (they start where the previous rank's end).
    ends: Vec<u32>,
    /// Ranks, found by their bytes.
    ranks: HashTable<Rank>,
    hasher: FxBuildHasher,
    /// How text is split into pieces before merging.
    pattern: Regex,
}

/// The ordinary tokens of `core` back to back, and where each ends.
fn tokens(core: &CoreBPE) -> Result<(Vec<u8>, Vec<u32>), String> {
    let special = core.special_tokens();
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    // Ordinary ranks are 0..n with no gap; special tokens come after them.
    for rank in 0..Rank::MAX {
        let Ok(token) = core.decode_bytes(&[rank]) else {
            break;
        };
        if std::str::from_utf8(&token).is_ok_and(|text| special.contains(text)) {
            break;
        }
        bytes.extend_from_slice(&token);
        ends.push(u32::try_from(bytes.len()).map_err(|_| "vocabulary too large")?);
    }
    if ends.len() < 256 {
        return Err(format!("only {} tokens in the vocabulary", ends.len()));
    }
    Ok((bytes, ends))
}

impl Encoder {
    /// Builds tiktoken-rs's encoder with `build` on a thread of its own, copies its ordinary
    /// tokens and frees it there. Its some 600,000 small allocations then all return to that
    /// thread's malloc arena, which hands the pages back to the system; freed on a long-lived
    /// thread, among allocations that stay, about 35 MB of them would stay resident.
    pub fn load<F>(build: F, pattern: &str) -> Result<Self, String>
    where
        F: FnOnce() -> Result<CoreBPE, String> + Send,
    {
        let (bytes, ends) = std::thread::scope(|scope| {
            scope
                .spawn(|| build().and_then(|core| tokens(&core)))
                .join()
                .unwrap_or_else(|_| Err("the tokenizer loader panicked".to_owned()))
        })?;
        // Copied out of the loader's arena, so none of it stays pinned there.
        Self::new(bytes.as_slice().to_vec(), ends.as_slice().to_vec(), pattern)
    }

    /// Copies the ordinary tokens of `core`, which splits text with `pattern`.
    #[cfg(test)]
    pub fn from_core(core: &CoreBPE, pattern: &str) -> Result<Self, String> {
        let (bytes, ends) = tokens(core)?;
        Self::new(bytes, ends, pattern)
    }

    fn new(bytes: Vec<u8>, ends: Vec<u32>, pattern: &str) -> Result<Self, String> {
        let pattern = Regex::new(pattern).map_err(|error| error.to_string())?;
        let mut encoder = Self {
            bytes,
            ends,
            ranks: HashTable::new(),
            hasher: FxBuildHasher,
            pattern,
        };
        let mut ranks = HashTable::with_capacity(encoder.ends.len());
        for rank in 0..encoder.ends.len() as Rank {
            let token = encoder.token(rank);
            let hash = encoder.hasher.hash_one(token);
            if ranks
                .find(hash, |&other| encoder.token(other) == token)
                .is_none()
            {
                ranks.insert_unique(hash, rank, |&other| {
                    encoder.hasher.hash_one(encoder.token(other))
                });
            }
        }
        encoder.ranks = ranks;
        Ok(encoder)
    }

    /// Ordinary tokens in the vocabulary.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes held, tables included.
    pub fn footprint(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * std::mem::size_of::<u32>()
            + self.ranks.capacity() * (std::mem::size_of::<Rank>() + 1)
    }

    fn token(&self, rank: Rank) -> &[u8] {
        let index = rank as usize;
        let start = if index == 0 {
            0
        } else {
            self.ends[index - 1] as usize
        };
        &self.bytes[start..self.ends[index] as usize]
    }

    fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        let hash = self.hasher.hash_one(bytes);
        self.ranks
            .find(hash, |&rank| self.token(rank) == bytes)
            .copied()
    }

    /// Tokens of `text` encoded as plain text (special-token strings included as text), or
    /// `None` when the splitting pattern gave up on it (its backtracking limit).
    pub fn count(&self, text: &str) -> Option<usize> {
        let mut tokens = 0;
        for piece in self.pattern.find_iter(text) {
            let piece = piece.ok()?.as_str().as_bytes();
            tokens += if piece.len() == 1 || self.rank(piece).is_some() {
                1
            } else if piece.len() <= SCAN_BYTES {
                self.merge_scanning(piece)
            } else {
                self.merge_with_heap(piece)
            };
        }
        Some(tokens)
    }

    /// The rank of the pair of parts `piece[start..end]`, `Rank::MAX` when it is no token.
    fn pair(&self, piece: &[u8], start: usize, end: usize) -> Rank {
        self.rank(&piece[start..end]).unwrap_or(Rank::MAX)
    }

    /// Byte-pair merging: starting from single bytes, the adjacent pair of parts that forms
    /// the lowest-ranked token is merged (the leftmost on a tie) until no pair forms one.
    /// Returns the parts left. This one rescans the pairs after each merge (quick for short
    /// pieces).
    fn merge_scanning(&self, piece: &[u8]) -> usize {
        // Part `k` is `piece[starts[k]..starts[k + 1]]`; `pairs[k]` ranks parts `k` and `k + 1`.
        let mut starts: Vec<usize> = (0..=piece.len()).collect();
        let mut pairs: Vec<Rank> = (0..piece.len() - 1)
            .map(|k| self.pair(piece, k, k + 2))
            .collect();
        loop {
            let mut best = (Rank::MAX, 0);
            for (k, &rank) in pairs.iter().enumerate() {
                if rank < best.0 {
                    best = (rank, k);
                }
            }
            let (rank, k) = best;
            if rank == Rank::MAX {
                return starts.len() - 1;
            }
            starts.remove(k + 1);
            pairs.remove(k);
            if k < pairs.len() {
                pairs[k] = self.pair(piece, starts[k], starts[k + 2]);
            }
            if k > 0 {
                pairs[k - 1] = self.pair(piece, starts[k - 1], starts[k + 1]);
            }
        }
    }

    /// [`Self::merge_scanning`]'s merging with a heap of candidate pairs, for long pieces
    /// (a run of thousands of one character must not cost a rescan per merge). A candidate
    /// `(rank, start, end)` still applies when the parts at `start` still span exactly
    /// `piece[start..end]`: its rank is that of those bytes.
    fn merge_with_heap(&self, piece: &[u8]) -> usize {
        let len = piece.len();
        // `end[i]`: where the part starting at `i` ends; `prev[i]`: the part before it;
        // parts swallowed by a merge are `dead`.
        let mut end: Vec<usize> = (1..=len).collect();
        let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
        let mut dead = vec![false; len];
        let mut heap = BinaryHeap::with_capacity(len);
        for i in 0..len - 1 {
            let rank = self.pair(piece, i, i + 2);
            if rank != Rank::MAX {
                heap.push(Reverse((rank, i, i + 2)));
            }
        }
        let mut parts = len;
        while let Some(Reverse((_, start, pair_end))) = heap.pop() {
            let middle = end[start];
            if dead[start] || middle >= len || end[middle] != pair_end {
                continue;
            }
            // Merge the part at `start` with the one at `middle`.
            dead[middle] = true;
            end[start] = pair_end;
            parts -= 1;
            if pair_end < len {
                prev[pair_end] = start;
                let rank = self.pair(piece, start, end[pair_end]);
                if rank != Rank::MAX {
                    heap.push(Reverse((rank, start, end[pair_end])));
                }
            }
            if start > 0 {
                let before = prev[start];
                let rank = self.pair(piece, before, pair_end);
                if rank != Rank::MAX {
                    heap.push(Reverse((rank, before, pair_end)));
                }
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use tiktoken_rs::{CoreBPE, O200K_BASE_PAT_STR};

    use super::Encoder;
    use crate::tokens::CL100K_BASE_PATTERN;

    /// tiktoken's encoder and the compact copy of it, per vocabulary.
    fn o200k() -> &'static (CoreBPE, Encoder) {
        static CELL: OnceLock<(CoreBPE, Encoder)> = OnceLock::new();
        CELL.get_or_init(|| {
            let core = tiktoken_rs::o200k_base().unwrap_or_else(|e| panic!("{e}"));
            let encoder =
                Encoder::from_core(&core, O200K_BASE_PAT_STR).unwrap_or_else(|e| panic!("{e}"));
            (core, encoder)
        })
    }

    fn cl100k() -> &'static (CoreBPE, Encoder) {
        static CELL: OnceLock<(CoreBPE, Encoder)> = OnceLock::new();
        CELL.get_or_init(|| {
            let core = tiktoken_rs::cl100k_base().unwrap_or_else(|e| panic!("{e}"));
            let encoder =
                Encoder::from_core(&core, CL100K_BASE_PATTERN).unwrap_or_else(|e| panic!("{e}"));
            (core, encoder)
        })
    }

    fn assert_same(text: &str) {
        for (name, (core, encoder)) in [("o200k", o200k()), ("cl100k", cl100k())] {
            assert_eq!(
                encoder.count(text),
                Some(core.encode_ordinary(text).len()),
                "{name}: {text:?}"
            );
        }
    }

    #[test]
    fn copies_every_ordinary_token_and_no_special_one() {
        assert_eq!(o200k().1.len(), 199_998);
        assert_eq!(cl100k().1.len(), 100_256);
        // The compact copy is a tenth of tiktoken-rs's maps, or less.
        assert!(o200k().1.footprint() < 5 << 20, "{}", o200k().1.footprint());
        assert!(
            cl100k().1.footprint() < 3 << 20,
            "{}",
            cl100k().1.footprint()
        );
    }

    #[test]
    fn counts_like_tiktoken() {
        let long_word = "supercalifragilisticexpialidocious".repeat(8);
        let cases = [
            "",
            "hello world",
            "Hello, World! How's it going? I'm fine; you'll see, they've said.",
            "fn main() {\n    println!(\"{}\", 42 * 7);\n}\n",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
            "我们的网关对每个请求都会预先估算令牌数量并在结束后结算实际用量",
            "日本語のテキストとカタカナ、ひらがな。",
            "مرحبا بالعالم، كيف حالك؟",
            "Emoji: 👩‍👩‍👧‍👦 🏳️‍🌈 ✈️ 🇫🇷 and café naïve façade",
            "numbers 1234567890 3.14159 1e-10 0x1F 2026-11-23T10:00:00Z",
            "tabs\tand\t\tnew\n\nlines\r\n  indented\n\n\n",
            "https://example.com/path?query=value&other=1#fragment",
            "<|endoftext|> is text here, as are <|fim_prefix|> and <|endofprompt|>",
            "\u{0}\u{1}\u{7f} control characters \u{feff}",
            &long_word,
        ];
        for case in cases {
            assert_same(case);
        }
    }

    #[test]
    fn long_pieces_merge_with_the_heap_like_tiktoken() {
        // Pieces past the scanning limit: a long run of one letter, of spaces, of digits
        // (split by three), of punctuation, and a long word-like run of mixed letters.
        let mixed: String = (0..600)
            .map(|i| char::from(b'a' + u8::try_from(i * 7 % 26).unwrap_or(0)))
            .collect();
        for case in [
            "a".repeat(1000),
            " ".repeat(500),
            format!("x{}y", " ".repeat(300)),
            "9".repeat(700),
            "!?".repeat(400),
            "令".repeat(300),
            mixed,
        ] {
            assert_same(&case);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_text_counts_like_tiktoken(
            text in "([a-zA-Z]{1,12}|[0-9]{1,6}|[ \t\n]{1,4}|[.,;:!?'\"(){}<>|_-]{1,3}|[é漢字ひ😀한]{1,4}|'s|'ll){0,40}"
        ) {
            assert_same(&text);
        }
    }
}
