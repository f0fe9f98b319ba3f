//! The brand context: brands a tenant tracks, and the mentions ingested for them.

// The Brand aggregate lives in `brand/brand.rs` like every aggregate in its own file; the
// module is private, so the repeated name never shows in paths.
#[allow(clippy::module_inception)]
mod brand;
mod mention;
mod sentiment;

pub use brand::{Brand, BrandCommand, BrandError, BrandEvent, BrandInactive, VoiceGuidelines};
pub use mention::{
    IngestMention, Mention, MentionCommand, MentionError, MentionEvent, MentionIngested,
    MentionInput, MentionServices,
};
pub use sentiment::{ScorerInfo, Sentiment, SentimentLabel, SentimentScorer};
