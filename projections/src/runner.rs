//! Runs a projection: batch → apply → checkpoint, all in one read-store transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::projection::create_tables;
use crate::read_store::on_tx;
use crate::{Checkpoint, Projection, ProjectionError, ReadStore, ReadTx, Subscription, Tables};

/// Tunables of a projection runner.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Events per transaction.
    pub batch_size: usize,
    /// Pause when caught up before asking for more.
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
        ensure_checkpoint(&mut tx, &checkpoint_name).await?;
        let checkpoint = load_checkpoint(&mut tx, &checkpoint_name, false).await?;
        tx.commit().await?;
        subscription.seek(&checkpoint).await?;
        Ok(Self {
            read,
            projection,
            subscription,
            tables,
            checkpoint_name,
            checkpoint,
            options,
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

    /// Applies one batch.
    #[tracing::instrument(skip_all, fields(plasma.projection = %self.checkpoint_name))]
    pub async fn step(&mut self) -> Result<Step, ProjectionError> {
        let batch = self
            .subscription
            .next_batch(self.options.batch_size)
            .await?;
        if batch.events.is_empty() {
            return Ok(Step::CaughtUp);
        }
        let mut tx = self.read.begin().await?;
        // Compare-and-set on the checkpoint: if another runner (or a rebuild swap) moved it since
        // we read it, our batch is stale. Drop it and continue from the stored checkpoint.
        let stored = load_checkpoint(&mut tx, &self.checkpoint_name, true).await?;
        if stored != self.checkpoint {
            drop(tx);
            tracing::info!(
                from = self.checkpoint.position,
                to = stored.position,
                "checkpoint moved elsewhere; resuming from it"
            );
            self.subscription.seek(&stored).await?;
            self.checkpoint = stored;
            return Ok(Step::Resynced);
        }
        self.projection
            .apply(&mut tx, &self.tables, &batch.events)
            .await?;
        save_checkpoint(&mut tx, &self.checkpoint_name, &batch.checkpoint).await?;
        tx.commit().await?;
        self.checkpoint = batch.checkpoint;
        self.since_analyze += batch.events.len();
        if self.since_analyze >= self.options.analyze_every {
            self.since_analyze = 0;
            self.analyze().await?;
        }
        Ok(Step::Applied(batch.events.len()))
    }

    /// Runs until `shutdown` turns true, pausing briefly whenever caught up.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if self.step().await? == Step::CaughtUp {
                tokio::select! {
                    _ = tokio::time::sleep(self.options.idle_wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// What one [`ProjectionRunner::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Applied(usize),
    /// Nothing new to apply.
    CaughtUp,
    /// The stored checkpoint had moved (another runner, a rebuild swap); resumed from it.
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

pub(crate) async fn load_checkpoint(
    tx: &mut ReadTx,
    name: &str,
    for_update: bool,
) -> Result<Checkpoint, ProjectionError> {
    // SQLite transactions here are IMMEDIATE and already exclusive; PostgreSQL needs the row lock.
    let lock = if for_update && tx.is_postgres() {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT checkpoint FROM projection_checkpoints WHERE name = $1{lock}");
    let raw: Option<String> = on_tx!(tx, |c| sqlx::query_scalar(&sql)
        .bind(name)
        .fetch_optional(c)
        .await
        .map_err(ProjectionError::db("loading a checkpoint"))?);
    match raw {
        None => Ok(Checkpoint::default()),
        Some(raw) => serde_json::from_str(&raw).map_err(|source| ProjectionError::BadCheckpoint {
            projection: name.to_owned(),
            source,
        }),
    }
}

/// Stores the initial checkpoint unless there is one, so that [`ProjectionRunner::step`]'s
/// `FOR UPDATE` always finds a row to lock. Without it, two runners starting on a fresh
/// PostgreSQL read store both read "no checkpoint", lock nothing, and both apply the first batch.
async fn ensure_checkpoint(tx: &mut ReadTx, name: &str) -> Result<(), ProjectionError> {
    let raw = serde_json::to_string(&Checkpoint::default()).map_err(|source| {
        ProjectionError::BadCheckpoint {
            projection: name.to_owned(),
            source,
        }
    })?;
    on_tx!(tx, |c| sqlx::query(
        "INSERT INTO projection_checkpoints (name, position, checkpoint) VALUES ($1, 0, $2) \
         ON CONFLICT (name) DO NOTHING"
    )
    .bind(name)
    .bind(raw)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(ProjectionError::db("creating a checkpoint"))?);
    Ok(())
}

pub(crate) async fn save_checkpoint(
    tx: &mut ReadTx,
    name: &str,
    checkpoint: &Checkpoint,
) -> Result<(), ProjectionError> {
    let raw =
        serde_json::to_string(checkpoint).map_err(|source| ProjectionError::BadCheckpoint {
            projection: name.to_owned(),
            source,
        })?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO projection_checkpoints (name, position, checkpoint) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, checkpoint = excluded.checkpoint"
    )
    .bind(name)
    .bind(checkpoint.position)
    .bind(raw)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(ProjectionError::db("saving a checkpoint"))?
    });
    Ok(())
}
