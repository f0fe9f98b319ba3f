//! Sentiment as the domain records it: an exact score in thousandths, its label, and who scored it.

use serde::{Deserialize, Serialize};

/// Scores a text's sentiment. Implementations live outside the domain (a lexicon, a model);
/// the result is recorded in the event so a replay never scores again.
pub trait SentimentScorer: Send + Sync {
    /// Compound polarity in thousandths, -1000 (most negative) ..= 1000 (most positive).
    fn score_millis(&self, text: &str) -> i16;
    /// Which scorer, for the record.
    fn info(&self) -> ScorerInfo;
}

/// The name and version of the scorer that produced a score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScorerInfo {
    pub name: String,
    pub version: String,
}

/// Positive, neutral or negative, by the usual ±0.05 compound-score thresholds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentimentLabel {
    Positive,
    Neutral,
    Negative,
}

impl SentimentLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Neutral => "neutral",
            Self::Negative => "negative",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "positive" => Some(Self::Positive),
            "neutral" => Some(Self::Neutral),
            "negative" => Some(Self::Negative),
            _ => None,
        }
    }
}

/// A recorded sentiment: integer thousandths, so read models sum and compare it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentiment {
    pub score_millis: i16,
    pub label: SentimentLabel,
}

impl Sentiment {
    const THRESHOLD_MILLIS: i16 = 50;

    pub fn from_millis(score_millis: i16) -> Self {
        let score_millis = score_millis.clamp(-1000, 1000);
        let label = if score_millis >= Self::THRESHOLD_MILLIS {
            SentimentLabel::Positive
        } else if score_millis <= -Self::THRESHOLD_MILLIS {
            SentimentLabel::Negative
        } else {
            SentimentLabel::Neutral
        };
        Self {
            score_millis,
            label,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_compound_thresholds() {
        assert_eq!(Sentiment::from_millis(50).label, SentimentLabel::Positive);
        assert_eq!(Sentiment::from_millis(49).label, SentimentLabel::Neutral);
        assert_eq!(Sentiment::from_millis(-49).label, SentimentLabel::Neutral);
        assert_eq!(Sentiment::from_millis(-50).label, SentimentLabel::Negative);
    }

    #[test]
    fn out_of_range_scores_are_clamped() {
        assert_eq!(Sentiment::from_millis(i16::MAX).score_millis, 1000);
        assert_eq!(Sentiment::from_millis(i16::MIN).score_millis, -1000);
    }
}
