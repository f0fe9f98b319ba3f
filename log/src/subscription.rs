//! The log-fed subscription (server mode): the same projections as embedded mode, fed by a
//! Kafka consumer group instead of the event store, through the one projection runtime.
//!
//! Exactly-once effect on top of at-least-once delivery:
//! - Offsets live in the read store (`projection_offsets`), recorded in the same transaction as
//!   the read-model change, and are loaded when partitions are assigned. Kafka's committed
//!   offsets are only a hint for lag tooling.
//! - Each partition's row is updated with a compare-and-set on the offset and position the
//!   subscription last saw, so a worker that lost its partitions in a rebalance (or to a
//!   rebuild swap) cannot apply a batch twice: its commit fails and it reloads.
//! - The relay may publish a suffix twice after a crash; within a partition positions only
//!   grow, so an event at or below the partition's highest applied position is a duplicate.
//! - The read model's position (what `min_position` and lag use) is the minimum over partitions
//!   of each partition's safe position: the highest position below which every event of that
//!   partition is applied. A partition read past the last offset the relay had acknowledged
//!   when it recorded position W is safe up to W (the store's publication, no broker round
//!   trip).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use plasma_commands::{EventStore, RecordedEvent};
use plasma_domain::Context;
use plasma_projections::checkpoint::{
    self, Checkpoint, KeyedMove, PartitionMove, PartitionState, Progress,
};
use plasma_projections::{
    drop_shadow, swap_in_shadow, Batch, OnProgress, Projection, ProjectionError, ReadStore,
    RebuildProgress, Subscription, Tables,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::admin::{partition_ends, partitions_of, FIRST_OFFSET};
use crate::metrics::{METRIC_APPLIED, METRIC_DUPLICATES};
use crate::{EventCodec, LogConfig, LogError, PartitionKey};

/// Tunables of a log subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    /// How long a poll waits for a first record before the batch counts as empty.
    pub poll_wait: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            poll_wait: Duration::from_millis(50),
        }
    }
}

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> ProjectionError {
    move |source| LogError::Kafka { context, source }.into()
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
        crate::trace_librdkafka(level, fac, message);
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
                            self.handle.block_on(checkpoint::load_partitions(
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
    /// The producer's span (`traceparent` header), when the event is traced.
    trace_parent: Option<String>,
}

/// A consumer that should be receiving but is not (seen with a broker that lost its group
/// state in a restart) is replaced after this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The topics of `contexts`.
pub fn topics_of(contexts: &[Context], config: &LogConfig) -> Vec<String> {
    contexts
        .iter()
        .map(|c| c.topic(&config.topic_prefix))
        .collect()
}

/// The consumer group of a read model's workers (or a process's: `name` is its checkpoint's).
pub fn group_id(name: &str) -> String {
    format!("plasma.projection.{name}")
}

/// A projection's events from its topics, as a member of its consumer group; several workers
/// of one read model split its partitions.
pub struct LogSubscription {
    read: ReadStore,
    store: EventStore,
    projection: String,
    codec: EventCodec,
    consumer: Arc<StreamConsumer<WorkerContext>>,
    /// Each assigned partition's committed state (the rebalance callback adds and removes).
    assigned: Arc<Mutex<HashMap<PartitionKey, PartitionState>>>,
    /// States after batches handed out but not yet committed.
    tentative: HashMap<PartitionKey, PartitionState>,
    /// Partitions we sought back to their stored offset, and to where.
    sought: HashMap<PartitionKey, i64>,
    topics: Vec<String>,
    options: SubscriptionOptions,
    last_safe_check: Instant,
    /// Lagging partitions' stored offsets as last seen, and since when.
    unattended: Option<(Vec<(PartitionKey, i64)>, Instant)>,
}

impl std::fmt::Debug for LogSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSubscription")
            .field("projection", &self.projection)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl LogSubscription {
    /// Joins the consumer group of the reader called `name` (a read model, or a process),
    /// reading the topics of `contexts`. Needs the multi-threaded Tokio runtime (the rebalance
    /// callback waits on the read store). A projection's tables must exist (the runner creates
    /// them before the subscription is started).
    pub async fn start(
        read: ReadStore,
        store: EventStore,
        name: &str,
        contexts: &[Context],
        config: &LogConfig,
        options: SubscriptionOptions,
    ) -> Result<Self, ProjectionError> {
        let topics = topics_of(contexts, config);
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
        checkpoint::load_partitions(&read, name, &partitions).await?;
        let mut tx = read.begin().await?;
        checkpoint::load(&mut tx, name, true).await?;
        checkpoint::save_model_position(&mut tx, name).await?;
        tx.commit().await?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(kafka("subscribing"))?;
        tracing::info!(projection = name, ?topics, "log subscription started");
        Ok(Self {
            read,
            store,
            projection: name.to_owned(),
            codec: EventCodec::new(&config.registry_url, &config.topic_prefix)?,
            consumer,
            assigned,
            tentative: HashMap::new(),
            sought: HashMap::new(),
            topics,
            options,
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

    async fn next_records(&self, max: usize) -> Vec<Record> {
        let first = match tokio::time::timeout(self.options.poll_wait, self.consumer.recv()).await {
            Err(_elapsed) => return Vec::new(),
            Ok(Ok(message)) => message,
            // Consumer errors are reports (a broker went away, a fetch failed); librdkafka
            // reconnects and resumes by itself.
            Ok(Err(error)) => {
                tracing::warn!(%error, "consumer error; carrying on");
                tokio::time::sleep(self.options.poll_wait).await;
                return Vec::new();
            }
        };
        let mut records = vec![to_record(&first)];
        drop(first);
        while records.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => records.push(to_record(&message)),
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error; carrying on");
                    break;
                }
                None => break,
            }
        }
        records
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
    fn seek_partition(&self, key: &PartitionKey, offset: i64) {
        let target = Offset::Offset(offset);
        if let Err(error) = self
            .consumer
            .seek(&key.0, key.1, target, Duration::from_secs(5))
        {
            tracing::warn!(%error, topic = %key.0, partition = key.1, offset, "seek failed");
        }
    }

    /// Where a partition stands for the next batch: after the batches handed out, or as
    /// committed.
    fn current(&self, key: &PartitionKey) -> Option<PartitionState> {
        self.tentative
            .get(key)
            .copied()
            .or_else(|| lock(&self.assigned).get(key).copied())
    }

    /// Decodes the records to apply, continuing from where the previous batch left each
    /// partition.
    async fn prepare(&mut self, records: Vec<Record>) -> Result<Batch, ProjectionError> {
        let handled = records.len();
        let mut before: HashMap<PartitionKey, PartitionState> = HashMap::new();
        let mut after: HashMap<PartitionKey, PartitionState> = HashMap::new();
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(records.len());
        let mut duplicates = 0u64;
        let mut skip: HashSet<PartitionKey> = HashSet::new();
        for record in records {
            if skip.contains(&record.key) {
                continue;
            }
            let state = match after
                .get(&record.key)
                .copied()
                .or(self.current(&record.key))
            {
                Some(state) => state,
                // Fetched before a rebalance took the partition away: not ours to apply.
                None if !self.is_assigned(&record.key) => {
                    skip.insert(record.key);
                    continue;
                }
                None => {
                    // Assigned without loaded offsets: load them now and start over there.
                    let states = checkpoint::load_partitions(
                        &self.read,
                        &self.projection,
                        std::slice::from_ref(&record.key),
                    )
                    .await?;
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
                if self.sought.get(&record.key) != Some(&state.next_offset) {
                    self.seek_partition(&record.key, state.next_offset);
                    self.sought.insert(record.key.clone(), state.next_offset);
                    skip.insert(record.key);
                    continue;
                }
                tracing::warn!(topic = %record.key.0, partition = record.key.1, from = state.next_offset, to = record.offset, "offset gap in the log");
            }
            self.sought.remove(&record.key);
            before.entry(record.key.clone()).or_insert(state);
            let mut event = self.codec.decode(&record.payload).await?;
            event.trace_parent = record.trace_parent;
            let mut next = PartitionState {
                next_offset: record.offset + 1,
                ..state
            };
            if event.position <= state.max_position {
                duplicates += 1;
            } else {
                next.max_position = event.position;
                next.safe_position = next.safe_position.max(event.position);
                events.push(event);
            }
            after.insert(record.key, next);
        }
        events.sort_by_key(|e| e.position);
        metrics::counter!(METRIC_DUPLICATES, "projection" => self.projection.clone())
            .increment(duplicates);
        if after.is_empty() {
            return Ok(Batch::empty());
        }
        let moves: Vec<KeyedMove> = after
            .into_iter()
            .map(|(key, new)| {
                let expected = before.get(&key).copied().unwrap_or_default();
                self.tentative.insert(key.clone(), new);
                (key, PartitionMove { expected, new })
            })
            .collect();
        Ok(Batch {
            events,
            progress: Progress::Partitions(moves),
            handled,
        })
    }

    /// When idle: a partition read past everything the relay had acknowledged when it reached
    /// position W holds every event up to W that belongs to it, so it is safe up to W. Returns
    /// the moves that record it (no events), if any.
    async fn advance_safe_positions(&mut self) -> Result<Batch, ProjectionError> {
        if self.last_safe_check.elapsed() < Duration::from_millis(100) {
            return Ok(Batch::empty());
        }
        self.last_safe_check = Instant::now();
        let Some(publication) = self.store.publication().await? else {
            return Ok(Batch::empty());
        };
        self.check_stall(&publication.last_offsets).await?;
        let keys: Vec<PartitionKey> = lock(&self.assigned).keys().cloned().collect();
        let mut moves = Vec::new();
        for key in keys {
            let Some(state) = self.current(&key) else {
                continue;
            };
            let acknowledged = publication.last_offsets.get(&key).copied().unwrap_or(-1);
            if state.safe_position < publication.position && state.next_offset > acknowledged {
                let new = PartitionState {
                    safe_position: publication.position,
                    ..state
                };
                self.tentative.insert(key.clone(), new);
                moves.push((
                    key,
                    PartitionMove {
                        expected: state,
                        new,
                    },
                ));
            }
        }
        if moves.is_empty() {
            return Ok(Batch::empty());
        }
        Ok(Batch {
            events: Vec::new(),
            progress: Progress::Partitions(moves),
            handled: 0,
        })
    }

    /// Fails (so the worker rejoins its group with a fresh consumer) when records the relay
    /// has published stay unapplied: some partition of this read model lags and its stored
    /// offset has not moved for [`STALL_TIMEOUT`]. Seen with a broker that kept a killed
    /// member's partitions assigned until a member rejoined, and after a broker restart.
    async fn check_stall(
        &mut self,
        last_offsets: &HashMap<PartitionKey, i64>,
    ) -> Result<(), ProjectionError> {
        let rows = checkpoint::next_offsets(&self.read, &self.projection).await?;
        let lagging: Vec<(PartitionKey, i64)> = rows
            .into_iter()
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
}

impl Subscription for LogSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Batch, ProjectionError> {
        let records = self.next_records(max).await;
        if records.is_empty() {
            return self.advance_safe_positions().await;
        }
        self.prepare(records).await
    }

    async fn seek(&mut self, _checkpoint: &Checkpoint) -> Result<(), ProjectionError> {
        // Partitions are positioned from their own rows when assigned.
        Ok(())
    }

    async fn committed(&mut self, batch: &Batch) -> Result<(), ProjectionError> {
        let Progress::Partitions(moves) = &batch.progress else {
            return Ok(());
        };
        let mut commit = TopicPartitionList::new();
        {
            let mut assigned = lock(&self.assigned);
            for (key, step) in moves {
                if let Some(state) = assigned.get_mut(key) {
                    *state = step.new;
                }
                if self.tentative.get(key) == Some(&step.new) {
                    self.tentative.remove(key);
                }
                commit
                    .add_partition_offset(&key.0, key.1, Offset::Offset(step.new.next_offset))
                    .map_err(kafka("recording offsets"))?;
            }
        }
        // Only a hint for lag tooling: the read store's offsets are the truth.
        if let Err(error) = self.consumer.commit(&commit, CommitMode::Async) {
            tracing::debug!(%error, "committing offsets to the group");
        }
        metrics::counter!(METRIC_APPLIED, "projection" => self.projection.clone())
            .increment(batch.events.len() as u64);
        Ok(())
    }

    /// Reloads the partitions of `batch` and of any batch read after it, and continues from
    /// their stored offsets.
    async fn resync(
        &mut self,
        read: &ReadStore,
        _stored: &Checkpoint,
        batch: &Batch,
    ) -> Result<(), ProjectionError> {
        let mut keys: HashSet<PartitionKey> = self.tentative.keys().cloned().collect();
        if let Progress::Partitions(moves) = &batch.progress {
            keys.extend(moves.iter().map(|(key, _)| key.clone()));
        }
        self.tentative.clear();
        let keys: Vec<PartitionKey> = keys.into_iter().collect();
        let states = checkpoint::load_partitions(read, &self.projection, &keys).await?;
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
        for (key, state) in still_mine {
            self.seek_partition(&key, state.next_offset);
            self.sought.insert(key, state.next_offset);
        }
        tracing::info!(
            projection = %self.projection,
            "partition state moved elsewhere; resynced"
        );
        Ok(())
    }

    fn waits_when_idle(&self) -> bool {
        true
    }
}

fn to_record<M: Message>(message: &M) -> Record {
    let trace_parent = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == "traceparent")
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    });
    Record {
        key: (message.topic().to_owned(), message.partition()),
        offset: message.offset(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        trace_parent,
    }
}

/// The projections crate's `LogReplay` port: rebuilds from the log, for `plasma replay` and
/// the admin rebuild endpoint.
#[derive(Debug, Clone)]
pub struct KafkaReplay {
    pub config: LogConfig,
    /// Records per transaction.
    pub batch_size: usize,
}

#[async_trait]
impl plasma_projections::LogReplay for KafkaReplay {
    async fn replay(
        &self,
        read: &ReadStore,
        projection: Arc<dyn Projection>,
        on_progress: OnProgress<'_>,
    ) -> Result<RebuildProgress, ProjectionError> {
        replay_from_log(read, projection, &self.config, self.batch_size, on_progress).await
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
    mut on_progress: impl FnMut(RebuildProgress) + Send,
) -> Result<RebuildProgress, ProjectionError> {
    let name = projection.name();
    drop_shadow(read, projection.as_ref()).await?;

    let topics = topics_of(projection.contexts(), config);
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
    let codec = EventCodec::new(&config.registry_url, &config.topic_prefix)?;
    let mut reader = ReplayReader {
        states: partitions
            .iter()
            .map(|k| (k.clone(), PartitionState::default()))
            .collect(),
        codec,
        consumer,
        progress: RebuildProgress {
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
    while !reached(&reader.states, &initial_goal) {
        let mut tx = read.begin().await?;
        reader.read_batch(&mut tx, projection.as_ref()).await?;
        tx.commit().await?;
        on_progress(reader.progress);
    }

    // The swap: lock the live state (checkpoint row first, the lock order workers use), catch
    // up to it, take over the tables and the offsets.
    let mut tx = read.begin().await?;
    checkpoint::load(&mut tx, name, true).await?;
    let live = checkpoint::lock_partitions(&mut tx, name).await?;
    let live_goal: HashMap<PartitionKey, i64> = live
        .iter()
        .map(|(key, state)| (key.clone(), state.next_offset))
        .collect();
    while !reached(&reader.states, &live_goal) {
        reader.read_batch(&mut tx, projection.as_ref()).await?;
    }
    let handed_over: HashMap<PartitionKey, PartitionState> = reader
        .states
        .iter()
        .map(|(key, state)| {
            let live_safe = live.get(key).map_or(0, |s| s.safe_position);
            let safe_position = state.max_position.max(live_safe);
            (
                key.clone(),
                PartitionState {
                    safe_position,
                    ..*state
                },
            )
        })
        .collect();
    checkpoint::hand_over_partitions(&mut tx, name, &handed_over).await?;
    swap_in_shadow(&mut tx, projection.as_ref()).await?;
    let position = checkpoint::save_model_position(&mut tx, name).await?;
    tx.commit().await?;
    on_progress(reader.progress);
    let tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| Tables::LIVE.name(t))
        .collect();
    read.analyze(&tables).await?;
    tracing::info!(
        projection = name,
        position,
        applied = reader.progress.applied,
        "read model replayed from the log and swapped in"
    );
    Ok(reader.progress)
}

/// A replay's reading state.
struct ReplayReader {
    states: HashMap<PartitionKey, PartitionState>,
    codec: EventCodec,
    consumer: Arc<StreamConsumer>,
    progress: RebuildProgress,
    batch_size: usize,
}

impl ReplayReader {
    /// Reads up to a batch of records and applies the new events into the shadow tables.
    async fn read_batch(
        &mut self,
        tx: &mut plasma_projections::ReadTx,
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
            let event = self.codec.decode(&record.payload).await?;
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
