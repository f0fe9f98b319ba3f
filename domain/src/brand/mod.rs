//! The brand context: brands a tenant tracks, and the mentions ingested for them.

mod brand;
mod mention;
mod sentiment;

pub use brand::{Brand, BrandCommand, BrandError, BrandEvent, VoiceGuidelines};
pub use mention::{
    IngestMention, Mention, MentionCommand, MentionError, MentionEvent, MentionIngested,
    MentionServices,
};
pub use sentiment::{ScorerInfo, Sentiment, SentimentLabel, SentimentScorer};
