//! Voice checking: does a draft's text follow its brand's voice guidelines?

use serde::{Deserialize, Serialize};

use super::channel::Channel;
use crate::brand::{SentimentScorer, VoiceGuidelines};

/// Checks a text against a brand's voice. The verdict is recorded in the event, so a replay never
/// checks again and a checker upgrade never rewrites history.
pub trait VoiceChecker: Send + Sync {
    /// The verdict for `text`, written for `channel`, under `guidelines`.
    fn check(&self, text: &str, channel: Channel, guidelines: &VoiceGuidelines) -> VoiceCheck;
    /// Which checker, for the record.
    fn info(&self) -> CheckerInfo;
}

/// The name and version of the checker that produced a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerInfo {
    pub name: String,
    pub version: String,
}

/// A voice check's verdict. `issues` may be non-empty on a pass (a checker may pass a text with
/// remarks); only `passed` gates approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceCheck {
    pub passed: bool,
    pub issues: Vec<String>,
}

impl VoiceCheck {
    /// Passes exactly when there are no issues.
    pub fn from_issues(issues: Vec<String>) -> Self {
        Self {
            passed: issues.is_empty(),
            issues,
        }
    }
}

/// The default, deterministic checker: banned words (whole words, any case), required phrases
/// (any case) and the channel's length limit. Any issue fails the check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RulesVoiceChecker;

impl RulesVoiceChecker {
    pub const NAME: &'static str = "rules";
    /// Bump whenever the rules change, so recorded verdicts say which rules produced them.
    pub const VERSION: &'static str = "1";
}

impl VoiceChecker for RulesVoiceChecker {
    fn check(&self, text: &str, channel: Channel, guidelines: &VoiceGuidelines) -> VoiceCheck {
        let lowered = text.to_lowercase();
        let mut issues = Vec::new();
        for word in &guidelines.banned_words {
            let word = word.trim();
            if !word.is_empty() && contains_word(&lowered, &word.to_lowercase()) {
                issues.push(format!("uses the banned word `{word}`"));
            }
        }
        for phrase in &guidelines.required_phrases {
            let phrase = phrase.trim();
            if !phrase.is_empty() && !lowered.contains(&phrase.to_lowercase()) {
                issues.push(format!("lacks the required phrase `{phrase}`"));
            }
        }
        if let Some(max) = channel.max_chars() {
            let len = text.chars().count();
            if len > max {
                issues.push(format!(
                    "is {len} characters long; {channel} allows at most {max}"
                ));
            }
        }
        VoiceCheck::from_issues(issues)
    }

    fn info(&self) -> CheckerInfo {
        CheckerInfo {
            name: Self::NAME.to_owned(),
            version: Self::VERSION.to_owned(),
        }
    }
}

/// Tone words that ask for a text that does not read negative.
const WARM_TONES: [&str; 10] = [
    "warm",
    "friendly",
    "upbeat",
    "positive",
    "cheerful",
    "enthusiastic",
    "optimistic",
    "joyful",
    "playful",
    "encouraging",
];
/// Tone words that ask for a text that does not read strongly either way.
const CALM_TONES: [&str; 6] = ["calm", "neutral", "measured", "sober", "formal", "factual"];

/// The rules, plus the tone (through a sentiment scorer: a warm tone must not read negative, a
/// calm one not strongly either way) and the reading level (Flesch-Kincaid grade, at most 10 on
/// Twitter and Instagram, 14 on LinkedIn and in newsletters, 16 on a blog; texts under 20 words
/// are not graded). The platform's checker.
pub struct BrandVoiceChecker {
    scorer: std::sync::Arc<dyn SentimentScorer>,
}

impl std::fmt::Debug for BrandVoiceChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrandVoiceChecker")
            .field("scorer", &self.scorer.info())
            .finish()
    }
}

impl BrandVoiceChecker {
    pub const NAME: &'static str = "rules+tone+reading";
    /// Bump whenever a rule or threshold changes.
    pub const VERSION: &'static str = "1";

