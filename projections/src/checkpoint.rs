//! Where each projection stands, stored in the read store in the same transaction as the
//! read-model change it describes, so a crash never applies an event twice or skips one.
//!
//! - `projection_checkpoints`: per projection (and per shadow copy) the position of the last
//!   applied event: what `min_position`, `/ready` and lag metrics use.
//! - `projection_offsets`: for log-fed projections, per partition, the next offset to read, the
//!   highest position applied (relay redeliveries at or below it are dropped) and the safe
//!   position (every event of that partition at or below it is applied). The projection's
//!   position is then the minimum safe position over its partitions.
//!
//! Every write is a compare-and-set against what the writer last saw, so a runner whose
//! checkpoint moved elsewhere (a second runner, a rebalance, a rebuild swap) drops its batch.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::read_store::{on_pool, on_tx};
use crate::{ProjectionError, ReadStore, ReadTx};

pub use plasma_commands::PartitionKey;

/// How far a projection has got: the global position of the last applied event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: i64,
}

/// Where one partition of a log-fed projection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    pub next_offset: i64,
    pub max_position: i64,
    pub safe_position: i64,
}

/// Where a batch leaves its subscription, and what the subscription expected to find stored
/// before it (the compare in compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing to record (an empty batch).
    None,
    /// Fed from the event store: the checkpoint moves from one position to another.
    Position { from: i64, to: i64 },
    /// Fed from the log: each touched partition moves from one state to another.
    Partitions(Vec<KeyedMove>),
}

/// One partition's move in a log-fed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMove {
    pub expected: PartitionState,
    pub new: PartitionState,
}

/// A partition's move, keyed.
pub type KeyedMove = (PartitionKey, PartitionMove);

/// What a compare-and-set found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Recorded; the new position of the projection.
    At(i64),
    /// Another runner moved the stored state: nothing of the batch may commit.
    Moved,
}

pub(crate) const CHECKPOINTS_DDL: &str = "CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       TEXT   PRIMARY KEY,
    position   BIGINT NOT NULL,
    checkpoint TEXT   NOT NULL
)";

pub(crate) const OFFSETS_DDL: &str = "CREATE TABLE IF NOT EXISTS projection_offsets (
    projection    TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    partition_id  INTEGER NOT NULL,
    next_offset   BIGINT  NOT NULL,
    max_position  BIGINT  NOT NULL,
    safe_position BIGINT  NOT NULL,
    PRIMARY KEY (projection, topic, partition_id)
)";

fn bad_checkpoint(name: &str) -> impl FnOnce(serde_json::Error) -> ProjectionError + '_ {
    move |source| ProjectionError::BadCheckpoint {
        projection: name.to_owned(),
        source,
    }
}

/// The stored checkpoint called `name`; with `for_update`, its row stays locked until the
/// transaction ends (the lock every writer of this projection takes first).
pub async fn load(
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
        Some(raw) => serde_json::from_str(&raw).map_err(bad_checkpoint(name)),
    }
}

/// Stores the initial checkpoint unless there is one, so that a runner's `FOR UPDATE` always
/// finds a row to lock. Without it, two runners starting on a fresh PostgreSQL read store both
/// read "no checkpoint", lock nothing, and both apply the first batch.
pub async fn ensure(tx: &mut ReadTx, name: &str) -> Result<(), ProjectionError> {
    let raw = serde_json::to_string(&Checkpoint::default()).map_err(bad_checkpoint(name))?;
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

pub async fn save(
    tx: &mut ReadTx,
    name: &str,
    checkpoint: &Checkpoint,
) -> Result<(), ProjectionError> {
    let raw = serde_json::to_string(checkpoint).map_err(bad_checkpoint(name))?;
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

pub(crate) async fn delete(tx: &mut ReadTx, name: &str) -> Result<(), ProjectionError> {
    tx.execute_bound(
        "DELETE FROM projection_checkpoints WHERE name = $1",
        name,
        "dropping a checkpoint",
    )
    .await
}

/// Records `progress` for the projection whose checkpoint row is `name` (already locked by
/// the caller, first): a compare-and-set against what the batch started from.
pub async fn record(
    tx: &mut ReadTx,
    name: &str,
    stored: Checkpoint,
    progress: &Progress,
) -> Result<Saved, ProjectionError> {
    match progress {
        Progress::None => Ok(Saved::At(stored.position)),
        Progress::Position { from, to } => {
            if stored.position != *from {
                return Ok(Saved::Moved);
            }
            save(tx, name, &Checkpoint { position: *to }).await?;
            Ok(Saved::At(*to))
        }
        Progress::Partitions(moves) => {
            for (key, step) in moves {
                if !swap_partition(tx, name, key, step.expected, step.new).await? {
                    return Ok(Saved::Moved);
                }
            }
            save_model_position(tx, name).await.map(Saved::At)
        }
    }
}

/// Loads (creating when missing, at offset 0) the stored state of `partitions`.
pub async fn load_partitions(
    read: &ReadStore,
    projection: &str,
    partitions: &[PartitionKey],
) -> Result<HashMap<PartitionKey, PartitionState>, ProjectionError> {
    let mut tx = read.begin().await?;
    let mut out = HashMap::new();
    for (topic, partition) in partitions {
        let state = load_partition(&mut tx, projection, topic, *partition).await?;
        out.insert((topic.clone(), *partition), state);
    }
    tx.commit().await?;
    Ok(out)
}

async fn load_partition(
    tx: &mut ReadTx,
    projection: &str,
    topic: &str,
    partition: i32,
) -> Result<PartitionState, ProjectionError> {
    on_tx!(tx, |c| sqlx::query(
        "INSERT INTO projection_offsets \
         (projection, topic, partition_id, next_offset, max_position, safe_position) \
         VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT DO NOTHING"
    )
    .bind(projection)
    .bind(topic)
    .bind(partition)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(ProjectionError::db("creating a partition's offsets"))?);
    let row: (i64, i64, i64) = on_tx!(tx, |c| sqlx::query_as(
        "SELECT next_offset, max_position, safe_position FROM projection_offsets \
         WHERE projection = $1 AND topic = $2 AND partition_id = $3"
    )
    .bind(projection)
    .bind(topic)
    .bind(partition)
    .fetch_one(c)
    .await
    .map_err(ProjectionError::db("loading a partition's offsets"))?);
    Ok(PartitionState {
        next_offset: row.0,
        max_position: row.1,
        safe_position: row.2,
    })
}

/// Sets the projection's position to the minimum safe position over its partitions.
pub async fn save_model_position(
    tx: &mut ReadTx,
    projection: &str,
) -> Result<i64, ProjectionError> {
    let position: Option<i64> = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT MIN(safe_position) FROM projection_offsets WHERE projection = $1"
    )
    .bind(projection)
    .fetch_one(c)
    .await
    .map_err(ProjectionError::db("computing the model position"))?);
    let position = position.unwrap_or(0);
    save(tx, projection, &Checkpoint { position }).await?;
    Ok(position)
}

