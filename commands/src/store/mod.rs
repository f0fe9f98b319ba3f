//! The event store, on SQLite (embedded) or PostgreSQL (server). Both backends keep the same
//! contract: appends are all-or-nothing per command, positions are gap-free in commit order, and
//! a command id is recorded with its receipt in the same transaction as its events.

mod postgres;
mod publication;
mod sqlite;

use std::collections::HashSet;
use std::path::PathBuf;

use plasma_domain::ids::CommandId;
use plasma_domain::TenantId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

pub use self::postgres::PostgresStore;
pub use self::publication::{PartitionKey, Publication, RelayLease};
pub use self::sqlite::SqliteStore;
use crate::event::{AppendBatch, AppendedRange, RecordedEvent};
use crate::StoreError;

/// Where the event store lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// One SQLite file (WAL mode); created if missing.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database; the URL may carry credentials, so it is never logged.
    Postgres { url: String, max_connections: u32 },
}

/// A stream's recorded events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct LoadedStream {
    pub events: Vec<RecordedEvent>,
}

impl LoadedStream {
    /// The stream's version: the sequence of its last event, 0 when it has none.
    pub fn version(&self) -> i64 {
        self.events.last().map_or(0, |e| e.sequence)
    }

    pub fn last_position(&self) -> Option<i64> {
        self.events.last().map(|e| e.position)
    }
}

/// Reads events with the same SQL on either backend: `$filter` follows the shared SELECT,
/// `$bind`s are bound in order.
macro_rules! read_events {
    ($store:expr, $context:literal, $filter:literal $(, $bind:expr)*) => {
        match $store {
            EventStore::Sqlite(store) => {
                let sql = format!("{} {}", sqlite::SELECT_EVENTS, $filter);
                let rows = sqlx::query(&sql)
                    $(.bind($bind))*
                    .fetch_all(store.reader())
                    .await
                    .map_err(StoreError::db($context))?;
                rows.iter().map(decode_event).collect()
            }
            EventStore::Postgres(store) => {
                let sql = format!("{} {}", postgres::SELECT_EVENTS, $filter);
                let rows = sqlx::query(&sql)
                    $(.bind($bind))*
                    .fetch_all(store.pool())
                    .await
                    .map_err(StoreError::db($context))?;
                rows.iter().map(decode_event).collect()
            }
        }
    };
}

