use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use plasma_domain::ids::CommandId;
use plasma_domain::{AggregateId, TenantId};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{decode_event, encode_receipt};
use crate::event::{AppendBatch, AppendedRange, RecordedEvent};
use crate::StoreError;

const SELECT_EVENTS: &str = "SELECT position, event_id, tenant_id, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload::text AS payload, correlation_id, causation_id, \
     command_id, recorded_at FROM events";

/// COPY sends data in pieces of about this many bytes, so a 10,000-event batch is not one
/// giant buffer on the wire.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The server-mode event store on PostgreSQL, with the outbox the relay drains.
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
        let mut tails = String::with_capacity(batch.streams.len() * 800);
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
            let mut rows = String::with_capacity(tails.len() + tail_ends.len() * 12);
            let mut start = 0;
            for (position, end) in (first..).zip(&tail_ends) {
                let _ = write!(rows, "{position},");
                rows.push_str(&tails[start..*end]);
                start = *end;
            }
            let mut copy = tx
                .copy_in_raw(
                    "COPY events (position, event_id, tenant_id, aggregate_type, aggregate_id, \
                     sequence, event_type, event_version, payload, correlation_id, causation_id, \
                     command_id) FROM STDIN (FORMAT csv)",
                )
                .await
                .map_err(StoreError::db("starting the event copy"))?;
            let mut bytes = rows.as_bytes();
            while !bytes.is_empty() {
                // COPY data is a byte stream: a chunk may end anywhere, even inside a row.
                let (head, rest) = bytes.split_at(bytes.len().min(COPY_CHUNK_BYTES));
                copy.send(head)
                    .await
                    .map_err(StoreError::db("copying events"))?;
                bytes = rest;
            }
            copy.finish()
                .await
                .map_err(|err| conflict_or(err, "copying events"))?;
            sqlx::query(
                "INSERT INTO outbox (position) SELECT generate_series($1::bigint, $2::bigint)",
            )
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("filling the outbox"))?;
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

    pub async fn load_stream(
        &self,
        tenant: &TenantId,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "{SELECT_EVENTS} WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 \
             ORDER BY sequence"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(aggregate_type)
            .bind(aggregate_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("loading a stream"))?;
        rows.iter().map(decode_event).collect()
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

    pub async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("{SELECT_EVENTS} WHERE position > $1 ORDER BY position LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("reading events"))?;
        rows.iter().map(decode_event).collect()
    }

    pub async fn head(&self) -> Result<i64, StoreError> {
        // Not event_log_head: that counts positions of transactions still in flight.
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0)::bigint FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::db("reading the head position"))
    }
}

/// One CSV line for COPY, without its leading position. Text fields are quoted with `"` doubled
/// inside; tenant ids, type names and UUIDs never contain quotes, but payloads (JSON) always do.
fn push_copy_tail(
    out: &mut String,
    context: &crate::CommandContext,
    aggregate_type: &str,
    aggregate_id: Uuid,
    sequence: i64,
    event: &crate::EncodedEvent,
) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{},", Uuid::now_v7());
    push_csv_text(out, context.tenant.as_str());
    out.push(',');
    push_csv_text(out, aggregate_type);
    let _ = write!(out, ",{aggregate_id},{sequence},");
    push_csv_text(out, &event.event_type);
    let _ = write!(out, ",{},", event.event_version);
    push_csv_text(out, &event.payload);
    let _ = writeln!(
        out,
        ",{},{},{}",
        context.correlation_id, context.causation_id, context.command_id
    );
}

fn push_csv_text(out: &mut String, value: &str) {
    out.push('"');
    let mut parts = value.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for part in parts {
        out.push_str("\"\"");
        out.push_str(part);
    }
    out.push('"');
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

#[cfg(test)]
mod tests {
    use super::push_csv_text;

    #[test]
    fn csv_text_doubles_quotes_and_keeps_everything_else() {
        let mut out = String::new();
        push_csv_text(&mut out, r#"{"a":"b\n","c":"\\"}"#);
        assert_eq!(out, r#""{""a"":""b\n"",""c"":""\\""}""#);
    }
}
