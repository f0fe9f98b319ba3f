//! Rebuilding a read model from position 0 into shadow tables, then swapping it in.
//!
//! Queries keep reading the live tables the whole time. The swap is one read-store transaction
//! that locks the live checkpoint (so a live runner cannot commit a batch meanwhile), applies
//! whatever arrived since the shadow caught up, then drops the live tables and renames the
//! shadow ones in their place. A live runner then finds its checkpoint moved and resumes from it.

use std::sync::Arc;

use plasma_commands::EventStore;

use crate::read_store::on_tx;
use crate::runner::{load_checkpoint, save_checkpoint, Step};
use crate::{
    Checkpoint, Projection, ProjectionError, ProjectionRunner, ReadStore, RunnerOptions,
    StoreSubscription, Tables,
};

/// How far a rebuild has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Events applied into the shadow tables so far.
    pub applied: u64,
    /// Position reached.
    pub position: i64,
    /// The store's head when the rebuild started.
    pub target: i64,
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
    let generation = format!("g{}", chrono::Utc::now().timestamp_micros());
    let shadow_checkpoint = Tables::SHADOW.checkpoint_name(projection.name());

    // A previous, interrupted rebuild may have left shadow tables: start clean.
    let mut tx = read.begin().await?;
    for table in projection.tables() {
        let sql = format!("DROP TABLE IF EXISTS {}", Tables::SHADOW.name(table));
        tx.execute(&sql, "dropping stale shadow tables").await?;
    }
    save_checkpoint(&mut tx, &shadow_checkpoint, &Checkpoint::default()).await?;
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
    let _locked = load_checkpoint(&mut tx, projection.name(), true).await?;
    let mut position = runner.checkpoint().position;
    loop {
        let events = store.read_all(position, batch_size as i64).await?;
        let Some(last) = events.last() else { break };
        position = last.position;
        projection.apply(&mut tx, &Tables::SHADOW, &events).await?;
        progress.applied += events.len() as u64;
    }
    swap_in_shadow(&mut tx, projection.as_ref()).await?;
    let checkpoint = Checkpoint {
        position,
        ..Checkpoint::default()
    };
    save_checkpoint(&mut tx, projection.name(), &checkpoint).await?;
    // A log-fed read model (server mode) continues from its partition offsets: everything at or
    // below `position` is now in the tables, so its workers must treat it as applied. (They
    // notice the rows moved and reload.) Nothing to do for a store-fed one.
    on_tx!(&mut tx, |c| sqlx::query(
        "UPDATE projection_offsets SET \
         max_position = CASE WHEN max_position < $1 THEN $1 ELSE max_position END, \
         safe_position = CASE WHEN safe_position < $1 THEN $1 ELSE safe_position END \
         WHERE projection = $2"
    )
    .bind(position)
    .bind(projection.name())
    .execute(c)
    .await
    .map(|_| ())
    .map_err(ProjectionError::db("marking log offsets as rebuilt"))?);
    tx.execute_bound(
        "DELETE FROM projection_checkpoints WHERE name = $1",
        &shadow_checkpoint,
        "dropping the shadow checkpoint",
    )
    .await?;
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

/// Replaces the live tables by the shadow ones, inside the swap's transaction.
pub(crate) async fn swap_in_shadow(
    tx: &mut crate::ReadTx,
    projection: &dyn Projection,
) -> Result<(), ProjectionError> {
    for table in projection.tables() {
        let live = Tables::LIVE.name(table);
        let shadow = Tables::SHADOW.name(table);
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
