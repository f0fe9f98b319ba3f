//! Log-fed projections (server mode): the same projections as embedded mode, fed by a Kafka
//! consumer group instead of the event store.
//!
//! Exactly-once effect on top of at-least-once delivery:
//! - Offsets live in the read store (`projection_offsets`), written in the same transaction as
//!   the read-model change, and are loaded when partitions are assigned. Kafka's committed
//!   offsets are only a hint for lag tooling.
//! - Each partition's row is updated with a compare-and-set on the offset and position the
//!   worker last saw, so a worker that lost its partitions in a rebalance (or to a rebuild swap)
//!   cannot apply a batch twice: its commit fails and it reloads.
//! - The relay may publish a suffix twice after a crash; within a partition positions only
//!   grow, so an event at or below the partition's highest applied position is a duplicate.
//! - The read model's position (what `min_position` and lag use) is the minimum over partitions
//!   of each partition's safe position: the highest position below which every event of that
//!   partition is applied. A partition read past the last offset the relay had acknowledged
//!   when it recorded position W is safe up to W (`relay_partitions`, no broker round trip).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use plasma_commands::log::{EventCodec, LogConfig, LogError, METADATA_TIMEOUT};
use plasma_commands::RecordedEvent;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::projection::create_tables;
use crate::read_store::on_tx;
use crate::runner::{load_checkpoint, save_checkpoint};
use crate::{Checkpoint, Projection, ProjectionError, ReadStore, ReadTx, Tables};

pub const METRIC_APPLIED: &str = "plasma_worker_applied_events_total";
pub const METRIC_DUPLICATES: &str = "plasma_worker_duplicates_dropped_total";

type PartitionKey = (String, i32);

/// Where a partition starts. Always an explicit offset, never "beginning": tansu 0.6.0 answers
/// the earliest-offset lookup with the first offset written since it last restarted, which
/// would silently skip the history (seen in the fault tests). Event topics never delete, and
/// were the start ever trimmed, `auto.offset.reset=earliest` applies.
pub const FIRST_OFFSET: i64 = 0;

/// Where one partition stands in the read store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    pub next_offset: i64,
    pub max_position: i64,
    pub safe_position: i64,
}

/// Tunables of a log worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Records per transaction.
    pub batch_size: usize,
    /// How long to wait for a first record before counting as idle.
    pub idle_wait: Duration,
    /// Refresh the tables' planner statistics after this many applied events.
    pub analyze_every: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            idle_wait: Duration::from_millis(50),
            analyze_every: 50_000,
        }
    }
}

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> ProjectionError {
    move |source| ProjectionError::Log(LogError::Kafka { context, source })
}

/// Loads (creating when missing) the stored state of `partitions`.
async fn load_states(
    read: &ReadStore,
    projection: &str,
    partitions: &[PartitionKey],
) -> Result<HashMap<PartitionKey, PartitionState>, ProjectionError> {
    let mut tx = read.begin().await?;
    let mut out = HashMap::new();
    for (topic, partition) in partitions {
        let state = load_state(&mut tx, projection, topic, *partition).await?;
        out.insert((topic.clone(), *partition), state);
    }
    tx.commit().await?;
    Ok(out)
}

async fn load_state(
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

/// Sets the read model's position to the minimum safe position over its partitions.
async fn save_model_position(tx: &mut ReadTx, projection: &str) -> Result<i64, ProjectionError> {
    let position: Option<i64> = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT MIN(safe_position) FROM projection_offsets WHERE projection = $1"
    )
    .bind(projection)
    .fetch_one(c)
    .await
    .map_err(ProjectionError::db("computing the model position"))?);
    let position = position.unwrap_or(0);
    save_checkpoint(
        tx,
        projection,
        &Checkpoint {
            position,
            ..Checkpoint::default()
        },
    )
    .await?;
    Ok(position)
}

