//! The projection runtime: batch → apply → record progress, all in one read-store transaction,
//! for any [`Subscription`]. While one batch commits on its own task, the next is read (and for
//! a log, decoded); if the commit finds the stored state moved, both are dropped and the
//! subscription resyncs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument as _;

use crate::checkpoint::{self, Checkpoint, Saved};
use crate::metrics::{PROJECTION_APPLIED_EVENTS_TOTAL, PROJECTION_POSITION};
use crate::projection::create_tables;
use crate::subscription::Batch;
use crate::{Projection, ProjectionError, ReadStore, Subscription, Tables};

/// Tunables of a projection runner.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Events per transaction.
    pub batch_size: usize,
    /// Pause when caught up before asking for more (for subscriptions that do not wait).
    pub idle_wait: Duration,
    /// Refresh the tables' planner statistics after this many applied events (PostgreSQL).
    pub analyze_every: usize,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            idle_wait: Duration::from_millis(20),
            analyze_every: 50_000,
        }
    }
}

/// One projection fed by one subscription, into one copy of its tables.
#[derive(Debug)]
pub struct ProjectionRunner<S> {
    read: ReadStore,
    projection: Arc<dyn Projection>,
    subscription: S,
    tables: Tables,
    checkpoint_name: String,
    checkpoint: Checkpoint,
    options: RunnerOptions,
    /// A batch read while the previous one was committing.
    pending: Option<Batch>,
    /// Events applied since the tables' statistics were last refreshed.
    since_analyze: usize,
}

impl<S: Subscription> ProjectionRunner<S> {
    /// Prepares the live copy of `projection`: creates its tables if missing and resumes the
    /// subscription from the stored checkpoint.
    pub async fn start(
        read: ReadStore,
        projection: Arc<dyn Projection>,
        subscription: S,
        options: RunnerOptions,
    ) -> Result<Self, ProjectionError> {
        Self::start_on(read, projection, subscription, options, Tables::LIVE, "g0").await
    }

    pub(crate) async fn start_on(
        read: ReadStore,
        projection: Arc<dyn Projection>,
        mut subscription: S,
        options: RunnerOptions,
        tables: Tables,
        generation: &str,
    ) -> Result<Self, ProjectionError> {
        let checkpoint_name = tables.checkpoint_name(projection.name());
        let mut tx = read.begin().await?;
        create_tables(&mut tx, projection.as_ref(), &tables, generation).await?;
        checkpoint::ensure(&mut tx, &checkpoint_name).await?;
        let stored = checkpoint::load(&mut tx, &checkpoint_name, false).await?;
        tx.commit().await?;
        subscription.seek(&stored).await?;
        Ok(Self {
            read,
            projection,
            subscription,
            tables,
            checkpoint_name,
            checkpoint: stored,
            options,
            pending: None,
            since_analyze: 0,
        })
    }

    /// Refreshes the statistics of this copy's tables.
    pub(crate) async fn analyze(&self) -> Result<(), ProjectionError> {
        let tables: Vec<String> = self
            .projection
            .tables()
            .iter()
            .map(|t| self.tables.name(t))
            .collect();
        self.read.analyze(&tables).await
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub fn subscription(&self) -> &S {
        &self.subscription
    }

    /// Applies one batch, reading the next one meanwhile.
    #[tracing::instrument(skip_all, fields(plasma.projection = %self.checkpoint_name))]
    pub async fn step(&mut self) -> Result<Step, ProjectionError> {
        let batch = match self.pending.take() {
            Some(batch) => batch,
            None => {
                self.subscription
                    .next_batch(self.options.batch_size)
                    .await?
            }
        };
        if batch.is_empty() {
            return Ok(Step::CaughtUp);
        }
        let started = Instant::now();
        let span = plasma_commands::trace::process_span(&self.checkpoint_name, &batch.events);
        let committing = tokio::spawn(
            commit(
                self.read.clone(),
                self.projection.clone(),
                self.tables.clone(),
                self.checkpoint_name.clone(),
                batch,
            )
            .instrument(span),
        );
        let next = self.subscription.next_batch(self.options.batch_size).await;
        let read_ahead_in = started.elapsed();
        let (saved, batch) = committing.await.map_err(|e| {
            ProjectionError::Worker(format!("the task applying a batch failed: {e}"))
        })?;
        tracing::debug!(
            events = batch.events.len(),
            commit_ms = started.elapsed().as_millis() as u64,
            read_ahead_ms = read_ahead_in.as_millis() as u64,
            "batch"
        );
        match saved? {
            (Saved::Moved, stored) => {
                tracing::info!(
                    from = self.checkpoint.position,
                    to = stored.position,
                    "stored state moved elsewhere; resuming from it"
                );
                self.checkpoint = stored;
                self.subscription
                    .resync(&self.read, &stored, &batch)
                    .await?;
                Ok(Step::Resynced)
            }
            (Saved::At(position), _) => {
                self.checkpoint = Checkpoint { position };
                self.subscription.committed(&batch).await?;
                let name = self.projection.name();
                metrics::counter!(PROJECTION_APPLIED_EVENTS_TOTAL, "projection" => name)
                    .increment(batch.events.len() as u64);
                if self.tables == Tables::LIVE {
                    metrics::gauge!(PROJECTION_POSITION, "projection" => name).set(position as f64);
                }
                self.since_analyze += batch.events.len();
                if self.since_analyze >= self.options.analyze_every {
                    self.since_analyze = 0;
                    self.analyze().await?;
                }
                let next = next?;
                if !next.is_empty() {
                    self.pending = Some(next);
                }
                Ok(Step::Applied(batch.events.len()))
            }
        }
    }

    /// Runs until `shutdown` turns true, pausing briefly whenever caught up.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        run_steps(self, shutdown).await
    }
}

