//! Sentiment scoring at ingest: VADER (Hutto & Gilbert, ICWSM 2014).
//!
//! The lexicons come from the `vader_sentiment` crate, which compiles them in (nothing is
//! fetched at run time). The scoring rules are that crate's, re-implemented here because its
//! `polarity_scores` was the costliest step of a bulk ingest: it allocates a `String` per
//! character to look for emoji, runs a regex per token, and scans ~90 substrings per sentiment
//! word. The tests check that both give the same compound score.
//!
//! One deliberate difference: where several special-case idioms match the same window, the
//! crate takes whichever its `HashMap` yields first (random per process); we take the first in
//! a fixed order, so a score never depends on the process that computed it.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use plasma_domain::brand::{ScorerInfo, SentimentScorer};
use unicase::UniCase;

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const NEGATION_SCALAR: f64 = -0.740;
const QMARK_INCR: f64 = 0.180;
const EMARK_INCR: f64 = 0.292;
const MAX_EMARK: usize = 4;
const MAX_QMARK: usize = 3;
const MAX_QMARK_INCR: f64 = 0.96;
const NORMALIZATION_ALPHA: f64 = 15.0;
const PUNCTUATION: &str = "[!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~]";

const NEGATIONS: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOSTERS: &[(&str, f64)] = &[
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("just enough", B_DECR),
    ("kind of", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sort of", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

const SPECIAL_IDIOMS: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
];

/// Lexicons and matchers, built once per process.
struct Tables {
    /// ASCII lexicon entries, keyed lowercase.
    lexicon: HashMap<String, f64>,
    boosters: HashMap<&'static str, f64>,
    negations: HashSet<&'static str>,
    booster_matcher: AhoCorasick,
    idiom_matcher: AhoCorasick,
    all_caps: regex::Regex,
}

static TABLES: LazyLock<Option<Tables>> = LazyLock::new(|| {
    let lexicon = vader_sentiment::LEXICON
        .iter()
        .filter(|(word, _)| word.is_ascii())
        .map(|(word, value)| (word.to_ascii_lowercase(), *value))
        .collect();
    Some(Tables {
        lexicon,
        boosters: BOOSTERS.iter().copied().collect(),
        negations: NEGATIONS.iter().copied().collect(),
        booster_matcher: AhoCorasick::new(BOOSTERS.iter().map(|(k, _)| k)).ok()?,
        idiom_matcher: AhoCorasick::new(SPECIAL_IDIOMS.iter().map(|(k, _)| k)).ok()?,
        all_caps: regex::Regex::new(r"^[A-Z\W]+$").ok()?,
    })
});

/// One token: as written, and lowercased for lookups (ASCII tokens only; others use the
/// crate's case-insensitive lexicon).
struct Token<'a> {
    raw: &'a str,
    lower: Option<String>,
}

impl Token<'_> {
    fn is(&self, word: &str) -> bool {
        match &self.lower {
            Some(lower) => lower == word,
            None => UniCase::new(self.raw) == UniCase::new(word),
        }
    }
}

impl Tables {
    fn lexicon_value(&self, token: &Token<'_>) -> Option<f64> {
        match &token.lower {
            Some(lower) => self.lexicon.get(lower.as_str()).copied(),
            None => vader_sentiment::LEXICON
                .get(&UniCase::new(token.raw))
                .copied(),
        }
    }

    fn booster(&self, token: &Token<'_>) -> Option<f64> {
        token
            .lower
            .as_deref()
            .and_then(|lower| self.boosters.get(lower).copied())
    }

    fn is_all_caps(&self, token: &str) -> bool {
        if token.len() <= 1 {
            return false;
        }
        if token.is_ascii() {
            // ASCII `[A-Z\W]`: an upper-case letter or anything but [A-Za-z0-9_].
            token
                .bytes()
                .all(|b| b.is_ascii_uppercase() || !(b.is_ascii_alphanumeric() || b == b'_'))
        } else {
            self.all_caps.is_match(token)
        }
    }

    fn is_negated(&self, token: &Token<'_>) -> bool {
        let listed = token
            .lower
            .as_deref()
            .is_some_and(|lower| self.negations.contains(lower));
        listed || token.raw.contains("n't")
    }

