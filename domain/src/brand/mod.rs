//! The brand context: brands a tenant tracks, the mentions ingested for them, and the alerts
//! their detectors raise and deliver.

mod alert;
// The Brand aggregate lives in `brand/brand.rs` like every aggregate in its own file; the
// module is private, so the repeated name never shows in paths.
#[allow(clippy::module_inception)]
mod brand;
mod delivery;
pub mod detection;
mod mention;
mod notify;
mod rules;
mod sentiment;
pub mod terms;

pub use alert::{
    Alert, AlertCommand, AlertError, AlertEvent, AlertEvidence, AlertRaised, AlertStatus, Count,
    RaiseAlert,
};
pub use brand::{Brand, BrandCommand, BrandError, BrandEvent, BrandInactive, VoiceGuidelines};
pub use delivery::{
    Delivery, DeliveryAttempt, DeliveryCommand, DeliveryError, DeliveryEvent, DeliveryStatus,
    ScheduleDelivery,
};
pub use mention::{
    IngestMention, Mention, MentionCommand, MentionError, MentionEvent, MentionIngested,
    MentionInput, MentionServices,
};
pub use notify::{ChannelSecrets, WebhookOutcome, WebhookRequest, WebhookSender};
pub use rules::{
    AlertKind, AlertRules, ChannelFormat, DetectionMethod, RulesError, WebhookChannel,
};
pub use sentiment::{ScorerInfo, Sentiment, SentimentLabel, SentimentScorer};
