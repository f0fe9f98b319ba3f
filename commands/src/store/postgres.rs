use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use plasma_domain::ids::CommandId;
use plasma_domain::{AggregateId, TenantId};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::oneshot;
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
    group: Arc<GroupCommit>,
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
        Ok(Self {
            pool,
            group: Arc::default(),
        })
    }

    /// The pool, for read models that live in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends one command's events. Commands appending at the same time commit together:
    /// while one transaction holds the position lock through its commit (fsync included),
    /// the commands arriving meanwhile queue, and the next of them to take the lead appends
    /// them all in one transaction (group commit). Each keeps its own receipt, positions and
    /// outcome: when the group cannot commit as one (a conflict, a repeated command id), its
    /// commands are appended one by one so each gets its own answer. An append with nobody
    /// else waiting goes through alone, as before, and so does a bulk one.
    pub async fn append<R: Serialize>(
        &self,
        batch: AppendBatch<'_>,
        receipt: impl Fn(Option<AppendedRange>) -> R + Send + Sync + 'static,
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
        let receipt = Arc::new(receipt);
        let encoder = receipt.clone();
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            tenant: context.tenant.as_str().to_owned(),
            command_id: context.command_id.as_uuid(),
            count,
            tails,
            tail_ends,
            encode_receipt: Box::new(move |range| encode_receipt(&encoder(range))),
            reply,
        };
        self.group.queue().push(pending);
        {
            let _lead = self.group.leader.lock().await;
            let members = std::mem::take(&mut *self.group.queue());
            if !members.is_empty() {
                // In its own task, so a caller that gives up waiting (a cancelled request)
                // cannot cut a commit short under the others.
                let pool = self.pool.clone();
                let _ = tokio::spawn(commit_group(pool, members)).await;
            }
        }
        let range = answer.await.map_err(|_| StoreError::Database {
            context: "waiting for a group append",
            source: sqlx::Error::Protocol("the append stopped before it answered".into()),
        })??;
        Ok(receipt(range))
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

/// Commands appending more events than this commit alone (a bulk ingest).
const GROUP_MAX_EVENTS: i64 = 256;

/// One command waiting to be appended with whichever others arrive alongside it.
struct Pending {
    tenant: String,
    command_id: Uuid,
    count: i64,
    /// Its events in COPY form, all fields after the position (see [`push_copy_tail`]).
    tails: Vec<u8>,
    tail_ends: Vec<usize>,
    /// Its receipt, given where its events land, encoded for the commands table.
    encode_receipt: Box<dyn Fn(Option<AppendedRange>) -> Result<String, StoreError> + Send + Sync>,
    reply: oneshot::Sender<Result<Option<AppendedRange>, StoreError>>,
}

