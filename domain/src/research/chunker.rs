//! A pure, deterministic text chunker: the same text and parameters always give the same spans,
//! so recorded chunk indexes stay meaningful.

use serde::{Deserialize, Serialize};

/// One chunk of a document, as character (not byte) offsets into the ingested text:
/// `start..end`, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkSpan {
    /// Position in the document's chunk list, from 0.
    pub index: usize,
    pub start: usize,
    pub end: usize,
}

impl ChunkSpan {
    /// The chunk's text. A span that does not fit `text` yields what overlaps it, never a panic.
    pub fn slice<'a>(&self, text: &'a str) -> &'a str {
        let byte = |chars: usize| {
            text.char_indices()
                .nth(chars)
                .map_or(text.len(), |(at, _)| at)
        };
        let start = byte(self.start);
        let end = byte(self.end).max(start);
        text.get(start..end).unwrap_or("")
    }
}

/// Splits `text` into spans of at most `max_chars` characters that cover it in order, each
/// sharing at most `overlap` characters with the one before.
///
/// A chunk ends at the last paragraph break in the back half of its window, else the last line
/// break, sentence end or whitespace, else it is cut at `max_chars`; with overlap, the next chunk
/// starts at a word start inside the overlap when there is one. Out-of-range parameters are
/// clamped (`max_chars` to at least 1, `overlap` below `max_chars`) so it always terminates.
pub fn chunk_text(text: &str, max_chars: usize, overlap: usize) -> Vec<ChunkSpan> {
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len();
    let max = max_chars.max(1);
    let overlap = overlap.min(max - 1);
    let mut spans = Vec::new();
    let mut start = 0;
    while start < len {
        let end = if len - start <= max {
            len
        } else {
            break_point(&chars, start, max, overlap)
        };
        spans.push(ChunkSpan {
            index: spans.len(),
            start,
            end,
        });
        if end == len {
            break;
        }
        start = next_start(&chars, end, overlap);
    }
    spans
}

/// Where a chunk starting at `start` ends, when the rest of the text does not fit in it.
fn break_point(chars: &[char], start: usize, max: usize, overlap: usize) -> usize {
    let limit = start + max;
    // Not before halfway between the overlap and the limit: chunks stay reasonably full, and
    // the next chunk (which starts at most `overlap` back) always moves forward.
    let earliest = start + overlap + ((max - overlap) / 2).max(1);
    let rules: [fn(&[char], usize) -> bool; 4] =
        [ends_paragraph, ends_line, ends_sentence, ends_word];
    rules
        .into_iter()
        .find_map(|rule| (earliest..=limit).rev().find(|&p| rule(chars, p)))
        .unwrap_or(limit)
}

/// Where the chunk after one ending at `end` starts.
fn next_start(chars: &[char], end: usize, overlap: usize) -> usize {
    let from = end - overlap;
    (from..end)
        .find(|&p| {
            p > 0
                && char_at(chars, p - 1).is_some_and(char::is_whitespace)
                && char_at(chars, p).is_some_and(|c| !c.is_whitespace())
        })
        .unwrap_or(from)
}

fn char_at(chars: &[char], at: usize) -> Option<char> {
    chars.get(at).copied()
}

/// `p` follows a blank line ("\n\n" or "\n\r\n").
fn ends_paragraph(chars: &[char], p: usize) -> bool {
    p >= 2
        && char_at(chars, p - 1) == Some('\n')
        && (char_at(chars, p - 2) == Some('\n')
            || (p >= 3
                && char_at(chars, p - 2) == Some('\r')
                && char_at(chars, p - 3) == Some('\n')))
}

fn ends_line(chars: &[char], p: usize) -> bool {
    p >= 1 && char_at(chars, p - 1) == Some('\n')
}

