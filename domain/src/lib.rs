//! Plasma Engine's pure domain model: aggregates, commands, events and domain errors for the four
//! bounded contexts (brand, content, agent, research).
//!
//! Nothing here does IO, reads a clock or draws randomness: timestamps and ids arrive with the
//! command, and anything external a decision needs (sentiment scoring, voice checking) comes in
//! through a small trait in the aggregate's `Services`.

pub mod agent;
pub mod brand;
pub mod content;
pub mod ids;
pub mod research;
pub mod text;

pub use ids::{AggregateId, IdError, TenantId};

/// Stable identity of an event type, independent of the Rust enum it lives in.
///
/// `name` is what the event store records and what the Avro contract names a record; `version`
/// is the payload's schema version and only ever grows.
pub trait EventName {
    /// Every (name, version) this aggregate's event enum can produce, for catalogs and schema checks.
    const EVENT_NAMES: &'static [(&'static str, u16)];
}