/// Compare-and-set of one partition's row; false when someone else moved it.
async fn swap_state(
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

/// What the relay has published: its position, and per partition the highest offset it had
/// acknowledged then (one snapshot). Empty when this database has no relay (nothing to wait for).
async fn published(read: &ReadStore) -> Option<(i64, HashMap<PartitionKey, i64>)> {
    let ReadStore::Postgres { pool } = read else {
        return None;
    };
    let mut tx = pool.begin().await.ok()?;
    let position: i64 =
        sqlx::query_scalar("SELECT published_position FROM relay_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .ok()?;
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition_id, last_offset FROM relay_partitions")
            .fetch_all(&mut *tx)
            .await
            .ok()?;
    tx.commit().await.ok()?;
    Some((
        position,
        rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
    ))
}

async fn offset_rows(
    read: &ReadStore,
    projection: &str,
) -> Result<Vec<(String, i32, i64)>, ProjectionError> {
    crate::read_store::on_pool!(read, |p| sqlx::query_as(
        "SELECT topic, partition_id, next_offset FROM projection_offsets \
         WHERE projection = $1 ORDER BY 1, 2"
    )
    .bind(projection)
    .fetch_all(p)
    .await
    .map_err(ProjectionError::db("reading partition offsets")))
}

/// Lets the rebalance callback load offsets from the read store before assigning.
struct WorkerContext {
    read: ReadStore,
    projection: String,
    handle: tokio::runtime::Handle,
    assigned: Arc<Mutex<HashMap<PartitionKey, PartitionState>>>,
}

impl ClientContext for WorkerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        plasma_commands::log::log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason);
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<PartitionKey> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                // This callback is synchronous and runs inside the runtime (on the task that
                // polls the consumer): wait for the query on a helper thread, which the
                // multi-threaded runtime's workers drive.
                let loaded = std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            self.handle.block_on(load_states(
                                &self.read,
                                &self.projection,
                                &partitions,
                            ))
                        })
                        .join()
                });
                let mut assigned = lock(&self.assigned);
                match loaded {
                    Ok(Ok(states)) => {
                        for ((topic, partition), state) in &states {
                            let offset = Offset::Offset(state.next_offset);
                            if let Err(error) = tpl.set_partition_offset(topic, *partition, offset)
                            {
                                tracing::warn!(%error, topic, partition, "cannot set the start offset");
                            }
                        }
                        tracing::info!(partitions = states.len(), "partitions assigned");
                        assigned.extend(states);
                    }
                    // The main loop loads any partition it has no state for, and seeks.
                    Ok(Err(error)) => tracing::warn!(%error, "loading offsets on assignment"),
                    Err(_) => tracing::warn!("loading offsets on assignment panicked"),
                }
                if let Err(error) = base_consumer.assign(tpl) {
                    tracing::error!(%error, "assigning partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut assigned = lock(&self.assigned);
                for e in tpl.elements() {
                    assigned.remove(&(e.topic().to_owned(), e.partition()));
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                if let Err(error) = base_consumer.unassign() {
                    tracing::error!(%error, "unassigning partitions");
                }
            }
            other => tracing::error!(?other, "rebalance failed"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves plain data behind; keep going with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One record taken off the consumer.
struct Record {
    key: PartitionKey,
    offset: i64,
    payload: Vec<u8>,
}

/// Records taken off the consumer: the events to apply and the partition states before and
/// after them.
#[derive(Debug, Default)]
struct Prepared {
    handled: usize,
    before: HashMap<PartitionKey, PartitionState>,
    after: HashMap<PartitionKey, PartitionState>,
    events: Vec<RecordedEvent>,
    duplicates: u64,
}

/// Applies a batch and its offsets in one transaction; false when a partition's stored state
/// moved elsewhere (nothing is applied then).
async fn apply_batch(
    read: &ReadStore,
    projection: &dyn Projection,
    batch: &Prepared,
) -> Result<bool, ProjectionError> {
    let name = projection.name();
    let mut tx = read.begin().await?;
    // Lock order shared with rebuilds: the checkpoint row first, then the offsets.
    load_checkpoint(&mut tx, name, true).await?;
    projection
        .apply(&mut tx, &Tables::LIVE, &batch.events)
        .await?;
    for (key, new) in &batch.after {
        let expected = batch.before.get(key).copied().unwrap_or_default();
        if !swap_state(&mut tx, name, key, expected, *new).await? {
            return Ok(false);
        }
    }
    save_model_position(&mut tx, name).await?;
    tx.commit().await?;
    Ok(true)
}

/// What one [`LogWorker::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStep {
    /// Records handled (applied or dropped as duplicates).
    Handled(usize),
    Idle,
    /// A partition moved under us (rebalance, rebuild swap); reloaded it.
    Resynced,
}

/// A projection fed by a consumer group; several workers of one read model split its partitions.
pub struct LogWorker {
    read: ReadStore,
    projection: Arc<dyn Projection>,
    codec: EventCodec,
    consumer: Arc<StreamConsumer<WorkerContext>>,
    assigned: Arc<Mutex<HashMap<PartitionKey, PartitionState>>>,
    /// Partitions we sought back to their stored offset, and to where.
    sought: Mutex<HashMap<PartitionKey, i64>>,
    /// A batch read and decoded while the previous one was being applied.
    pending: Option<Prepared>,
    topics: Vec<String>,
    options: WorkerOptions,
    since_analyze: usize,
    last_safe_check: Instant,
    /// Lagging partitions' stored offsets as last seen, and since when.
    unattended: Option<(Vec<(PartitionKey, i64)>, Instant)>,
}

/// A consumer that should be receiving but is not (seen with a broker that lost its group
/// state in a restart) is replaced after this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);

impl std::fmt::Debug for LogWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWorker")
            .field("projection", &self.projection.name())
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// The topics a projection reads.
pub fn topics_of(projection: &dyn Projection, config: &LogConfig) -> Vec<String> {
    projection
        .contexts()
        .iter()
        .map(|c| c.topic(&config.topic_prefix))
        .collect()
}

/// Each partition's (low, high) watermarks, asked of the broker.
pub async fn partition_ends<C, X>(
    consumer: Arc<C>,
    partitions: &[PartitionKey],
) -> Result<HashMap<PartitionKey, (i64, i64)>, ProjectionError>
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .map(|key| {
                let ends = consumer.fetch_watermarks(&key.0, key.1, METADATA_TIMEOUT)?;
                Ok((key, ends))
            })
            .collect::<Result<HashMap<_, _>, KafkaError>>()
    })
    .await
    .map_err(|e| ProjectionError::Worker(format!("the watermark task failed: {e}")))?
    .map_err(kafka("reading partition ends"))
}

