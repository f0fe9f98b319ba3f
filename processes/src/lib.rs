//! Process managers: long-running workers that follow the event log through a projection
//! `Subscription`, decide, and issue commands whose ids are derived from the events they react
//! to, so that a redelivery or a restart is deduplicated by the event store, never by luck.
//!
//! - [`ProcessRunner`]: handles a batch, then records its progress in the checkpoint table.
//! - [`embedding::EmbeddingWorker`]: embeds chunked documents and records the vectors.
//! - [`extraction::ExtractionWorker`]: records the entities and relations of chunked documents.
//!
//! - [`agent::AgentWorker`]: executes runs of defined workflows durably, with its tools.
//!
//! Each runs in-process under `plasma dev` and as a process of its own in server mode.

// Tests may unwrap (a panic is a failed test).
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod runner;

pub mod agent;
pub mod alerts;
pub mod communities;
pub mod delivery;
pub mod embedding;
pub mod extraction;

use async_trait::async_trait;
use plasma_commands::RecordedEvent;
use plasma_domain::Context;
use plasma_projections::ReadTx;

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

    /// Whether the process keeps state of its own in the read store. If so, the runner calls
    /// [`Process::handle_in`] inside the transaction that records the checkpoint, so the state
    /// never runs ahead of or behind the events it has seen; the commands it issues from there
    /// must still carry derived ids (a crash before the commit handles the batch again).
    fn keeps_state(&self) -> bool {
        false
    }

    /// Creates the process's own tables, if it keeps state.
    async fn prepare(&self, tx: &mut ReadTx) -> Result<(), ProcessError> {
        let _ = tx;
        Ok(())
    }

    /// The batch just handled by [`Process::handle_in`] was rolled back (another runner had
    /// moved the checkpoint): forget anything kept in memory from it.
    fn abandoned(&self) {}

    /// [`Process::handle`] with the checkpoint's transaction, for a process that keeps state.
    async fn handle_in(
        &self,
        tx: &mut ReadTx,
        events: &[RecordedEvent],
    ) -> Result<(), ProcessError> {
        let _ = tx;
        self.handle(events).await
    }
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
