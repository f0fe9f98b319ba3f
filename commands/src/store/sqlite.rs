use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use plasma_domain::ids::CommandId;
use plasma_domain::{AggregateId, TenantId};
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use super::encode_receipt;
use crate::event::{AppendBatch, AppendedRange};
use crate::StoreError;

/// Rows per INSERT statement: 14 bound values a row stays well under SQLite's variable limit.
const ROWS_PER_INSERT: usize = 1000;

pub(super) const SELECT_EVENTS: &str =
    "SELECT position, event_id, tenant_id, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, correlation_id, causation_id, command_id, \
     recorded_at, trace_parent FROM events";

/// The embedded event store: one SQLite file in WAL mode.
///
/// Writes go through a single-connection pool, so this process never races itself for SQLite's
/// write lock; reads use their own pool and never block on writers (WAL). `synchronous=NORMAL`
/// survives a process crash (what SIGKILL tests); only a power loss can drop the last commits.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// The single-connection pool every write goes through.
    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| {
                StoreError::Config(format!("cannot create data dir {}: {err}", dir.display()))
            })?;
        }
        let options = connect_options(path)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::db("opening the SQLite event store"))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "SQLite",
                source,
            })?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::db("opening the SQLite event store for reading"))?;
        Ok(Self { writer, reader })
    }

    pub async fn append<R: Serialize>(
        &self,
        batch: AppendBatch<'_>,
        receipt: impl Fn(Option<AppendedRange>) -> R + Send + Sync + 'static,
    ) -> Result<R, StoreError> {
        let context = batch.context;
        // IMMEDIATE takes the write lock up front, so the position read below cannot go stale.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::db("starting an append"))?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("reading the head position"))?;

        let mut position = head;
        let recorded_at = Utc::now();
        let rows = batch.streams.iter().flat_map(|stream| {
            stream
                .events
                .iter()
                .enumerate()
                .map(move |(i, event)| (stream, stream.expected_version + 1 + i as i64, event))
        });
        let rows: Vec<_> = rows.collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (position, event_id, tenant_id, aggregate_type, aggregate_id, \
                 sequence, event_type, event_version, payload, correlation_id, causation_id, \
                 command_id, recorded_at, trace_parent) ",
            );
            insert.push_values(chunk, |mut row, (stream, sequence, event)| {
                position += 1;
                row.push_bind(position)
                    .push_bind(Uuid::now_v7())
                    .push_bind(context.tenant.as_str())
                    .push_bind(stream.aggregate_type)
                    .push_bind(stream.aggregate_id)
                    .push_bind(*sequence)
                    .push_bind(event.event_type.as_str())
                    .push_bind(event.event_version)
                    .push_bind(event.payload.as_str())
                    .push_bind(context.correlation_id.as_uuid())
                    .push_bind(context.causation_id)
                    .push_bind(context.command_id.as_uuid())
                    .push_bind(recorded_at)
                    .push_bind(context.trace_parent.as_deref());
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|err| conflict_or(err, "appending events"))?;
        }
        let range = (position > head).then_some(AppendedRange {
            first: head + 1,
            last: position,
        });
        let receipt = receipt(range);
        sqlx::query(
            "INSERT INTO commands (tenant_id, command_id, receipt, recorded_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(context.tenant.as_str())
        .bind(context.command_id.as_uuid())
        .bind(encode_receipt(&receipt)?)
        .bind(recorded_at)
        .execute(&mut *tx)
        .await
        .map_err(|err| conflict_or(err, "recording the command"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing an append"))?;
        Ok(receipt)
    }

    /// The pool readers use (never blocked by the writer, thanks to WAL).
    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub async fn receipt(
        &self,
        tenant: &TenantId,
        command_id: CommandId,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT receipt FROM commands WHERE tenant_id = $1 AND command_id = $2")
            .bind(tenant.as_str())
            .bind(command_id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::db("reading a command receipt"))
    }

    pub async fn existing_streams(
        &self,
        tenant: &TenantId,
        aggregate_type: &str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT aggregate_id FROM events WHERE sequence = 1 AND tenant_id = ",
            );
            query.push_bind(tenant.as_str());
            query
                .push(" AND aggregate_type = ")
                .push_bind(aggregate_type);
            query.push(" AND aggregate_id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            query.push(")");
            let rows: Vec<Uuid> = query
                .build_query_scalar()
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::db("looking up existing streams"))?;
            found.extend(rows);
        }
        Ok(found)
    }

    pub async fn head(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::db("reading the head position"))
    }
}

fn connect_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)
        .map_err(|err| StoreError::Config(format!("bad SQLite path {}: {err}", path.display())))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true))
}

/// A unique violation means another writer got there first (stream version or command id).
fn conflict_or(err: sqlx::Error, context: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return if db.message().contains("commands.") {
                StoreError::DuplicateCommand
            } else {
                StoreError::Conflict
            };
        }
    }
    StoreError::Database {
        context,
        source: err,
    }
}