/// The consumer group of a read model's workers.
pub fn group_id(projection: &str) -> String {
    format!("plasma.projection.{projection}")
}

/// The partitions of `topics`, from the broker's metadata.
pub async fn partitions_of<C: Consumer<X> + Send + Sync + 'static, X: ConsumerContext + 'static>(
    consumer: Arc<C>,
    topics: &[String],
) -> Result<Vec<PartitionKey>, ProjectionError> {
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map_err(kafka("reading topic metadata"))?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none() && !t.partitions().is_empty());
            let Some(found) = found else {
                return Err(ProjectionError::Config(format!(
                    "topic {topic} does not exist; create it first (`plasma topics create`)"
                )));
            };
            out.extend(found.partitions().iter().map(|p| (topic.clone(), p.id())));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ProjectionError::Worker(format!("the metadata task failed: {e}")))?
}

impl LogWorker {
    /// Joins the read model's consumer group. Needs the multi-threaded Tokio runtime (the
    /// rebalance callback waits on the read store).
    pub async fn start(
        read: ReadStore,
        projection: Arc<dyn Projection>,
        config: &LogConfig,
        options: WorkerOptions,
    ) -> Result<Self, ProjectionError> {
        let name = projection.name();
        let mut tx = read.begin().await?;
        create_tables(&mut tx, projection.as_ref(), &Tables::LIVE, "g0").await?;
        tx.commit().await?;
        let topics = topics_of(projection.as_ref(), config);
        let assigned = Arc::new(Mutex::new(HashMap::new()));
        let context = WorkerContext {
            read: read.clone(),
            projection: name.to_owned(),
            handle: tokio::runtime::Handle::current(),
            assigned: assigned.clone(),
        };
        let consumer: StreamConsumer<WorkerContext> = config
            .consumer(Some(&group_id(name)))
            .create_with_context(context)
            .map_err(kafka("creating the consumer"))?;
        let consumer = Arc::new(consumer);
        // Every partition gets a row now, so the model position accounts for partitions no
        // worker has been assigned yet.
        let partitions = partitions_of(consumer.clone(), &topics).await?;
        load_states(&read, name, &partitions).await?;
        let mut tx = read.begin().await?;
        save_model_position(&mut tx, name).await?;
        tx.commit().await?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(kafka("subscribing"))?;
        tracing::info!(projection = name, ?topics, "log worker started");
        Ok(Self {
            read,
            projection,
            codec: EventCodec::new(&config.registry_url, &config.topic_prefix)
                .map_err(ProjectionError::Log)?,
            consumer,
            assigned,
            sought: Mutex::new(HashMap::new()),
            pending: None,
            topics,
            options,
            since_analyze: 0,
            last_safe_check: Instant::now() - Duration::from_secs(1),
            unattended: None,
        })
    }