/// Compare-and-set of one partition's row; false when someone else moved it.
async fn swap_partition(
    tx: &mut ReadTx,
    projection: &str,
    key: &PartitionKey,
    expected: PartitionState,
    new: PartitionState,
) -> Result<bool, ProjectionError> {
    let updated = on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE projection_offsets SET next_offset = $1, max_position = $2, safe_position = $3 \
         WHERE projection = $4 AND topic = $5 AND partition_id = $6 \
         AND next_offset = $7 AND max_position = $8"
    )
    .bind(new.next_offset)
    .bind(new.max_position)
    .bind(new.safe_position)
    .bind(projection)
    .bind(&key.0)
    .bind(key.1)
    .bind(expected.next_offset)
    .bind(expected.max_position)
    .execute(c)
    .await
    .map(|done| done.rows_affected())
    .map_err(ProjectionError::db("saving a partition's offsets"))?
    });
    Ok(updated == 1)
}

/// Every partition's next offset, for a stall check.
pub async fn next_offsets(
    read: &ReadStore,
    projection: &str,
) -> Result<Vec<(PartitionKey, i64)>, ProjectionError> {
    let rows: Vec<(String, i32, i64)> = on_pool!(read, |p| sqlx::query_as(
        "SELECT topic, partition_id, next_offset FROM projection_offsets \
         WHERE projection = $1 ORDER BY 1, 2"
    )
    .bind(projection)
    .fetch_all(p)
    .await
    .map_err(ProjectionError::db("reading partition offsets"))?);
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Locks the live partitions' rows of `projection` (after its checkpoint row): their next
/// offsets and safe positions, for a replay about to take over.
pub async fn lock_partitions(
    tx: &mut ReadTx,
    projection: &str,
) -> Result<HashMap<PartitionKey, PartitionState>, ProjectionError> {
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT topic, partition_id, next_offset, max_position, safe_position \
         FROM projection_offsets WHERE projection = $1{lock}"
    );
    let rows: Vec<(String, i32, i64, i64, i64)> = on_tx!(tx, |c| sqlx::query_as(&sql)
        .bind(projection)
        .fetch_all(c)
        .await
        .map_err(ProjectionError::db("locking the live offsets"))?);
    Ok(rows
        .into_iter()
        .map(|(t, p, next_offset, max_position, safe_position)| {
            (
                (t, p),
                PartitionState {
                    next_offset,
                    max_position,
                    safe_position,
                },
            )
        })
        .collect())
}

/// Overwrites the partitions' rows of `projection` (a replay handing its offsets to the live
/// workers, who notice the rows moved and reload).
pub async fn hand_over_partitions(
    tx: &mut ReadTx,
    projection: &str,
    states: &HashMap<PartitionKey, PartitionState>,
) -> Result<(), ProjectionError> {
    for (key, state) in states {
        on_tx!(tx, |c| sqlx::query(
            "INSERT INTO projection_offsets \
             (projection, topic, partition_id, next_offset, max_position, safe_position) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (projection, topic, partition_id) DO UPDATE SET \
             next_offset = excluded.next_offset, max_position = excluded.max_position, \
             safe_position = excluded.safe_position"
        )
        .bind(projection)
        .bind(&key.0)
        .bind(key.1)
        .bind(state.next_offset)
        .bind(state.max_position)
        .bind(state.safe_position)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db("handing over the offsets"))?);
    }
    Ok(())
}

/// After a rebuild from the store up to `position`: a log-fed projection's workers must treat
/// everything at or below it as applied (they notice the rows moved and reload). Nothing to do
/// for a store-fed one, which has no rows here.
pub(crate) async fn mark_partitions_rebuilt(
    tx: &mut ReadTx,
    projection: &str,
    position: i64,
) -> Result<(), ProjectionError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE projection_offsets SET \
         max_position = CASE WHEN max_position < $1 THEN $1 ELSE max_position END, \
         safe_position = CASE WHEN safe_position < $1 THEN $1 ELSE safe_position END \
         WHERE projection = $2"
    )
    .bind(position)
    .bind(projection)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(ProjectionError::db("marking log offsets as rebuilt"))?);
    Ok(())
}