    pub fn new(scorer: std::sync::Arc<dyn SentimentScorer>) -> Self {
        Self { scorer }
    }

    fn max_grade(channel: Channel) -> f64 {
        match channel {
            Channel::Twitter | Channel::Instagram => 10.0,
            Channel::LinkedIn | Channel::Newsletter => 14.0,
            Channel::Blog => 16.0,
        }
    }
}

impl VoiceChecker for BrandVoiceChecker {
    fn check(&self, text: &str, channel: Channel, guidelines: &VoiceGuidelines) -> VoiceCheck {
        let mut issues = RulesVoiceChecker.check(text, channel, guidelines).issues;
        let tone = guidelines.tone.to_lowercase();
        let has = |words: &[&'static str]| -> Option<&'static str> {
            words.iter().find(|w| contains_word(&tone, w)).copied()
        };
        let sentiment = f64::from(self.scorer.score_millis(text)) / 1000.0;
        if let Some(word) = has(&WARM_TONES) {
            if sentiment < -0.05 {
                issues.push(format!(
                    "reads negative (sentiment {sentiment:.2}) for a `{word}` tone"
                ));
            }
        } else if let Some(word) = has(&CALM_TONES) {
            if sentiment.abs() > 0.75 {
                issues.push(format!(
                    "reads too strongly (sentiment {sentiment:.2}) for a `{word}` tone"
                ));
            }
        }
        if let Some(grade) = reading_grade(text) {
            let max = Self::max_grade(channel);
            if grade > max {
                issues.push(format!(
                    "reads at grade {grade:.1}; {channel} text should read at grade {max:.0} or below"
                ));
            }
        }
        VoiceCheck::from_issues(issues)
    }

    fn info(&self) -> CheckerInfo {
        CheckerInfo {
            name: Self::NAME.to_owned(),
            version: Self::VERSION.to_owned(),
        }
    }
}

/// The Flesch-Kincaid grade level of `text`; `None` under 20 words, where it says little.
pub fn reading_grade(text: &str) -> Option<f64> {
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.chars().any(char::is_alphabetic))
        .collect();
    if words.len() < 20 {
        return None;
    }
    let sentences = text
        .split(['.', '!', '?'])
        .filter(|s| s.split_whitespace().count() > 0)
        .count()
        .max(1);
    let syllables: usize = words.iter().map(|w| syllables(w)).sum();
    let words_n = words.len() as f64;
    Some(0.39 * (words_n / sentences as f64) + 11.8 * (syllables as f64 / words_n) - 15.59)
}

/// Vowel groups, less a silent final `e`, at least one.
fn syllables(word: &str) -> usize {
    let lower = word.to_lowercase();
    let mut count = 0;
    let mut previous_vowel = false;
    for c in lower.chars() {
        let vowel = matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
        if vowel && !previous_vowel {
            count += 1;
        }
        previous_vowel = vowel;
    }
    if lower.ends_with('e') && !lower.ends_with("le") && count > 1 {
        count -= 1;
    }
    count.max(1)
}

