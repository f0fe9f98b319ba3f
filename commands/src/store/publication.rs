//! What the relay and the log-fed workers need of the event store, in server mode: the relay's
//! leadership, how far it has published, and the last offset it had acknowledged in each
//! partition. The tables are this crate's (`relay_state`, `relay_partitions`); nobody else
//! writes SQL against them.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;
use sqlx::Connection as _;

use super::EventStore;
use crate::StoreError;

/// The advisory lock key relay replicas compete for ("plasma relay"); only one publishes.
const LEADER_LOCK: i64 = 0x706c_6173_6d61_7231;

/// A topic and partition.
pub type PartitionKey = (String, i32);

/// Leadership of the relay: a database session holding the leader lock. Dropping it closes
/// the session, which releases the lock for a standby.
#[derive(Debug)]
pub struct RelayLease {
    session: PgConnection,
}

impl RelayLease {
    /// Fails when the session (and with it the lock) is gone.
    pub async fn ping(&mut self) -> Result<(), StoreError> {
        self.session
            .ping()
            .await
            .map_err(StoreError::db("checking the relay's session"))
    }
}

/// How far the relay has published, as one snapshot: every event at or below `position` is
/// acknowledged by the broker, and `last_offsets` holds, per partition, the highest offset
/// acknowledged when `position` was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publication {
    pub position: i64,
    pub last_offsets: HashMap<PartitionKey, i64>,
}

impl EventStore {
    fn server(&self, what: &str) -> Result<&sqlx::PgPool, StoreError> {
        match self {
            Self::Postgres(store) => Ok(store.pool()),
            Self::Sqlite(_) => Err(StoreError::Config(format!(
                "{what} needs the PostgreSQL event store (server mode)"
            ))),
        }
    }

    /// The PostgreSQL pool, for read models kept in the same database (server mode).
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match self {
            Self::Postgres(store) => Some(store.pool()),
            Self::Sqlite(_) => None,
        }
    }

    /// Whether this store can feed the log (server mode).
    pub fn is_server(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Takes the relay's leader lock if no other relay holds it.
    pub async fn try_lead_relay(&self) -> Result<Option<RelayLease>, StoreError> {
        let pool = self.server("the relay")?;
        let mut session = pool
            .acquire()
            .await
            .map_err(StoreError::db("opening the relay's session"))?
            .detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut session)
            .await
            .map_err(StoreError::db("taking the relay lock"))?;
        Ok(locked.then_some(RelayLease { session }))
    }

    /// Every event at or below this position has been published.
    pub async fn published_position(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT published_position FROM relay_state WHERE id = 1")
            .fetch_one(self.server("the published position")?)
            .await
            .map_err(StoreError::db("reading the published position"))
    }

    /// The relay's publication (one snapshot); `None` on a store that feeds no log.
    pub async fn publication(&self) -> Result<Option<Publication>, StoreError> {
        let Self::Postgres(store) = self else {
            return Ok(None);
        };
        let mut tx = store
            .pool()
            .begin()
            .await
            .map_err(StoreError::db("reading the publication"))?;
        let position: i64 =
            sqlx::query_scalar("SELECT published_position FROM relay_state WHERE id = 1")
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("reading the published position"))?;
        let rows: Vec<(String, i32, i64)> =
            sqlx::query_as("SELECT topic, partition_id, last_offset FROM relay_partitions")
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::db("reading the relay's partition offsets"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("reading the publication"))?;
        Ok(Some(Publication {
            position,
            last_offsets: rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
        }))
    }

    /// Records that every event up to `position` is acknowledged, and the highest offset each
    /// partition acknowledged, in one transaction. Positions and offsets only grow.
    pub async fn record_publication(
        &self,
        position: i64,
        last_offsets: &[(&str, i32, i64)],
    ) -> Result<(), StoreError> {
        let mut tx = self
            .server("recording a publication")?
            .begin()
            .await
            .map_err(StoreError::db("recording a publication"))?;
        sqlx::query(
            "UPDATE relay_state SET published_position = $1, updated_at = now() \
             WHERE id = 1 AND published_position < $1",
        )
        .bind(position)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("recording the published position"))?;
        for (topic, partition, offset) in last_offsets {
            sqlx::query(
                "INSERT INTO relay_partitions (topic, partition_id, last_offset) VALUES ($1, $2, $3) \
                 ON CONFLICT (topic, partition_id) DO UPDATE \
                 SET last_offset = GREATEST(relay_partitions.last_offset, excluded.last_offset)",
            )
            .bind(topic)
            .bind(partition)
            .bind(offset)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("recording partition offsets"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("recording a publication"))
    }
}
