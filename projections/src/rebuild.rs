//! Rebuilding a read model into shadow tables, then swapping it in, from either source: the
//! event store from position 0, or (server mode) the read model's topics from offset 0 through
//! the [`LogReplay`] port the log crate implements. [`Rebuilder`] is the one place that chooses.
//!
//! Queries keep reading the live tables the whole time. The swap is one read-store transaction
//! that locks the live checkpoint (so a live runner cannot commit a batch meanwhile), applies
//! whatever arrived since the shadow caught up, then drops the live tables and renames the
//! shadow ones in their place. A live runner then finds its checkpoint moved and resumes from it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use plasma_commands::EventStore;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint};
use crate::projection::create_tables;
use crate::runner::Step;
use crate::{
    projection_named, Projection, ProjectionError, ProjectionRunner, ReadStore, ReadTx,
    RunnerOptions, StoreSubscription, Tables,
};

/// How far a rebuild has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Events applied into the shadow tables so far.
    pub applied: u64,
    /// Position reached (store) or records read (log).
    pub position: i64,
    /// The store's head (store) or the records the topics held (log) when the rebuild started.
    pub target: i64,
}

/// Where a rebuild reads from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildSource {
    /// The event store, from position 0.
    Store,
    /// The read model's topics, from offset 0 (server mode).
    Log,
}

/// Reports a rebuild's progress as it goes.
pub type OnProgress<'a> = &'a mut (dyn FnMut(RebuildProgress) + Send);

/// Replays a read model from the log into shadow tables and swaps it in: the port the log
/// crate implements, so this crate knows no Kafka.
#[async_trait]
pub trait LogReplay: Send + Sync + fmt::Debug {
    async fn replay(
        &self,
        read: &ReadStore,
        projection: Arc<dyn Projection>,
        on_progress: OnProgress<'_>,
    ) -> Result<RebuildProgress, ProjectionError>;
}

/// Runs rebuilds from whichever source is asked for.
#[derive(Debug, Clone)]
pub struct Rebuilder {
    read: ReadStore,
    store: EventStore,
    log: Option<Arc<dyn LogReplay>>,
    options: RunnerOptions,
}

impl Rebuilder {
    /// Rebuilds from the store only; [`Rebuilder::with_log`] adds the log.
    pub fn new(read: ReadStore, store: EventStore) -> Self {
        Self {
            read,
            store,
            log: None,
            options: RunnerOptions::default(),
        }
    }

    pub fn with_log(mut self, log: Arc<dyn LogReplay>) -> Self {
        self.log = Some(log);
        self
    }

    /// Whether `source` can be rebuilt from here.
    pub fn supports(&self, source: RebuildSource) -> bool {
        match source {
            RebuildSource::Store => true,
            RebuildSource::Log => self.log.is_some(),
        }
    }

    /// Rebuilds the read model called `read_model` from `source` and swaps it in.
    pub async fn rebuild(
        &self,
        read_model: &str,
        source: RebuildSource,
        on_progress: OnProgress<'_>,
    ) -> Result<RebuildProgress, ProjectionError> {
        let projection = projection_named(read_model)?;
        match (source, &self.log) {
            (RebuildSource::Store, _) => {
                rebuild(
                    &self.read,
                    &self.store,
                    projection,
                    self.options.clone(),
                    on_progress,
                )
                .await
            }
            (RebuildSource::Log, Some(log)) => {
                log.replay(&self.read, projection, on_progress).await
            }
            (RebuildSource::Log, None) => Err(ProjectionError::Config(
                "rebuilding from the log needs the log configured (PLASMA_KAFKA_BROKERS, \
                 PLASMA_SCHEMA_REGISTRY_URL)"
                    .into(),
            )),
        }
    }
}