/// The queue of commands waiting to append, and the lead: whoever holds it appends everything
/// queued in one transaction.
#[derive(Default)]
struct GroupCommit {
    queue: std::sync::Mutex<Vec<Pending>>,
    leader: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        // A panic elsewhere while holding the queue leaves a queue still fit to use.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

/// Appends `members`: together in one transaction when there are several, one by one when
/// there is one or the group cannot commit as one; every member gets its answer.
async fn commit_group(pool: PgPool, members: Vec<Pending>) {
    // A bulk command commits alone: grouped, bulk clients would fall into step (all deciding
    // at once while the database idles, then one long commit while they wait) instead of one
    // deciding while another commits.
    let (bulk, members): (Vec<Pending>, Vec<Pending>) = members
        .into_iter()
        .partition(|m| m.count > GROUP_MAX_EVENTS);
    for member in bulk {
        let outcome = commit_alone(&pool, &member).await;
        let _ = member.reply.send(outcome);
    }
    if members.len() > 1 {
        match commit_together(&pool, &members).await {
            Ok(ranges) => {
                for (member, range) in members.into_iter().zip(ranges) {
                    let _ = member.reply.send(Ok(range));
                }
                return;
            }
            // The commit itself failed: whether it took effect is unknown, as for any append
            // whose commit fails, so every member hears so (a retry meets its recorded command).
            Err(GroupFailure::AtCommit(err)) => {
                let message = match &err {
                    StoreError::Database { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                for member in members {
                    let _ = member.reply.send(Err(StoreError::Database {
                        context: "committing a group append",
                        source: sqlx::Error::Protocol(message.clone()),
                    }));
                }
                return;
            }
            Err(GroupFailure::Before(err)) => tracing::debug!(
                error = %err,
                commands = members.len(),
                "a group append was refused as a whole; appending its commands one by one"
            ),
        }
    }
    for member in members {
        let outcome = commit_alone(&pool, &member).await;
        let _ = member.reply.send(outcome);
    }
}

enum GroupFailure {
    Before(StoreError),
    AtCommit(StoreError),
}

/// The COPY rows of `members`, their events numbered from `first` in order.
fn copy_rows<'a>(members: impl Iterator<Item = &'a Pending>, first: i64) -> Vec<u8> {
    let mut rows = Vec::with_capacity(COPY_HEADER.len() + 64);
    rows.extend_from_slice(COPY_HEADER);
    let mut position = first;
    for member in members {
        let mut start = 0;
        for end in &member.tail_ends {
            rows.extend_from_slice(&EVENT_FIELDS.to_be_bytes());
            push_field(&mut rows, &position.to_be_bytes());
            rows.extend_from_slice(&member.tails[start..*end]);
            start = *end;
            position += 1;
        }
    }
    rows.extend_from_slice(&(-1i16).to_be_bytes());
    rows
}

async fn copy_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[u8],
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Hands out `count` positions: row-locks the head until the transaction ends, so positions
/// are handed out in commit order (see the migration).
async fn reserve(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    count: i64,
) -> Result<Option<AppendedRange>, StoreError> {
    if count == 0 {
        return Ok(None);
    }
    let last: i64 =
        sqlx::query_scalar("UPDATE event_log_head SET position = position + $1 RETURNING position")
            .bind(count)
            .fetch_one(&mut **tx)
            .await
            .map_err(StoreError::db("reserving positions"))?;
    Ok(Some(AppendedRange {
        first: last - count + 1,
        last,
    }))
}

/// One command in its own transaction: its own conflict or duplicate is its own answer.
async fn commit_alone(
    pool: &PgPool,
    member: &Pending,
) -> Result<Option<AppendedRange>, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("starting an append"))?;
    let range = reserve(&mut tx, member.count).await?;
    if let Some(range) = range {
        copy_events(&mut tx, &copy_rows(std::iter::once(member), range.first)).await?;
    }
    sqlx::query("INSERT INTO commands (tenant_id, command_id, receipt) VALUES ($1, $2, $3::jsonb)")
        .bind(&member.tenant)
        .bind(member.command_id)
        .bind((member.encode_receipt)(range)?)
        .execute(&mut *tx)
        .await
        .map_err(|err| conflict_or(err, "recording the command"))?;
    tx.commit()
        .await
        .map_err(StoreError::db("committing an append"))?;
    Ok(range)
}

/// Every member in one transaction: one position reservation, one COPY, one insert of every
/// receipt, one commit.
async fn commit_together(
    pool: &PgPool,
    members: &[Pending],
) -> Result<Vec<Option<AppendedRange>>, GroupFailure> {
    let before = GroupFailure::Before;
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("starting a group append"))
        .map_err(before)?;
    let total = members.iter().map(|m| m.count).sum();
    let reserved = reserve(&mut tx, total).await.map_err(before)?;
    let mut next = reserved.map_or(0, |r| r.first);
    let mut ranges = Vec::with_capacity(members.len());
    let (mut tenants, mut ids, mut receipts) = (Vec::new(), Vec::new(), Vec::new());
    for member in members {
        let range = (member.count > 0).then(|| AppendedRange {
            first: next,
            last: next + member.count - 1,
        });
        next += member.count;
        tenants.push(member.tenant.as_str());
        ids.push(member.command_id);
        receipts.push((member.encode_receipt)(range).map_err(before)?);
        ranges.push(range);
    }
    if let Some(reserved) = reserved {
        copy_events(&mut tx, &copy_rows(members.iter(), reserved.first))
            .await
            .map_err(before)?;
    }
    sqlx::query(
        "INSERT INTO commands (tenant_id, command_id, receipt) \
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[]::jsonb[])",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(&receipts)
    .execute(&mut *tx)
    .await
    .map_err(|err| conflict_or(err, "recording the commands"))
    .map_err(before)?;
    tx.commit()
        .await
        .map_err(StoreError::db("committing a group append"))
        .map_err(GroupFailure::AtCommit)?;
    Ok(ranges)
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
