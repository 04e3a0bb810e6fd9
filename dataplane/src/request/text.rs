//! A prompt's text read once and kept bounded: its start verbatim (what the tokenizer counts
//! exactly) and, of the whole, only what the token counts need (bytes, characters, words).
//! A 20 MiB prompt costs the gateway its first 64 KiB, not a second copy of the body.

/// Bytes of a text's start kept verbatim. The tokenizer counts this much exactly and every
/// byte beyond it as a token (`tokens::count_text`): a token is at least one byte, so that is
/// an upper bound, unlike an extrapolation from a start that may be cheaper than the rest.
/// The encoder takes about 2 ms for 64 KiB of prose and up to 25 ms for degenerate text (long
/// runs of one character), and a request must not cost much before it is even admitted.
pub const KEPT_BYTES: usize = 64 * 1024;

/// A text appended piece by piece, kept to its first [`KEPT_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text {
    /// The longest start of the text, cut at a character boundary, of at most [`KEPT_BYTES`].
    head: String,
    /// Whether characters were left out of `head` (it is then final).
    cut: bool,
    /// Bytes of the whole text.
    bytes: u64,
    /// Characters of the whole text.
    chars: u64,
    /// Words (runs of non-whitespace, as `str::split_whitespace` finds them) of the whole text.
    words: u64,
    /// Whether the text ends inside a word (a word continues into the next piece).
    in_word: bool,
}

impl Text {
    /// A text of one piece.
    pub fn of(text: &str) -> Self {
        let mut out = Self::default();
        out.push_str(text);
        out
    }

    /// Appends `piece`.
    pub fn push_str(&mut self, piece: &str) {
        self.bytes = self.bytes.saturating_add(piece.len() as u64);
        self.keep(piece);
        for c in piece.chars() {
            self.chars = self.chars.saturating_add(1);
            let space = c.is_whitespace();
            if !space && !self.in_word {
                self.words = self.words.saturating_add(1);
            }
            self.in_word = !space;
        }
    }

    /// Appends one character.
    pub fn push(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }

    fn keep(&mut self, piece: &str) {
        if self.cut {
            return;
        }
        let room = KEPT_BYTES - self.head.len();
        if piece.len() <= room {
            self.head.push_str(piece);
            return;
        }
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        self.head.push_str(&piece[..end]);
        self.cut = true;
    }

    /// The text's start (all of it when [`Self::is_whole`]).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Whether [`Self::head`] is the whole text.
    pub fn is_whole(&self) -> bool {
        !self.cut
    }

    /// Bytes of the whole text.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The heuristic token estimate of the whole text, as
    /// `omg_shared::tokens::estimate_tokens` gives it for the text in one piece.
    pub fn estimate(&self) -> u64 {
        if self.bytes == 0 {
            return 0;
        }
        self.chars.div_ceil(4).max(self.words).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omg_shared::tokens::estimate_tokens;

    fn pieces(parts: &[&str]) -> (Text, String) {
        let mut text = Text::default();
        for part in parts {
            text.push_str(part);
        }
        (text, parts.concat())
    }

    #[test]
    fn estimates_match_the_text_in_one_piece() {
        for parts in [
            &["", ""][..],
            &["Hello", " world"],
            &["Hel", "lo wo", "rld  ", "\n", "again"],
            &["  ", "a", "b c", " ", "é漢字 ok"],
        ] {
            let (text, whole) = pieces(parts);
            assert_eq!(text.estimate(), estimate_tokens(&whole), "{parts:?}");
            assert_eq!(text.len(), whole.len() as u64);
            assert_eq!((text.head(), text.is_whole()), (whole.as_str(), true));
        }
    }

    #[test]
    fn the_head_stops_at_a_character_boundary_and_stays_put() {
        let long = "é".repeat(KEPT_BYTES); // two bytes each
        let (text, whole) = pieces(&["a", &long, "tail"]);
        assert!(!text.is_whole());
        assert_eq!(text.head().len(), KEPT_BYTES - 1);
        assert!(whole.starts_with(text.head()));
        assert_eq!(text.len(), whole.len() as u64);
        assert_eq!(text.estimate(), estimate_tokens(&whole));
    }
}
