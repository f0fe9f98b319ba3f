//! Voice checking: does a draft's text follow its brand's voice guidelines?

use serde::{Deserialize, Serialize};

use super::channel::Channel;
use crate::brand::VoiceGuidelines;

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

    #[test]
    fn a_whole_word_is_found_after_a_partial_overlapping_match() {
        assert!(contains_word("xa-a-a", "a-a"));
        assert!(!contains_word("classic", "ass"));
    }
}
