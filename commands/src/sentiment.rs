//! Sentiment scoring at ingest: VADER's lexicon and rules (the `vader_sentiment` crate, which
//! compiles its lexicon in, so nothing is fetched at run time).

use plasma_domain::brand::{ScorerInfo, SentimentScorer};
use vader_sentiment::SentimentIntensityAnalyzer;

/// VADER compound score, recorded in thousandths.
pub struct VaderScorer {
    analyzer: SentimentIntensityAnalyzer<'static>,
}

impl std::fmt::Debug for VaderScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::VERSION)
    }
}

impl VaderScorer {
    pub const NAME: &'static str = "vader";
    pub const VERSION: &'static str = "vader_sentiment-0.1.1";

    pub fn new() -> Self {
        Self {
            analyzer: SentimentIntensityAnalyzer::new(),
        }
    }
}

impl Default for VaderScorer {
    fn default() -> Self {
        Self::new()
    }
}

impl SentimentScorer for VaderScorer {
    fn score_millis(&self, text: &str) -> i16 {
        let compound = self
            .analyzer
            .polarity_scores(text)
            .get("compound")
            .copied()
            .unwrap_or(0.0);
        // Clamped and rounded: exact thousandths from here on.
        (compound.clamp(-1.0, 1.0) * 1000.0).round() as i16
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
    use super::*;

    #[test]
    fn praise_scores_positive_and_complaints_negative() {
        let scorer = VaderScorer::new();
        assert!(scorer.score_millis("I love these skates, they are great!") > 500);
        assert!(scorer.score_millis("Terrible support, I hate this awful product.") < -500);
        assert_eq!(scorer.score_millis("The store opens at nine."), 0);
    }
}