/// `p` follows sentence punctuation and one whitespace character.
fn ends_sentence(chars: &[char], p: usize) -> bool {
    p >= 2
        && char_at(chars, p - 1).is_some_and(char::is_whitespace)
        && char_at(chars, p - 2).is_some_and(|c| matches!(c, '.' | '!' | '?' | '…'))
}

fn ends_word(chars: &[char], p: usize) -> bool {
    p >= 1 && char_at(chars, p - 1).is_some_and(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn texts(text: &str, max: usize, overlap: usize) -> Vec<String> {
        chunk_text(text, max, overlap)
            .iter()
            .map(|span| span.slice(text).to_owned())
            .collect()
    }

    #[test]
    fn a_short_text_is_one_chunk() {
        assert_eq!(
            chunk_text("héllo", 10, 2),
            vec![ChunkSpan {
                index: 0,
                start: 0,
                end: 5
            }]
        );
    }

    #[test]
    fn an_empty_text_has_no_chunks() {
        assert_eq!(chunk_text("", 10, 0), vec![]);
    }

    #[test]
    fn chunks_end_at_paragraphs_before_sentences_and_words() {
        let text = "One two.\n\nThree four. Five six seven";
        assert_eq!(
            texts(text, 16, 0),
            vec!["One two.\n\n", "Three four. ", "Five six seven"]
        );
    }

    #[test]
    fn chunks_end_at_sentences_before_words() {
        let text = "Aa bb. Cc dd ee ff gg";
        // A word break at 13 is later, but the sentence end at 7 is in the window and wins.
        assert_eq!(texts(text, 14, 0), vec!["Aa bb. ", "Cc dd ee ff gg"]);
        assert_eq!(texts(text, 10, 0), vec!["Aa bb. ", "Cc dd ee ", "ff gg"]);
    }

    #[test]
    fn a_text_without_breaks_is_cut_at_max_chars() {
        assert_eq!(texts("abcdefghij", 4, 0), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn overlapping_chunks_start_at_a_word_when_they_can() {
        assert_eq!(
            texts("alpha beta gamma delta", 12, 6),
            vec!["alpha beta ", "beta gamma ", "gamma delta"]
        );
    }

    #[test]
    fn a_span_outside_the_text_slices_to_nothing() {
        let span = ChunkSpan {
            index: 0,
            start: 9,
            end: 3,
        };
        assert_eq!(span.slice("abc"), "");
    }

    proptest! {
        #[test]
        fn spans_cover_the_text_in_order_within_max_chars_and_overlap(
            text in "[a-c .!?\n\ré]{0,300}",
            max in 1usize..40,
            overlap_seed in 0usize..40,
        ) {
            let overlap = overlap_seed % max;
            let spans = chunk_text(&text, max, overlap);
            let len = text.chars().count();
            if len == 0 {
                prop_assert!(spans.is_empty());
                return Ok(());
            }
            prop_assert_eq!(spans.first().map(|s| s.start), Some(0));
            prop_assert_eq!(spans.last().map(|s| s.end), Some(len));
            for (i, span) in spans.iter().enumerate() {
                prop_assert_eq!(span.index, i);
                prop_assert!(span.start < span.end, "empty span {:?}", span);
                prop_assert!(span.end - span.start <= max, "span {:?} over {}", span, max);
            }
            for pair in spans.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                prop_assert!(b.start > a.start && b.end > a.end, "{:?} then {:?}", a, b);
                prop_assert!(b.start <= a.end, "gap between {:?} and {:?}", a, b);
                prop_assert!(a.end - b.start <= overlap, "{:?} and {:?} overlap more than {}", a, b, overlap);
            }
            if overlap == 0 {
                let joined: String = spans.iter().map(|s| s.slice(&text)).collect();
                prop_assert_eq!(joined, text);
            }
        }

        #[test]
        fn chunking_is_deterministic(text in "\\PC{0,200}", max in 1usize..30) {
            prop_assert_eq!(chunk_text(&text, max, max / 3), chunk_text(&text, max, max / 3));
        }
    }
}