    fn compound(&self, text: &str) -> f64 {
        let expanded;
        // Emoji are never ASCII: most texts skip the expansion entirely.
        let text = if text.is_ascii() {
            text
        } else {
            expanded = expand_emoji(text);
            &expanded
        };
        let tokens: Vec<Token<'_>> = text
            .split_whitespace()
            .filter(|s| s.len() > 1)
            .map(|s| {
                let stripped = s.trim_matches(|c| PUNCTUATION.contains(c));
                let raw = if stripped.len() <= 1 { s } else { stripped };
                Token {
                    raw,
                    lower: raw.is_ascii().then(|| raw.to_ascii_lowercase()),
                }
            })
            .collect();
        let caps: Vec<bool> = tokens.iter().map(|t| self.is_all_caps(t.raw)).collect();
        let mixed_caps = caps.iter().any(|c| *c) && caps.iter().any(|c| !*c);

        let mut sentiments: Vec<f64> = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            let value = if self.booster(token).is_some()
                || (i + 1 < tokens.len() && token.is("kind") && tokens[i + 1].is("of"))
            {
                0.0
            } else {
                self.valence(&tokens, &caps, mixed_caps, i)
            };
            sentiments.push(value);
        }
        if let Some(but) = tokens.iter().position(|t| t.is("but")) {
            for (i, s) in sentiments.iter_mut().enumerate() {
                if i < but {
                    *s *= 0.5;
                } else if i > but {
                    *s *= 1.5;
                }
            }
        }
        if sentiments.is_empty() {
            return 0.0;
        }
        let mut total: f64 = sentiments.iter().sum();
        let emphasis = punctuation_emphasis(text);
        if total > 0.0 {
            total += emphasis;
        } else {
            total -= emphasis;
        }
        (total / (total * total + NORMALIZATION_ALPHA).sqrt()).clamp(-1.0, 1.0)
    }

    fn valence(&self, tokens: &[Token<'_>], caps: &[bool], mixed_caps: bool, i: usize) -> f64 {
        let Some(mut valence) = self.lexicon_value(&tokens[i]) else {
            return 0.0;
        };
        if caps[i] && mixed_caps {
            valence += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        for start in 0..3 {
            if i > start && self.lexicon_value(&tokens[i - start - 1]).is_none() {
                let previous = i - start - 1;
                let mut scalar = 0.0;
                if let Some(boost) = self.booster(&tokens[previous]) {
                    scalar = if valence < 0.0 { -boost } else { boost };
                    if caps[previous] && mixed_caps {
                        scalar += if valence > 0.0 { C_INCR } else { -C_INCR };
                    }
                }
                if start == 1 {
                    scalar *= 0.95;
                } else if start == 2 {
                    scalar *= 0.9;
                }
                valence += scalar;
                valence = self.negation_check(valence, tokens, start, i);
                if start == 2 {
                    valence = self.special_idioms(valence, tokens, i);
                }
            }
        }
        // The crate's "at least" branch compares one token with two words and never fires;
        // only a bare preceding "least" negates.
        if i > 0 && tokens[i - 1].is("least") {
            valence *= NEGATION_SCALAR;
        }
        valence
    }

    fn negation_check(&self, valence: f64, tokens: &[Token<'_>], start: usize, i: usize) -> f64 {
        let t = |k: usize| &tokens[i - k];
        match start {
            0 if self.is_negated(t(1)) => valence * NEGATION_SCALAR,
            1 => {
                if t(2).is("never") && (t(1).is("so") || t(1).is("this")) {
                    valence * 1.25
                } else if t(2).is("without") && t(1).is("doubt") {
                    valence
                } else if self.is_negated(t(2)) {
                    valence * NEGATION_SCALAR
                } else {
                    valence
                }
            }
            // Operator precedence as in the crate: (a && b) || c || d || e.
            2 => {
                if (t(3).is("never") && t(2).is("so"))
                    || t(2).is("this")
                    || t(1).is("so")
                    || t(1).is("this")
                {
                    valence * 1.25
                } else if (t(3).is("without") && t(2).is("doubt")) || t(1).is("doubt") {
                    valence
                } else if self.is_negated(t(3)) {
                    valence * NEGATION_SCALAR
                } else {
                    valence
                }
            }
            _ => valence,
        }
    }

    fn special_idioms(&self, mut valence: f64, tokens: &[Token<'_>], i: usize) -> f64 {
        let end = if tokens.len() - 1 > i {
            (i + 3).min(tokens.len())
        } else {
            i + 1
        };
        let join = |range: std::ops::Range<usize>| {
            tokens[range]
                .iter()
                .map(|t| t.raw)
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        let window = join(i - 3..end);
        if let Some(found) = self
            .idiom_matcher
            .find_overlapping_iter(&window)
            .map(|m| m.pattern().as_usize())
            .min()
        {
            valence = SPECIAL_IDIOMS[found].1;
        }
        // Every booster contained anywhere in the three previous words (substrings included,
        // as in the crate: "also" contains "so").
        let previous = join(i - 3..i);
        let mut seen = [false; BOOSTERS.len()];
        for m in self.booster_matcher.find_overlapping_iter(&previous) {
            seen[m.pattern().as_usize()] = true;
        }
        for (k, hit) in seen.iter().enumerate() {
            if *hit {
                valence += BOOSTERS[k].1;
            }
        }
        valence
    }
}

/// Replaces each emoji by its description, as the crate does.
fn expand_emoji(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut previous_space = true;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let description = if c.is_ascii() {
            None
        } else {
            vader_sentiment::EMOJI_LEXICON.get(&*c.encode_utf8(&mut buf))
        };
        match description {
            Some(description) => {
                if !previous_space {
                    out.push(' ');
                }
                out.push_str(description);
                previous_space = false;
            }
            None => {
                previous_space = c == ' ';
                out.push(c);
            }
        }
    }
    out
}

fn punctuation_emphasis(text: &str) -> f64 {
    let exclamations = text.bytes().filter(|b| *b == b'!').count();
    let questions = text.bytes().filter(|b| *b == b'?').count();
    let question_emphasis = if questions > MAX_QMARK {
        MAX_QMARK_INCR
    } else {
        questions as f64 * QMARK_INCR
    };
    exclamations.min(MAX_EMARK) as f64 * EMARK_INCR + question_emphasis
}

/// VADER compound score, recorded in thousandths.
#[derive(Debug, Default, Clone, Copy)]
pub struct VaderScorer;

impl VaderScorer {
    pub const NAME: &'static str = "vader";
    /// The lexicon's origin and this implementation's revision.
    pub const VERSION: &'static str = "vader_sentiment-0.1.1-lexicon/plasma-1";

    pub fn new() -> Self {
        Self
    }

    /// The compound polarity in -1 ..= 1.
    pub fn compound(&self, text: &str) -> f64 {
        TABLES.as_ref().map_or(0.0, |tables| tables.compound(text))
    }
}

impl SentimentScorer for VaderScorer {
    fn score_millis(&self, text: &str) -> i16 {
        // Clamped and rounded: exact thousandths from here on.
        (self.compound(text).clamp(-1.0, 1.0) * 1000.0).round() as i16
    }

    fn info(&self) -> ScorerInfo {
        ScorerInfo {
            name: Self::NAME.to_owned(),
            version: Self::VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use vader_sentiment::SentimentIntensityAnalyzer;

    use super::*;

    fn reference(text: &str) -> f64 {
        SentimentIntensityAnalyzer::new()
            .polarity_scores(text)
            .get("compound")
            .copied()
            .unwrap_or(0.0)
    }

    fn assert_same(text: &str) {
        let ours = VaderScorer.compound(text);
        let theirs = reference(text);
        // The crate sums boosters in HashMap order; float addition order may move the last bits.
        assert!(
            (ours - theirs).abs() < 1e-9,
            "{text:?}: ours {ours}, vader_sentiment {theirs}"
        );
    }

    #[test]
    fn praise_scores_positive_and_complaints_negative() {
        let scorer = VaderScorer::new();
        assert!(scorer.score_millis("I love these skates, they are great!") > 500);
        assert!(scorer.score_millis("Terrible support, I hate this awful product.") < -500);
        assert_eq!(scorer.score_millis("The store opens at nine."), 0);
    }

    #[test]
    fn scores_match_the_vader_sentiment_crate_on_the_rules_it_implements() {
        for text in [
            "VADER is smart, handsome, and funny.",
            "VADER is smart, handsome, and funny!",
            "VADER is very smart, handsome, and funny.",
            "VADER is VERY SMART, handsome, and FUNNY.",
            "VADER is VERY SMART, handsome, and FUNNY!!!",
            "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
            "VADER is not smart, handsome, nor funny.",
            "The book was good.",
            "At least it isn't a horrible book.",
            "The book was only kind of good.",
            "The plot was good, but the characters are uncompelling and the dialog is not great.",
            "Today SUX!",
            "Today only kinda sux! But I'll get by, lol",
            "Make sure you :) or :D today!",
            "Catch utf-8 emoji such as 💘 and 💋 and 😁",
            "Not bad at all",
            "never so good, without doubt the best, this is the bomb",
            "I am so not happy about this kind of service??? really???",
            "also the shit that they sell is to die for",
            "",
            "   ",
            "!!!",
            "a b c",
        ] {
            assert_same(text);
        }
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "good", "GOOD", "bad", "great", "terrible", "love", "hate", "not", "never",
                "isn't", "so", "this", "very", "kind", "of", "but", "least", "at", "without",
                "doubt", "the", "bomb", "also", "sort", "kinda", "HORRIBLE", "Acme", "nope", ":)",
                ":(", "😁", "💔", "wow!", "ok?", "fine.", "no", "yeah", "right",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z']{1,8}",
        ]
    }

    proptest! {
        #[test]
        fn random_sentences_score_as_the_crate_scores_them(
            words in prop::collection::vec(word(), 0..25),
            bangs in "[!?]{0,5}",
        ) {
            let text = format!("{}{bangs}", words.join(" "));
            let ours = VaderScorer.compound(&text);
            let theirs = reference(&text);
            prop_assert!((ours - theirs).abs() < 1e-9, "{text:?}: ours {ours}, crate {theirs}");
        }
    }

    #[test]
    fn emoji_are_never_ascii_so_ascii_texts_may_skip_expansion() {
        for key in vader_sentiment::EMOJI_LEXICON.keys() {
            assert!(!key.is_ascii(), "{key:?}");
        }
    }
}
