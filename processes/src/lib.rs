//! Process managers: long-running workers that follow the event log through a projection
//! `Subscription`, decide, and issue commands whose ids are derived from the events they react
//! to, so that a redelivery or a restart is deduplicated by the event store, never by luck.
//!
//! - [`ProcessRunner`]: handles a batch, then records its progress in the checkpoint table.
//! - [`embedding::EmbeddingWorker`]: embeds chunked documents and records the vectors.
//!
//! The agent runtime, the scheduler and the alerter land here too, each in its own module; run
//! in-process by `plasma dev` and as processes of their own in server mode.

mod runner;

pub mod embedding;

use async_trait::async_trait;
use plasma_commands::RecordedEvent;
use plasma_domain::Context;

pub use runner::{ProcessOptions, ProcessRunner, ProcessStep};

/// A worker that reacts to events.
#[async_trait]
pub trait Process: Send + Sync + std::fmt::Debug {
    /// Its checkpoint's name (and, in server mode, its consumer group's).
    fn name(&self) -> &str;

    /// The bounded contexts whose events it reads.
    fn contexts(&self) -> &'static [Context];

    /// Reacts to `events` (in position order; most may be of no interest). Must be safe to run
    /// again on the same events: commands carry ids derived from them.
    async fn handle(&self, events: &[RecordedEvent]) -> Result<(), ProcessError>;
}

/// Why a process stopped; its supervisor starts it again.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Projection(#[from] plasma_projections::ProjectionError),
    #[error("reading the event store")]
    Store(#[from] plasma_commands::StoreError),
    #[error("a command the process issued was refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Embed(#[from] plasma_domain::research::EmbedError),
    #[error("a blocking task failed: {0}")]
    Task(String),
}
