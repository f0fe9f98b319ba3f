//! The content context: drafts written for a brand, from request through generation, voice
//! check and approval to publication.

mod channel;
mod draft;
mod generation;
mod voice;

pub use channel::{Channel, DraftStatus};
pub use draft::{Draft, DraftCommand, DraftError, DraftEvent, DraftServices, GeneratorInfo};
pub use generation::{
    DraftBrief, Generation, GenerationError, GenerationRequest, Sampling, TemplateGenerator,
    TextGenerator, TextSink, Usage,
};
pub use voice::{
    reading_grade, BrandVoiceChecker, CheckerInfo, RulesVoiceChecker, VoiceCheck, VoiceChecker,
};