impl<S: Subscription> Steps for ProjectionRunner<S> {
    type Error = ProjectionError;

    async fn step_once(&mut self) -> Result<bool, ProjectionError> {
        Ok(self.step().await? == Step::CaughtUp)
    }

    fn idle_wait(&self) -> Option<Duration> {
        (!self.subscription.waits_when_idle()).then_some(self.options.idle_wait)
    }
}

/// Something that runs in steps: a projection runner, a process runner.
pub trait Steps {
    type Error;
    /// One step; `Ok(true)` when it found nothing to do.
    fn step_once(&mut self) -> impl Future<Output = Result<bool, Self::Error>>;
    /// How long to wait after a step that found nothing, unless the source waits by itself.
    fn idle_wait(&self) -> Option<Duration>;
}

/// Takes step after step until `shutdown` turns true, waiting `idle_wait` after a step that
/// found nothing to do. A step in progress is dropped at shutdown: projection and process
/// runners both commit a step's effect and its checkpoint together or not at all.
pub async fn run_steps<R: Steps>(
    mut runner: R,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), R::Error> {
    let idle = runner.idle_wait();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let caught_up = tokio::select! {
            caught_up = runner.step_once() => caught_up?,
            _ = shutdown.changed() => continue,
        };
        if let (true, Some(idle)) = (caught_up, idle) {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Applies `batch` and records its progress in one transaction. Lock order, shared with
/// rebuilds and replays: the checkpoint row first, then any partition rows.
async fn commit(
    read: ReadStore,
    projection: Arc<dyn Projection>,
    tables: Tables,
    checkpoint_name: String,
    batch: Batch,
) -> (Result<(Saved, Checkpoint), ProjectionError>, Batch) {
    let outcome = async {
        let mut tx = read.begin().await?;
        let stored = checkpoint::load(&mut tx, &checkpoint_name, true).await?;
        if let crate::checkpoint::Progress::Position { from, .. } = batch.progress {
            if stored.position != from {
                return Ok((Saved::Moved, stored));
            }
        }
        // Only inside a traced batch: untraced events start no traces of their own.
        let apply = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "apply",
                otel.name = format!("apply {}", projection.name()),
                plasma.events = batch.events.len(),
            )
        };
        projection
            .apply(&mut tx, &tables, &batch.events)
            .instrument(apply)
            .await?;
        let saved = checkpoint::record(&mut tx, &checkpoint_name, stored, &batch.progress).await?;
        if saved == Saved::Moved {
            return Ok((Saved::Moved, stored));
        }
        tx.commit().await?;
        Ok((saved, stored))
    }
    .await;
    (outcome, batch)
}

/// Creates every projection's live tables and checkpoint row where missing: what
/// `plasma migrate` runs before a release's processes start, so no query ever meets a missing
/// table. Idempotent, and additive only (tables and indexes are created, never altered).
pub async fn create_read_models(
    read: &ReadStore,
    projections: &[Arc<dyn Projection>],
) -> Result<(), ProjectionError> {
    for projection in projections {
        let mut tx = read.begin().await?;
        create_tables(&mut tx, projection.as_ref(), &Tables::LIVE, "g0").await?;
        checkpoint::ensure(&mut tx, &Tables::LIVE.checkpoint_name(projection.name())).await?;
        tx.commit().await?;
    }
    crate::models::communities::create_tables(read).await
}

/// What one [`ProjectionRunner::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Applied(usize),
    /// Nothing new to apply.
    CaughtUp,
    /// The stored state had moved (another runner, a rebalance, a rebuild swap); resumed from it.
    Resynced,
}

/// Applies everything available now; returns the number of events applied.
pub async fn catch_up<S: Subscription>(
    runner: &mut ProjectionRunner<S>,
) -> Result<u64, ProjectionError> {
    let mut applied = 0u64;
    loop {
        match runner.step().await? {
            Step::Applied(n) => applied += n as u64,
            Step::Resynced => {}
            Step::CaughtUp => return Ok(applied),
        }
    }
}