/// Whether `needle` occurs in `haystack` as a whole word (not inside a longer word), so banning
/// "cheap" does not flag "cheapskate" and banning "ass" does not flag "class".
fn contains_word(haystack: &str, needle: &str) -> bool {
    let mut from = 0;
    while let Some(found) = haystack.get(from..).and_then(|rest| rest.find(needle)) {
        let at = from + found;
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return true;
        }
        // Step one character, not one match: a later, overlapping occurrence may be whole.
        from = at + haystack[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guidelines() -> VoiceGuidelines {
        VoiceGuidelines {
            tone: "plain".into(),
            banned_words: vec!["cheap".into(), "best ever".into()],
            required_phrases: vec!["#ad".into()],
        }
    }

    #[test]
    fn a_text_that_follows_the_rules_passes() {
        let check = RulesVoiceChecker.check(
            "Our skates are a cheapskate's dream #AD",
            Channel::Twitter,
            &guidelines(),
        );
        assert_eq!(check, VoiceCheck::from_issues(vec![]));
        assert!(check.passed);
    }

    #[test]
    fn a_banned_word_in_any_case_fails_the_check() {
        let check = RulesVoiceChecker.check(
            "Cheap skates, the Best Ever! #ad",
            Channel::Blog,
            &guidelines(),
        );
        assert!(!check.passed);
        assert_eq!(
            check.issues,
            vec![
                "uses the banned word `cheap`".to_owned(),
                "uses the banned word `best ever`".to_owned()
            ]
        );
    }

    #[test]
    fn a_missing_required_phrase_fails_the_check() {
        let check = RulesVoiceChecker.check("Great skates", Channel::Blog, &guidelines());
        assert_eq!(
            check.issues,
            vec!["lacks the required phrase `#ad`".to_owned()]
        );
    }

    #[test]
    fn a_tweet_over_280_characters_fails_the_check() {
        let text = format!("#ad {}", "é".repeat(280));
        let check = RulesVoiceChecker.check(&text, Channel::Twitter, &guidelines());
        assert_eq!(
            check.issues,
            vec!["is 284 characters long; twitter allows at most 280".to_owned()]
        );
        assert!(
            RulesVoiceChecker
                .check(&text, Channel::Blog, &guidelines())
                .passed
        );
    }

    /// Scores by one word, to keep the tests about the checker.
    struct WordScorer;
    impl SentimentScorer for WordScorer {
        fn score_millis(&self, text: &str) -> i16 {
            if text.contains("awful") {
                -600
            } else if text.contains("amazing") {
                900
            } else {
                0
            }
        }
        fn info(&self) -> crate::brand::ScorerInfo {
            crate::brand::ScorerInfo {
                name: "word".into(),
                version: "1".into(),
            }
        }
    }

    fn voice(tone: &str) -> VoiceGuidelines {
        VoiceGuidelines {
            tone: tone.into(),
            ..VoiceGuidelines::default()
        }
    }

    #[test]
    fn a_warm_tone_refuses_a_negative_text_and_a_calm_one_a_gushing_text() {
        let checker = BrandVoiceChecker::new(std::sync::Arc::new(WordScorer));
        let warm = checker.check(
            "The queue was awful today",
            Channel::Blog,
            &voice("Warm, plain"),
        );
        assert_eq!(
            warm.issues,
            vec!["reads negative (sentiment -0.60) for a `warm` tone".to_owned()]
        );
        let calm = checker.check("An amazing launch", Channel::Blog, &voice("calm"));
        assert!(!calm.passed);
        assert!(
            checker
                .check("An amazing launch", Channel::Blog, &voice("warm"))
                .passed
        );
        assert!(
            checker
                .check("The queue was awful", Channel::Blog, &voice(""))
                .passed
        );
    }

    #[test]
    fn a_dense_text_fails_the_channels_reading_level() {
        let checker = BrandVoiceChecker::new(std::sync::Arc::new(WordScorer));
        let dense = "Institutional interoperability considerations necessitate comprehensive \
                     organizational reconfiguration, notwithstanding unprecedented \
                     administrative complications affecting multinational distribution \
                     infrastructure, regulatory harmonization initiatives and sustainability.";
        let grade = reading_grade(dense).unwrap();
        assert!(grade > 16.0, "{grade}");
        let check = checker.check(dense, Channel::Twitter, &voice(""));
        assert!(check.issues[0].starts_with("reads at grade"), "{check:?}");
        let plain = "We made new wheels. They grip wet ramps. You can ride in the rain now. \
                     Try them at the park this week and tell us what you think of them.";
        assert!(reading_grade(plain).unwrap() < 6.0);
        assert!(checker.check(plain, Channel::Twitter, &voice("")).passed);
        assert_eq!(reading_grade("Too short to grade."), None);
    }

    #[test]
    fn a_whole_word_is_found_after_a_partial_overlapping_match() {
        assert!(contains_word("xa-a-a", "a-a"));
        assert!(!contains_word("classic", "ass"));
    }
}