    /// The partitions this worker holds now.
    pub fn assignment(&self) -> Vec<PartitionKey> {
        let mut keys: Vec<_> = lock(&self.assigned).keys().cloned().collect();
        keys.sort();
        keys
    }

    async fn next_records(&self) -> Result<Vec<Record>, ProjectionError> {
        let first = match tokio::time::timeout(self.options.idle_wait, self.consumer.recv()).await {
            Err(_elapsed) => return Ok(Vec::new()),
            Ok(Ok(message)) => message,
            // Consumer errors are reports (a broker went away, a fetch failed); librdkafka
            // reconnects and resumes by itself.
            Ok(Err(error)) => {
                tracing::warn!(%error, "consumer error; carrying on");
                tokio::time::sleep(self.options.idle_wait).await;
                return Ok(Vec::new());
            }
        };
        let mut records = vec![to_record(&first)];
        drop(first);
        while records.len() < self.options.batch_size {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => records.push(to_record(&message)),
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error; carrying on");
                    break;
                }
                None => break,
            }
        }
        Ok(records)
    }

    fn is_assigned(&self, key: &PartitionKey) -> bool {
        self.consumer.assignment().is_ok_and(|tpl| {
            tpl.elements()
                .iter()
                .any(|e| e.topic() == key.0 && e.partition() == key.1)
        })
    }

    /// Repositions a partition. A failure (the partition was just revoked, the broker is away)
    /// is not fatal: records arriving at the wrong offset are dropped and trigger a new seek.
    fn seek(&self, key: &PartitionKey, offset: i64) {
        let target = Offset::Offset(offset);
        if let Err(error) = self
            .consumer
            .seek(&key.0, key.1, target, Duration::from_secs(5))
        {
            tracing::warn!(%error, topic = %key.0, partition = key.1, offset, "seek failed");
        }
    }

    /// Applies one batch of records, reading and decoding the next batch meanwhile.
    pub async fn step(&mut self) -> Result<WorkerStep, ProjectionError> {
        let batch = match self.pending.take() {
            Some(batch) => batch,
            None => self.prepare(&HashMap::new()).await?,
        };
        if batch.handled == 0 {
            self.advance_safe_positions().await?;
            return Ok(WorkerStep::Idle);
        }
        if batch.after.is_empty() {
            return Ok(WorkerStep::Handled(batch.handled));
        }
        // The batch commits on another task while this one reads and decodes the next (from
        // this batch's offsets); if this one fails its compare-and-set, both are dropped and
        // their partitions re-read from the stored state.
        let base = batch.after.clone();
        let started = Instant::now();
        let applying = {
            let read = self.read.clone();
            let projection = self.projection.clone();
            tokio::spawn(async move {
                let applied = apply_batch(&read, projection.as_ref(), &batch).await;
                (applied, batch, started.elapsed())
            })
        };
        let next = self.prepare(&base).await;
        let prepared_in = started.elapsed();
        let (applied, batch, applied_in) = applying.await.map_err(|e| {
            ProjectionError::Worker(format!("the task applying a batch failed: {e}"))
        })?;
        tracing::debug!(
            records = batch.handled,
            apply_ms = applied_in.as_millis() as u64,
            next_prepare_ms = prepared_in.as_millis() as u64,
            "batch"
        );
        if !applied? {
            let mut keys: HashSet<PartitionKey> = batch.after.keys().cloned().collect();
            if let Ok(next) = &next {
                keys.extend(next.after.keys().cloned());
            }
            self.resync(keys.into_iter().collect()).await?;
            return Ok(WorkerStep::Resynced);
        }
        self.finish(&batch).await?;
        let next = next?;
        if next.handled > 0 {
            self.pending = Some(next);
        }
        Ok(WorkerStep::Handled(batch.handled))
    }

    /// Takes the next records off the consumer and decodes the ones to apply, starting from
    /// `base` (the states a batch still being applied will leave) or the stored states.
    async fn prepare(
        &self,
        base: &HashMap<PartitionKey, PartitionState>,
    ) -> Result<Prepared, ProjectionError> {
        let records = self.next_records().await?;
        let mut batch = Prepared {
            handled: records.len(),
            ..Prepared::default()
        };
        let mut skip: HashSet<PartitionKey> = HashSet::new();
        for record in records {
            if skip.contains(&record.key) {
                continue;
            }
            let known = base
                .get(&record.key)
                .copied()
                .or_else(|| lock(&self.assigned).get(&record.key).copied());
            let state = match batch.after.get(&record.key).copied().or(known) {
                Some(state) => state,
                // Fetched before a rebalance took the partition away: not ours to apply.
                None if !self.is_assigned(&record.key) => {
                    skip.insert(record.key);
                    continue;
                }
                None => {
                    // Assigned without loaded offsets: load them now and start over there.
                    let name = self.projection.name();
                    let states =
                        load_states(&self.read, name, std::slice::from_ref(&record.key)).await?;
                    let state = states.get(&record.key).copied().unwrap_or_default();
                    lock(&self.assigned).insert(record.key.clone(), state);
                    state
                }
            };
            if record.offset < state.next_offset {
                continue;
            }
            if record.offset > state.next_offset {
                // Records we have not applied lie before this one: go back for them, unless we
                // just did and the log really has a gap there.
                let mut sought = lock(&self.sought);
                if sought.get(&record.key) != Some(&state.next_offset) {
                    self.seek(&record.key, state.next_offset);
                    sought.insert(record.key.clone(), state.next_offset);
                    skip.insert(record.key);
                    continue;
                }
                tracing::warn!(topic = %record.key.0, partition = record.key.1, from = state.next_offset, to = record.offset, "offset gap in the log");
            }
            lock(&self.sought).remove(&record.key);
            batch.before.entry(record.key.clone()).or_insert(state);
            let event = self
                .codec
                .decode(&record.payload)
                .await
                .map_err(ProjectionError::Log)?;
            let mut next = PartitionState {
                next_offset: record.offset + 1,
                ..state
            };
            if event.position <= state.max_position {
                batch.duplicates += 1;
            } else {
                next.max_position = event.position;
                next.safe_position = next.safe_position.max(event.position);
                batch.events.push(event);
            }
            batch.after.insert(record.key, next);
        }
        batch.events.sort_by_key(|e| e.position);
        Ok(batch)
    }

    /// After a batch committed: the new states, the group's offsets hint, metrics, statistics.
    async fn finish(&mut self, batch: &Prepared) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let mut commit = TopicPartitionList::new();
        {
            let mut assigned = lock(&self.assigned);
            for (key, new) in &batch.after {
                if let Some(state) = assigned.get_mut(key) {
                    *state = *new;
                }
                commit
                    .add_partition_offset(&key.0, key.1, Offset::Offset(new.next_offset))
                    .map_err(kafka("recording offsets"))?;
            }
        }
        // Only a hint for lag tooling: the read store's offsets are the truth.
        if let Err(error) = self.consumer.commit(&commit, CommitMode::Async) {
            tracing::debug!(%error, "committing offsets to the group");
        }
        metrics::counter!(METRIC_APPLIED, "projection" => name)
            .increment(batch.events.len() as u64);
        metrics::counter!(METRIC_DUPLICATES, "projection" => name).increment(batch.duplicates);
        self.since_analyze += batch.events.len();
        if self.since_analyze >= self.options.analyze_every {
            self.since_analyze = 0;
            let tables: Vec<String> = self
                .projection
                .tables()
                .iter()
                .map(|t| Tables::LIVE.name(t))
                .collect();
            self.read.analyze(&tables).await?;
        }
        Ok(())
    }

    /// Reloads partitions whose rows moved elsewhere, and continues from there.
    async fn resync(&mut self, keys: Vec<PartitionKey>) -> Result<(), ProjectionError> {
        let states = load_states(&self.read, self.projection.name(), &keys).await?;
        let still_mine: Vec<(PartitionKey, PartitionState)> = {
            let mut assigned = lock(&self.assigned);
            let mine: Vec<_> = states
                .into_iter()
                .filter(|(key, _)| assigned.contains_key(key))
                .collect();
            for (key, state) in &mine {
                assigned.insert(key.clone(), *state);
            }
            mine
        };
        self.pending = None;
        for (key, state) in still_mine {
            self.seek(&key, state.next_offset);
            lock(&self.sought).insert(key, state.next_offset);
        }
        tracing::info!(
            projection = self.projection.name(),
            "partition state moved elsewhere; resynced"
        );
        Ok(())
    }

    /// When idle: a partition read past everything the relay had acknowledged when it reached
    /// position W holds every event up to W that belongs to it, so it is safe up to W.
    async fn advance_safe_positions(&mut self) -> Result<(), ProjectionError> {
        if self.last_safe_check.elapsed() < Duration::from_millis(100) {
            return Ok(());
        }
        self.last_safe_check = Instant::now();
        let Some((published, last_offsets)) = published(&self.read).await else {
            return Ok(());
        };
        self.check_stall(&last_offsets).await?;
        let advanced: Vec<(PartitionKey, PartitionState, PartitionState)> = lock(&self.assigned)
            .iter()
            .filter(|(key, state)| {
                state.safe_position < published
                    && state.next_offset > last_offsets.get(*key).copied().unwrap_or(-1)
            })
            .map(|(key, state)| {
                let new = PartitionState {
                    safe_position: published,
                    ..*state
                };
                (key.clone(), *state, new)
            })
            .collect();
        if advanced.is_empty() {
            return Ok(());
        }
        let name = self.projection.name();
        let mut tx = self.read.begin().await?;
        load_checkpoint(&mut tx, name, true).await?;
        for (key, expected, new) in &advanced {
            if !swap_state(&mut tx, name, key, *expected, *new).await? {
                drop(tx);
                self.resync(advanced.iter().map(|(k, _, _)| k.clone()).collect())
                    .await?;
                return Ok(());
            }
        }
        save_model_position(&mut tx, name).await?;
        tx.commit().await?;
        let mut assigned = lock(&self.assigned);
        for (key, _, new) in advanced {
            if let Some(state) = assigned.get_mut(&key) {
                *state = new;
            }
        }
        Ok(())
    }

    /// Fails (so the worker rejoins its group with a fresh consumer) when records the relay
    /// has published stay unapplied: some partition of this read model lags and its stored
    /// offset has not moved for [`STALL_TIMEOUT`]. Seen with a broker that kept a killed
    /// member's partitions assigned until a member rejoined, and after a broker restart.
    async fn check_stall(
        &mut self,
        last_offsets: &HashMap<PartitionKey, i64>,
    ) -> Result<(), ProjectionError> {
        let rows = offset_rows(&self.read, self.projection.name()).await?;
        let lagging: Vec<(PartitionKey, i64)> = rows
            .into_iter()
            .map(|(t, p, next)| ((t, p), next))
            .filter(|(key, next)| *next <= last_offsets.get(key).copied().unwrap_or(-1))
            .collect();
        match &self.unattended {
            _ if lagging.is_empty() => self.unattended = None,
            Some((seen, since)) if *seen == lagging => {
                if since.elapsed() > STALL_TIMEOUT {
                    return Err(ProjectionError::Worker(format!(
                        "partitions {:?} lag without progress for {}s; rejoining the group",
                        lagging.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                        STALL_TIMEOUT.as_secs()
                    )));
                }
            }
            _ => self.unattended = Some((lagging, Instant::now())),
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            tokio::select! {
                step = self.step() => { step?; }
                _ = shutdown.changed() => {}
            }
        }
    }
}

