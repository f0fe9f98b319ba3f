use std::collections::HashSet;
use std::time::Duration;

use plasma_domain::ids::CommandId;
use plasma_domain::{AggregateId, TenantId};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use super::encode_receipt;
use crate::event::{AppendBatch, AppendedRange};
use crate::StoreError;

pub(super) const SELECT_EVENTS: &str =
    "SELECT position, event_id, tenant_id, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload::text AS payload, correlation_id, causation_id, \
     command_id, recorded_at, trace_parent FROM events";

/// COPY sends data in pieces of about this many bytes, so a 10,000-event batch is not one
/// giant buffer on the wire.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The server-mode event store on PostgreSQL. Its events table, in gap-free position order, is
/// what the relay publishes from (see `publication`).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(StoreError::db("connecting to PostgreSQL"))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "PostgreSQL",
                source,
            })?;
        Ok(Self { pool })
    }

    /// The pool, for read models that live in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn append<R: Serialize>(
        &self,
        batch: AppendBatch<'_>,
        receipt: impl FnOnce(Option<AppendedRange>) -> R,
    ) -> Result<R, StoreError> {
        let context = batch.context;
        let count = batch.event_count() as i64;
        // Everything but the positions is encoded before the position lock is taken, so the
        // lock is held only for the copy itself.
        let mut tails = Vec::with_capacity(batch.streams.len() * 800);
        let mut tail_ends = Vec::with_capacity(usize::try_from(count).unwrap_or_default());
        for stream in &batch.streams {
            for (i, event) in stream.events.iter().enumerate() {
                push_copy_tail(
                    &mut tails,
                    context,
                    stream.aggregate_type,
                    stream.aggregate_id,
                    stream.expected_version + 1 + i as i64,
                    event,
                );
                tail_ends.push(tails.len());
            }
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::db("starting an append"))?;
        let range = if count > 0 {
            // Row lock until commit: positions are handed out in commit order (see migration).
            let last: i64 = sqlx::query_scalar(
                "UPDATE event_log_head SET position = position + $1 RETURNING position",
            )
            .bind(count)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("reserving positions"))?;
            let first = last - count + 1;
            let mut rows =
                Vec::with_capacity(COPY_HEADER.len() + tails.len() + tail_ends.len() * 16);
            rows.extend_from_slice(COPY_HEADER);
            let mut start = 0;
            for (position, end) in (first..).zip(&tail_ends) {
                rows.extend_from_slice(&EVENT_FIELDS.to_be_bytes());
                push_field(&mut rows, &position.to_be_bytes());
                rows.extend_from_slice(&tails[start..*end]);
                start = *end;
            }
            rows.extend_from_slice(&(-1i16).to_be_bytes());
            let mut copy = tx
                .copy_in_raw(
                    "COPY events (position, event_id, tenant_id, aggregate_type, aggregate_id, \
                     sequence, event_type, event_version, payload, correlation_id, causation_id, \
                     command_id, trace_parent) FROM STDIN (FORMAT binary)",
                )
                .await
                .map_err(StoreError::db("starting the event copy"))?;
            for chunk in rows.chunks(COPY_CHUNK_BYTES) {
                // COPY data is a byte stream: a chunk may end anywhere, even inside a row.
                copy.send(chunk)
                    .await
                    .map_err(StoreError::db("copying events"))?;
            }
            copy.finish()
                .await
                .map_err(|err| conflict_or(err, "copying events"))?;
            Some(AppendedRange { first, last })
        } else {
            None
        };
        let receipt = receipt(range);
        sqlx::query(
            "INSERT INTO commands (tenant_id, command_id, receipt) VALUES ($1, $2, $3::jsonb)",
        )
        .bind(context.tenant.as_str())
        .bind(context.command_id.as_uuid())
        .bind(encode_receipt(&receipt)?)
        .execute(&mut *tx)
        .await
        .map_err(|err| conflict_or(err, "recording the command"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing an append"))?;
        Ok(receipt)
    }

    pub async fn receipt(
        &self,
        tenant: &TenantId,
        command_id: CommandId,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT receipt::text FROM commands WHERE tenant_id = $1 AND command_id = $2",
        )
        .bind(tenant.as_str())
        .bind(command_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::db("reading a command receipt"))
    }

    pub async fn existing_streams(
        &self,
        tenant: &TenantId,
        aggregate_type: &str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        // One index probe per wanted id, forced by LATERAL ... LIMIT 1. Plain `= ANY($3)` or a
        // join against unnest let the planner (which guesses unnest yields 10 rows) rescan the
        // whole array per stream: seconds per 10,000-mention ingest instead of milliseconds.
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT wanted.id FROM unnest($3::uuid[]) AS wanted(id) CROSS JOIN LATERAL \
             (SELECT 1 FROM events e WHERE e.tenant_id = $1 AND e.aggregate_type = $2 \
              AND e.aggregate_id = wanted.id AND e.sequence = 1 LIMIT 1) AS hit",
        )
        .bind(tenant.as_str())
        .bind(aggregate_type)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("looking up existing streams"))?;
        Ok(rows.into_iter().collect())
    }

    pub async fn head(&self) -> Result<i64, StoreError> {
        // Not event_log_head: that counts positions of transactions still in flight.
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0)::bigint FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::db("reading the head position"))
    }
}

/// Binary COPY: the signature, no flags, no header extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Columns per event row in the COPY.
const EVENT_FIELDS: i16 = 13;

fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    // Field lengths are i32; no single field comes near 2 GiB (payloads are bounded).
    out.extend_from_slice(&(value.len() as i32).to_be_bytes());
    out.extend_from_slice(value);
}

/// One event row in PostgreSQL's binary COPY format, all fields after the position. Binary,
/// not CSV: the server then parses no UUIDs, integers or quoting (a third of the copy's cost).
fn push_copy_tail(
    out: &mut Vec<u8>,
    context: &crate::CommandContext,
    aggregate_type: &str,
    aggregate_id: Uuid,
    sequence: i64,
    event: &crate::EncodedEvent,
) {
    push_field(out, Uuid::now_v7().as_bytes());
    push_field(out, context.tenant.as_str().as_bytes());
    push_field(out, aggregate_type.as_bytes());
    push_field(out, aggregate_id.as_bytes());
    push_field(out, &sequence.to_be_bytes());
    push_field(out, event.event_type.as_bytes());
    push_field(out, &event.event_version.to_be_bytes());
    // The json type's binary form is its text.
    push_field(out, event.payload.as_bytes());
    push_field(out, context.correlation_id.as_uuid().as_bytes());
    push_field(out, context.causation_id.as_bytes());
    push_field(out, context.command_id.as_uuid().as_bytes());
    match &context.trace_parent {
        Some(traceparent) => push_field(out, traceparent.as_bytes()),
        // NULL: length -1, no bytes.
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn conflict_or(err: sqlx::Error, context: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return if db.constraint() == Some("commands_pkey") {
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
