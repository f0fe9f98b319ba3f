//! The words of a mention that say what it is about, for top terms, trending terms and
//! hashtags: lower-cased, at least three characters, English stop words left out, hashtags kept
//! with their `#`.

use std::collections::BTreeSet;

/// At most this many distinct terms are taken from one mention.
pub const MAX_TERMS_PER_MENTION: usize = 64;
const MAX_TERM_CHARS: usize = 40;

const STOP_WORDS: &[&str] = &[
    "about", "after", "again", "all", "also", "and", "any", "are", "because", "been", "before",
    "being", "but", "can", "could", "did", "does", "doing", "don", "down", "each", "even", "for",
    "from", "get", "got", "had", "has", "have", "her", "here", "him", "his", "how", "http",
    "https", "into", "its", "just", "like", "more", "most", "much", "not", "now", "off", "once",
    "one", "only", "other", "our", "out", "over", "own", "same", "she", "should", "some", "still",
    "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "through", "too", "under", "until", "very", "was", "way", "were", "what", "when",
    "where", "which", "while", "who", "why", "will", "with", "would", "www", "you", "your",
];

/// The distinct terms of `text`, in order of first appearance.
pub fn terms(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '#' || c == '\'')) {
        let hashtag = raw.starts_with('#');
        let word: String = raw
            .trim_matches(|c: char| c == '#' || c == '\'')
            .chars()
            .flat_map(char::to_lowercase)
            .filter(|c| *c != '#')
            .collect();
        let word = word.strip_suffix("'s").unwrap_or(&word).replace('\'', "");
        let chars = word.chars().count();
        if !(3..=MAX_TERM_CHARS).contains(&chars)
            || word.chars().all(|c| c.is_ascii_digit())
            || (!hashtag && STOP_WORDS.binary_search(&word.as_str()).is_ok())
        {
            continue;
        }
        let term = if hashtag { format!("#{word}") } else { word };
        if seen.insert(term.clone()) {
            out.push(term);
            if out.len() == MAX_TERMS_PER_MENTION {
                break;
            }
        }
    }
    out
}

/// How much a term trends: its count in the window against the count its baseline rate
/// predicts (`expected` = baseline count × window length / baseline length), as a Poisson
/// z-score with one pseudo-count, so a term seen twice where none was expected does not
/// outrank one seen two hundred times where fifty were.
pub fn trend_score(window: u64, expected: f64) -> f64 {
    (window as f64 - expected) / (expected + 1.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_the_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn terms_are_lowercased_distinct_and_keep_hashtags() {
        assert_eq!(
            terms("The ACME outage: acme's app is DOWN again #AcmeDown #acmedown 2026 ok"),
            vec!["acme", "outage", "app", "#acmedown"]
        );
    }

    #[test]
    fn rare_noise_does_not_outrank_a_real_surge() {
        assert!(trend_score(200, 50.0) > trend_score(2, 0.0));
        assert!(trend_score(5, 5.0).abs() < 1e-9);
    }
}