fn to_record<M: Message>(message: &M) -> Record {
    Record {
        key: (message.topic().to_owned(), message.partition()),
        offset: message.offset(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Rebuilds `projection` from the beginning of its topics into shadow tables, then swaps it in
/// while queries keep reading the live tables. The swap locks the live offsets, reads on until
/// the shadow has everything the live tables have, and hands the live workers the shadow's
/// offsets (they notice and reload). Progress counts records read against the records the
/// topics held when the replay started.
pub async fn replay_from_log(
    read: &ReadStore,
    projection: Arc<dyn Projection>,
    config: &LogConfig,
    batch_size: usize,
    mut on_progress: impl FnMut(crate::RebuildProgress) + Send,
) -> Result<crate::RebuildProgress, ProjectionError> {
    let name = projection.name();
    let generation = format!("g{}", chrono::Utc::now().timestamp_micros());
    let mut tx = read.begin().await?;
    for table in projection.tables() {
        let sql = format!("DROP TABLE IF EXISTS {}", Tables::SHADOW.name(table));
        tx.execute(&sql, "dropping stale shadow tables").await?;
    }
    create_tables(&mut tx, projection.as_ref(), &Tables::SHADOW, &generation).await?;
    tx.commit().await?;

    let topics = topics_of(projection.as_ref(), config);
    let consumer: StreamConsumer = config
        .consumer(None)
        .create()
        .map_err(kafka("creating the replay consumer"))?;
    let consumer = Arc::new(consumer);
    let partitions = partitions_of(consumer.clone(), &topics).await?;
    let ends = partition_ends(consumer.clone(), &partitions).await?;
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in &partitions {
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(FIRST_OFFSET))
            .map_err(kafka("assigning partitions"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(kafka("assigning partitions"))?;
    let total: i64 = ends.values().map(|(low, high)| high - low).sum();
    let codec = EventCodec::new(&config.registry_url, &config.topic_prefix)
        .map_err(ProjectionError::Log)?;
    let mut replay = Replay {
        states: partitions
            .iter()
            .map(|k| (k.clone(), PartitionState::default()))
            .collect(),
        codec,
        consumer,
        progress: crate::RebuildProgress {
            applied: 0,
            position: 0,
            target: total,
        },
        batch_size,
    };

    let reached = |states: &HashMap<PartitionKey, PartitionState>,
                   goal: &HashMap<PartitionKey, i64>| {
        goal.iter()
            .all(|(key, end)| states.get(key).map_or(0, |s| s.next_offset) >= *end)
    };
    let initial_goal: HashMap<PartitionKey, i64> = ends
        .iter()
        .map(|(k, (_, high))| (k.clone(), *high))
        .collect();
    while !reached(&replay.states, &initial_goal) {
        let mut tx = read.begin().await?;
        replay.read_batch(&mut tx, projection.as_ref()).await?;
        tx.commit().await?;
        on_progress(replay.progress);
    }

    // The swap: lock the live state (checkpoint row first, the lock order workers use), catch
    // up to it, take over the tables and the offsets.
    let mut tx = read.begin().await?;
    load_checkpoint(&mut tx, name, true).await?;
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT topic, partition_id, next_offset, safe_position FROM projection_offsets \
         WHERE projection = $1{lock}"
    );
    let live: Vec<(String, i32, i64, i64)> = on_tx!(&mut tx, |c| sqlx::query_as(&sql)
        .bind(name)
        .fetch_all(c)
        .await
        .map_err(ProjectionError::db("locking the live offsets"))?);
    let live_goal: HashMap<PartitionKey, i64> = live
        .iter()
        .map(|(t, p, next, _)| ((t.clone(), *p), *next))
        .collect();
    while !reached(&replay.states, &live_goal) {
        replay.read_batch(&mut tx, projection.as_ref()).await?;
    }
    let live_safe: HashMap<PartitionKey, i64> = live
        .iter()
        .map(|(t, p, _, safe)| ((t.clone(), *p), *safe))
        .collect();
    for (key, state) in &replay.states {
        let safe = state
            .max_position
            .max(live_safe.get(key).copied().unwrap_or(0));
        on_tx!(&mut tx, |c| sqlx::query(
            "INSERT INTO projection_offsets \
             (projection, topic, partition_id, next_offset, max_position, safe_position) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (projection, topic, partition_id) DO UPDATE SET \
             next_offset = excluded.next_offset, max_position = excluded.max_position, \
             safe_position = excluded.safe_position"
        )
        .bind(name)
        .bind(&key.0)
        .bind(key.1)
        .bind(state.next_offset)
        .bind(state.max_position)
        .bind(safe)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db("handing over the offsets"))?);
    }
    crate::rebuild::swap_in_shadow(&mut tx, projection.as_ref()).await?;
    let position = save_model_position(&mut tx, name).await?;
    tx.commit().await?;
    on_progress(replay.progress);
    let tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| Tables::LIVE.name(t))
        .collect();
    read.analyze(&tables).await?;
    tracing::info!(
        projection = name,
        position,
        applied = replay.progress.applied,
        "read model replayed from the log and swapped in"
    );
    Ok(replay.progress)
}

/// A replay's reading state.
struct Replay {
    states: HashMap<PartitionKey, PartitionState>,
    codec: EventCodec,
    consumer: Arc<StreamConsumer>,
    progress: crate::RebuildProgress,
    batch_size: usize,
}

impl Replay {
    /// Reads up to a batch of records and applies the new events into the shadow tables.
    async fn read_batch(
        &mut self,
        tx: &mut ReadTx,
        projection: &dyn Projection,
    ) -> Result<(), ProjectionError> {
        let first = tokio::time::timeout(Duration::from_secs(30), self.consumer.recv())
            .await
            .map_err(|_| ProjectionError::Worker("the log stopped answering mid-replay".into()))?
            .map_err(kafka("receiving"))?;
        let mut records = vec![to_record(&first)];
        drop(first);
        while records.len() < self.batch_size {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => records.push(to_record(&message)),
                Some(Err(error)) => return Err(kafka("receiving")(error)),
                None => break,
            }
        }
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            let Some(state) = self.states.get_mut(&record.key) else {
                continue;
            };
            if record.offset < state.next_offset {
                continue;
            }
            state.next_offset = record.offset + 1;
            self.progress.position += 1;
            let event = self
                .codec
                .decode(&record.payload)
                .await
                .map_err(ProjectionError::Log)?;
            if event.position > state.max_position {
                state.max_position = event.position;
                events.push(event);
            }
        }
        events.sort_by_key(|e| e.position);
        projection.apply(tx, &Tables::SHADOW, &events).await?;
        self.progress.applied += events.len() as u64;
        Ok(())
    }
}
