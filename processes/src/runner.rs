//! How a process follows the log: the same [`Subscription`] and checkpoint table as the
//! projections, but its effects happen outside the read store (it issues commands), so it
//! handles a batch first and records its progress after, with the same compare-and-set. A crash
//! between the two makes it handle the batch again; its commands carry ids derived from the
//! events, so the event store answers the repeats with their first receipts.

use std::sync::Arc;
use std::time::Duration;

use plasma_projections::checkpoint::{self, Checkpoint, Saved};
use plasma_projections::{run_steps, ReadStore, Steps, Subscription};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::{Process, ProcessError};

/// Tunables of a process runner.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Events per batch.
    pub batch_size: usize,
    /// Pause when caught up (for subscriptions that do not wait themselves).
    pub idle_wait: Duration,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_wait: Duration::from_millis(50),
        }
    }
}

/// What one [`ProcessRunner::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStep {
    Handled(usize),
    CaughtUp,
    /// Another runner moved the checkpoint; continued from it.
    Resynced,
}

/// One process fed by one subscription.
#[derive(Debug)]
pub struct ProcessRunner<S> {
    read: ReadStore,
    process: Arc<dyn Process>,
    subscription: S,
    checkpoint: Checkpoint,
    options: ProcessOptions,
}

impl<S: Subscription> ProcessRunner<S> {
    /// Resumes `process` from its stored checkpoint.
    pub async fn start(
        read: ReadStore,
        process: Arc<dyn Process>,
        mut subscription: S,
        options: ProcessOptions,
    ) -> Result<Self, ProcessError> {
        let mut tx = read.begin().await?;
        process.prepare(&mut tx).await?;
        checkpoint::ensure(&mut tx, process.name()).await?;
        let stored = checkpoint::load(&mut tx, process.name(), false).await?;
        tx.commit().await?;
        subscription.seek(&stored).await?;
        Ok(Self {
            read,
            process,
            subscription,
            checkpoint: stored,
            options,
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Handles one batch, then records how far it got.
    #[tracing::instrument(skip_all, fields(plasma.process = %self.process.name()))]
    pub async fn step(&mut self) -> Result<ProcessStep, ProcessError> {
        let batch = self
            .subscription
            .next_batch(self.options.batch_size)
            .await?;
        if batch.is_empty() {
            return Ok(ProcessStep::CaughtUp);
        }
        // Commands the process issues run inside this span, so they continue the trace.
        let span = plasma_commands::trace::process_span(self.process.name(), &batch.events);
        let mut tx = async {
            if self.process.keeps_state() {
                let mut tx = self.read.begin().await?;
                self.process.handle_in(&mut tx, &batch.events).await?;
                Ok::<_, ProcessError>(tx)
            } else {
                self.process.handle(&batch.events).await?;
                Ok(self.read.begin().await?)
            }
        }
        .instrument(span)
        .await?;
        let name = self.process.name();
        let stored = checkpoint::load(&mut tx, name, true).await?;
        match checkpoint::record(&mut tx, name, stored, &batch.progress).await? {
            Saved::Moved => {
                drop(tx);
                self.process.abandoned();
                tracing::info!(
                    from = self.checkpoint.position,
                    to = stored.position,
                    "checkpoint moved elsewhere; resuming from it"
                );
                self.checkpoint = stored;
                self.subscription
                    .resync(&self.read, &stored, &batch)
                    .await?;
                Ok(ProcessStep::Resynced)
            }
            Saved::At(position) => {
                tx.commit().await?;
                self.checkpoint = Checkpoint { position };
                self.subscription.committed(&batch).await?;
                Ok(ProcessStep::Handled(batch.events.len()))
            }
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), ProcessError> {
        run_steps(self, shutdown).await
    }

    /// Handles everything available now; returns how many events it saw.
    pub async fn catch_up(&mut self) -> Result<usize, ProcessError> {
        let mut seen = 0;
        loop {
            match self.step().await? {
                ProcessStep::Handled(n) => seen += n,
                ProcessStep::Resynced => {}
                ProcessStep::CaughtUp => return Ok(seen),
            }
        }
    }
}

impl<S: Subscription> Steps for ProcessRunner<S> {
    type Error = ProcessError;

    async fn step_once(&mut self) -> Result<bool, ProcessError> {
        Ok(self.step().await? == ProcessStep::CaughtUp)
    }

    fn idle_wait(&self) -> Option<Duration> {
        (!self.subscription.waits_when_idle()).then_some(self.options.idle_wait)
    }
}