/// The event store. A cheap handle: clone it freely.
#[derive(Debug, Clone)]
pub enum EventStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl EventStore {
    /// Connects and applies pending migrations.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Ok(match config {
            StoreConfig::Sqlite { path } => Self::Sqlite(SqliteStore::open(path).await?),
            StoreConfig::Postgres {
                url,
                max_connections,
            } => Self::Postgres(PostgresStore::open(url, *max_connections).await?),
        })
    }

    /// Appends every stream of `batch` in one transaction and records the command's receipt,
    /// built from the positions handed out. Fails with [`StoreError::Conflict`] when a stream
    /// moved past its expected version, and [`StoreError::DuplicateCommand`] when the command id
    /// is already recorded; in both cases nothing is written. `receipt` may be called more than
    /// once with the same range (PostgreSQL encodes it inside a group commit and builds it
    /// again for the answer), so it is a pure function of the range.
    #[tracing::instrument(
        name = "append",
        skip_all,
        fields(
            otel.kind = "client",
            db.system.name = self.system(),
            db.operation.name = "append",
            plasma.events = batch.event_count(),
        )
    )]
    pub async fn append<R: Serialize>(
        &self,
        batch: AppendBatch<'_>,
        receipt: impl Fn(Option<AppendedRange>) -> R + Send + Sync + 'static,
    ) -> Result<R, StoreError> {
        match self {
            Self::Sqlite(store) => store.append(batch, receipt).await,
            Self::Postgres(store) => store.append(batch, receipt).await,
        }
    }

    /// The database, as OpenTelemetry names it (`db.system.name`).
    fn system(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgresql",
        }
    }

    /// The receipt recorded for a command id, if that command already ran.
    pub async fn receipt<R: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        command_id: CommandId,
    ) -> Result<Option<R>, StoreError> {
        let raw = match self {
            Self::Sqlite(store) => store.receipt(tenant, command_id).await?,
            Self::Postgres(store) => store.receipt(tenant, command_id).await?,
        };
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|err| StoreError::corrupt("command receipt")(Box::new(err)))
        })
        .transpose()
    }

    /// One aggregate's events, oldest first. Another tenant's stream with the same id is invisible.
    pub async fn load_stream(
        &self,
        tenant: &TenantId,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<LoadedStream, StoreError> {
        let events: Result<Vec<RecordedEvent>, StoreError> = read_events!(
            self,
            "loading a stream",
            "WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 ORDER BY sequence",
            tenant.as_str(),
            aggregate_type,
            aggregate_id
        );
        Ok(LoadedStream { events: events? })
    }

    /// Replaces the payloads of some events of one stream, by sequence, in one transaction:
    /// retention dropping what a later event of the stream declared unreachable (an agent run's
    /// pruned checkpoint states). Nothing else about an event changes (id, position, type,
    /// order), so readers and replays see the same history with less in it; the domain decides
    /// what may be dropped, this only writes it.
    pub async fn rewrite_payloads(
        &self,
        tenant: &TenantId,
        aggregate_type: &str,
        aggregate_id: Uuid,
        payloads: &[(i64, String)],
    ) -> Result<(), StoreError> {
        // The same statements on either backend; only the payload's type differs.
        macro_rules! rewrite {
            ($pool:expr, $sql:literal) => {{
                let mut tx = $pool
                    .begin()
                    .await
                    .map_err(StoreError::db("starting a payload rewrite"))?;
                for (sequence, payload) in payloads {
                    sqlx::query($sql)
                        .bind(tenant.as_str())
                        .bind(aggregate_type)
                        .bind(aggregate_id)
                        .bind(sequence)
                        .bind(payload)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::db("rewriting an event payload"))?;
                }
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing a payload rewrite"))
            }};
        }
        match self {
            Self::Sqlite(store) => rewrite!(
                store.writer(),
                "UPDATE events SET payload = $5 WHERE tenant_id = $1 AND aggregate_type = $2 \
                 AND aggregate_id = $3 AND sequence = $4"
            ),
            Self::Postgres(store) => rewrite!(
                store.pool(),
                "UPDATE events SET payload = $5::json WHERE tenant_id = $1 AND aggregate_type = $2 \
                 AND aggregate_id = $3 AND sequence = $4"
            ),
        }
    }

    /// Which of `ids` already have a stream of `aggregate_type` for this tenant.
    pub async fn existing_streams(
        &self,
        tenant: &TenantId,
        aggregate_type: &str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        match self {
            Self::Sqlite(store) => store.existing_streams(tenant, aggregate_type, ids).await,
            Self::Postgres(store) => store.existing_streams(tenant, aggregate_type, ids).await,
        }
    }

    /// Up to `limit` events with a position above `after`, in position order.
    pub async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        read_events!(
            self,
            "reading events",
            "WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            limit
        )
    }

    /// Up to `limit` of one tenant's events with a position above `after`, in position order.
    pub async fn read_tenant(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read_events!(
            self,
            "reading a tenant's events",
            "WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3",
            tenant.as_str(),
            after,
            limit
        )
    }

    /// The position of the last committed event (0 for an empty store).
    pub async fn head(&self) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(store) => store.head().await,
            Self::Postgres(store) => store.head().await,
        }
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.head().await.map(|_| ())
    }
}

fn encode_receipt<R: Serialize>(receipt: &R) -> Result<String, StoreError> {
    serde_json::to_string(receipt)
        .map_err(|err| StoreError::corrupt("command receipt")(Box::new(err)))
}

fn tenant_from_db(raw: String) -> Result<TenantId, StoreError> {
    TenantId::parse(&raw).map_err(|err| StoreError::corrupt("tenant id")(Box::new(err)))
}

/// Decodes one `events` row; the same column names on both backends (PostgreSQL selects the
/// payload as text).
fn decode_event<R>(row: &R) -> Result<RecordedEvent, StoreError>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> chrono::DateTime<chrono::Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn col<'r, R, T>(row: &'r R, name: &'static str) -> Result<T, StoreError>
    where
        R: sqlx::Row,
        &'static str: sqlx::ColumnIndex<R>,
        T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        row.try_get(name)
            .map_err(StoreError::db("decoding an event row"))
    }
    Ok(RecordedEvent {
        position: col(row, "position")?,
        event_id: col(row, "event_id")?,
        tenant: tenant_from_db(col(row, "tenant_id")?)?,
        aggregate_type: col(row, "aggregate_type")?,
        aggregate_id: col(row, "aggregate_id")?,
        sequence: col(row, "sequence")?,
        event_type: col(row, "event_type")?,
        event_version: col(row, "event_version")?,
        payload: col(row, "payload")?,
        correlation_id: col(row, "correlation_id")?,
        causation_id: col(row, "causation_id")?,
        command_id: col(row, "command_id")?,
        recorded_at: col(row, "recorded_at")?,
        trace_parent: col(row, "trace_parent")?,
    })
}