/// Rebuilds `projection` from the event store and swaps it in; returns the final progress.
pub async fn rebuild(
    read: &ReadStore,
    store: &EventStore,
    projection: Arc<dyn Projection>,
    options: RunnerOptions,
    mut on_progress: impl FnMut(RebuildProgress) + Send,
) -> Result<RebuildProgress, ProjectionError> {
    let target = store.head().await?;
    let shadow_checkpoint = Tables::SHADOW.checkpoint_name(projection.name());

    // A previous, interrupted rebuild may have left shadow tables: start clean.
    let generation = drop_shadow(read, projection.as_ref()).await?;
    let mut tx = read.begin().await?;
    checkpoint::save(&mut tx, &shadow_checkpoint, &Checkpoint::default()).await?;
    tx.commit().await?;

    let batch_size = options.batch_size;
    let mut runner = ProjectionRunner::start_on(
        read.clone(),
        projection.clone(),
        StoreSubscription::new(store.clone()),
        options,
        Tables::SHADOW,
        &generation,
    )
    .await?;
    let mut progress = RebuildProgress {
        applied: 0,
        position: 0,
        target,
    };
    loop {
        match runner.step().await? {
            Step::Applied(n) => {
                progress.applied += n as u64;
                progress.position = runner.checkpoint().position;
                on_progress(progress);
            }
            Step::Resynced => {}
            Step::CaughtUp => break,
        }
    }

    // Fresh statistics before the swap, so queries plan well from their first read.
    runner.analyze().await?;
    let mut tx = read.begin().await?;
    let _locked = checkpoint::load(&mut tx, projection.name(), true).await?;
    let mut position = runner.checkpoint().position;
    loop {
        let events = store.read_all(position, batch_size as i64).await?;
        let Some(last) = events.last() else { break };
        position = last.position;
        projection.apply(&mut tx, &Tables::SHADOW, &events).await?;
        progress.applied += events.len() as u64;
    }
    swap_in_shadow(&mut tx, projection.as_ref()).await?;
    checkpoint::save(&mut tx, projection.name(), &Checkpoint { position }).await?;
    checkpoint::mark_partitions_rebuilt(&mut tx, projection.name(), position).await?;
    checkpoint::delete(&mut tx, &shadow_checkpoint).await?;
    tx.commit().await?;
    progress.position = position;
    on_progress(progress);
    tracing::info!(
        projection = projection.name(),
        position,
        applied = progress.applied,
        "read model rebuilt and swapped in"
    );
    Ok(progress)
}

/// Drops any shadow tables a previous rebuild left, and creates empty ones; returns their
/// generation tag (index names stay unique across rebuilds).
pub async fn drop_shadow(
    read: &ReadStore,
    projection: &dyn Projection,
) -> Result<String, ProjectionError> {
    let generation = format!("g{}", chrono::Utc::now().timestamp_micros());
    let mut tx = read.begin().await?;
    for table in projection.tables() {
        let sql = format!("DROP TABLE IF EXISTS {}", Tables::SHADOW.name(table));
        tx.execute(&sql, "dropping stale shadow tables").await?;
    }
    create_tables(&mut tx, projection, &Tables::SHADOW, &generation).await?;
    tx.commit().await?;
    Ok(generation)
}

/// Replaces the live tables by the shadow ones, inside the swap's transaction.
pub async fn swap_in_shadow(
    tx: &mut ReadTx,
    projection: &dyn Projection,
) -> Result<(), ProjectionError> {
    for table in projection.tables() {
        let live = Tables::LIVE.name(table);
        let shadow = Tables::SHADOW.name(table);
        if let Some(columns) = tx.virtual_table_columns(&shadow).await? {
            // A SQLite virtual table (sqlite-vec's vec0) keeps shadow tables of its own named
            // after it, which a rename leaves behind: copy the rows into the live table instead.
            let columns = columns.join(", ");
            tx.execute(
                &format!("DELETE FROM {live}"),
                "emptying a live virtual table",
            )
            .await?;
            tx.execute(
                &format!("INSERT INTO {live} ({columns}) SELECT {columns} FROM {shadow}"),
                "copying a rebuilt virtual table",
            )
            .await?;
            tx.execute(
                &format!("DROP TABLE {shadow}"),
                "dropping a rebuilt virtual table",
            )
            .await?;
            continue;
        }
        tx.execute(
            &format!("DROP TABLE IF EXISTS {live}"),
            "dropping the old read model",
        )
        .await?;
        tx.execute(
            &format!("ALTER TABLE {shadow} RENAME TO {live}"),
            "swapping in the rebuilt read model",
        )
        .await?;
    }
    Ok(())
}
