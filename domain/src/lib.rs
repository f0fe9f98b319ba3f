//! Plasma Engine's pure domain model: aggregates, commands, events and domain errors for the four
//! bounded contexts (brand, content, agent, research).
//!
//! Nothing here does IO, reads a clock or draws randomness: timestamps and ids arrive with the
//! command, and anything external a decision needs (sentiment scoring, voice checking) comes in
//! through a small trait in the aggregate's `Services`.

// Tests may unwrap (a panic is a failed test); production code may not, which the workspace
// lint enforces everywhere else.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent;
pub mod brand;
pub mod content;
pub mod context;
pub mod ids;
pub mod research;
pub mod text;

pub use context::Context;
pub use ids::{AggregateId, IdError, TenantId};

/// Stable identity of an event type, independent of the Rust enum it lives in.
///
/// `name` is what the event store records and what the Avro contract names a record; `version`
/// is the payload's schema version and only ever grows.
pub trait EventName {
    /// Every (name, version) this aggregate's event enum can produce, for catalogs and schema checks.
    const EVENT_NAMES: &'static [(&'static str, u16)];
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn event_names_are_unique_across_aggregates_and_pascal_case() {
        let all = [
            brand::BrandEvent::EVENT_NAMES,
            brand::MentionEvent::EVENT_NAMES,
            brand::AlertEvent::EVENT_NAMES,
            brand::DeliveryEvent::EVENT_NAMES,
            content::DraftEvent::EVENT_NAMES,
            agent::AgentRunEvent::EVENT_NAMES,
            agent::WorkflowEvent::EVENT_NAMES,
            research::DocumentEvent::EVENT_NAMES,
        ]
        .concat();
        let mut seen = HashSet::new();
        for (name, version) in all {
            assert!(seen.insert(name), "{name} is declared twice");
            assert!(
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{name} is not PascalCase"
            );
            assert_eq!(version, 1, "{name}");
        }
    }
}
