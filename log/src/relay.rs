//! The relay: publishes committed events to the context topics in commit order. The events
//! table, gap-free in position order, is its outbox; `published_position` is how far it got.
//!
//! - At-least-once, never reordered per aggregate: events are produced in position order by one
//!   idempotent producer with the gapless guarantee (retries cannot duplicate, reorder or skip
//!   within a partition), and `relay_state.published_position` advances only after every event
//!   up to it was acknowledged by all in-sync replicas. A crash republishes at most the
//!   unacknowledged suffix, again in order; consumers drop what they already applied by position.
//! - The store buffers while the broker is down: commands keep committing and the relay waits
//!   on its in-flight deliveries (no delivery timeout; see `LogConfig::producer`). A failed
//!   delivery ends the relay's term: the producer is purged and replaced and publishing resumes
//!   from the published position.
//! - One leader: a session-level PostgreSQL advisory lock. Other replicas wait on standby and
//!   take over when the leader's session ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use plasma_commands::{EventStore, RecordedEvent, RelayLease};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use tokio::sync::watch;

use crate::metrics::{
    METRIC_COMMIT_TO_ACK_SECONDS, METRIC_LEADER, METRIC_OUTBOX_DEPTH, METRIC_PUBLISHED,
    METRIC_PUBLISH_SECONDS,
};
use crate::{EventCodec, LogConfig, LogError, TracingContext};

/// Tunables of the relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Events read and produced per batch.
    pub batch_events: usize,
    /// Batches produced but not yet acknowledged, so reading overlaps delivery.
    pub max_in_flight: usize,
    /// Pause when every committed event is published.
    pub idle_wait: Duration,
    /// How often a standby replica tries to become leader.
    pub standby_wait: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_events: 2000,
            max_in_flight: 4,
            idle_wait: Duration::from_millis(25),
            standby_wait: Duration::from_secs(1),
        }
    }
}

#[derive(Debug)]
pub struct Relay {
    store: EventStore,
    config: LogConfig,
    codec: Arc<EventCodec>,
    options: RelayOptions,
    /// The last position recorded as published, for the unpublished-events gauge.
    published: AtomicI64,
}

/// A produced batch waiting for its acknowledgements.
struct InFlight {
    last_position: i64,
    last_recorded_at: chrono::DateTime<Utc>,
    /// Each record's delivery, with the index of its topic in `topics`, and the record's
    /// `create` span when its event is traced (ended at the acknowledgement, with the partition).
    deliveries: Vec<(usize, DeliveryFuture, Option<tracing::Span>)>,
    topics: Vec<String>,
    produced_at: Instant,
    /// The batch's `publish` span, from producing to the last acknowledgement.
    _span: tracing::Span,
}

impl Relay {
    /// A relay over the PostgreSQL event store (the only one that feeds the log).
    pub fn new(
        store: &EventStore,
        config: LogConfig,
        options: RelayOptions,
    ) -> Result<Self, LogError> {
        if !store.is_server() {
            return Err(LogError::Config(
                "the relay needs the PostgreSQL event store (server mode)".into(),
            ));
        }
        Ok(Self {
            store: store.clone(),
            codec: Arc::new(EventCodec::new(&config.registry_url, &config.topic_prefix)?),
            config,
            options,
            published: AtomicI64::new(0),
        })
    }

    /// Runs until `shutdown` turns true: waits for leadership, then publishes. Errors while
    /// leading (a lost database session, a fatal producer error) end the term; the relay then
    /// competes for leadership again and resumes from the published position.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let Some(mut session) = self.become_leader(&mut shutdown).await? else {
                return Ok(());
            };
            metrics::gauge!(METRIC_LEADER).set(1.0);
            tracing::info!("relay is the leader");
            let term = self.lead(&mut session, &mut shutdown).await;
            metrics::gauge!(METRIC_LEADER).set(0.0);
            // Closing the session releases the lock for a standby replica.
            drop(session);
            match term {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "relay term ended; competing for leadership again");
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.standby_wait) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// A database session holding the leader lock, or `None` on shutdown.
    async fn become_leader(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<RelayLease>, LogError> {
        let mut announced = false;
        loop {
            match self.store.try_lead_relay().await {
                Ok(Some(session)) => return Ok(Some(session)),
                Ok(None) if !announced => {
                    tracing::info!("another relay is the leader; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot reach the event store; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.standby_wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return Ok(None);
            }
        }
    }

    async fn lead(
        &self,
        session: &mut RelayLease,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), LogError> {
        let producer: FutureProducer<TracingContext> = self
            .config
            .producer()
            .create_with_context(TracingContext)
            .map_err(LogError::kafka("creating the producer"))?;
        let term = self.publish(&producer, session, shutdown).await;
        if term.is_err() {
            // Fail whatever is still queued or in flight now, rather than in the destructor;
            // the next term republishes from the published position.
            producer.purge(PurgeConfig::default().queue().inflight());
        }
        term
    }

    async fn publish(
        &self,
        producer: &FutureProducer<TracingContext>,
        session: &mut RelayLease,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), LogError> {
        let mut after = self.store.published_position().await?;
        self.published.store(after, Ordering::Relaxed);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut last_check = Instant::now();
        loop {
            if last_check.elapsed() >= Duration::from_secs(1) {
                // Still the leader? A lost session means the lock is gone too.
                session.ping().await?;
                let head = self.store.head().await?;
                let published = self.published.load(Ordering::Relaxed);
                metrics::gauge!(METRIC_OUTBOX_DEPTH).set((head - published) as f64);
                last_check = Instant::now();
            }
            if *shutdown.borrow() {
                while let Some(batch) = in_flight.pop_front() {
                    self.complete(batch).await?;
                }
                producer.flush(Duration::from_secs(5)).ok();
                return Ok(());
            }
            let mut produced = false;
            if in_flight.len() < self.options.max_in_flight {
                let limit = i64::try_from(self.options.batch_events).unwrap_or(i64::MAX);
                let events = self.store.read_all(after, limit).await?;
                if let Some(last) = events.last() {
                    after = last.position;
                    let batch = self.produce(producer, &events, &mut in_flight).await?;
                    in_flight.push_back(batch);
                    produced = true;
                }
            }
            if !produced || in_flight.len() >= self.options.max_in_flight {
                match in_flight.pop_front() {
                    Some(batch) => self.complete(batch).await?,
                    None => {
                        tokio::select! {
                            _ = tokio::time::sleep(self.options.idle_wait) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            }
        }
    }

    /// Produces `events` in order. When the producer's queue is full, completes the oldest
    /// in-flight batch to make room (never drops or reorders).
    async fn produce(
        &self,
        producer: &FutureProducer<TracingContext>,
        events: &[RecordedEvent],
        in_flight: &mut VecDeque<InFlight>,
    ) -> Result<InFlight, LogError> {
        let produced_at = Instant::now();
        let mut deliveries = Vec::with_capacity(events.len());
        let mut topics: Vec<String> = Vec::new();
        // Producer spans per OpenTelemetry's messaging conventions: one `publish` per batch,
        // linked to a `create` span per traced event, which continues the event's own trace
        // (the command that appended it) and is what its record's `traceparent` names.
        let span = tracing::info_span!(
            "publish",
            otel.name = "publish",
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.batch.message_count = events.len(),
        );
        for event in events {
            let record = self.codec.encode(event).await?;
            let topic = match topics.iter().position(|t| *t == record.topic) {
                Some(index) => index,
                None => {
                    topics.push(record.topic.clone());
                    topics.len() - 1
                }
            };
            let create = event.trace_parent.as_deref().map(|stored| {
                let create = tracing::info_span!(
                    parent: None,
                    "create",
                    otel.name = format!("create {}", record.topic),
                    otel.kind = "producer",
                    messaging.system = "kafka",
                    messaging.operation.type = "create",
                    messaging.destination.name = %record.topic,
                    messaging.destination.partition.id = tracing::field::Empty,
                    messaging.kafka.offset = tracing::field::Empty,
                    messaging.message.id = %event.event_id,
                    plasma.position = event.position,
                );
                plasma_commands::trace::set_parent(&create, stored);
                if let Some(created) = plasma_commands::trace::traceparent_of(&create) {
                    plasma_commands::trace::add_link(&span, &created);
                }
                create
            });
            // The relay's own span when it is traced; else the context the store recorded.
            let traceparent = create
                .as_ref()
                .and_then(plasma_commands::trace::traceparent_of)
                .or_else(|| event.trace_parent.clone());
            let headers = headers(event, traceparent.as_deref());
            loop {
                // The commit time, so a republished copy carries the original timestamp.
                let message = FutureRecord::to(&record.topic)
                    .key(&record.key)
                    .payload(&record.value)
                    .timestamp(event.recorded_at.timestamp_millis())
                    .headers(headers.clone());
                match producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push((topic, delivery, create));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        match in_flight.pop_front() {
                            Some(oldest) => self.complete(oldest).await?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((error, _)) => return Err(LogError::kafka("producing")(error)),
                }
            }
        }
        let last = events
            .last()
            .ok_or_else(|| LogError::Config("empty batch".into()))?;
        Ok(InFlight {
            last_position: last.position,
            last_recorded_at: last.recorded_at,
            deliveries,
            topics,
            produced_at,
            _span: span,
        })
    }

    /// Waits for every acknowledgement of `batch`, then records it as published.
    async fn complete(&self, batch: InFlight) -> Result<(), LogError> {
        let count = batch.deliveries.len();
        let mut waiting_since = Instant::now();
        // (topic index, partition) → highest acknowledged offset.
        let mut last_offsets: std::collections::BTreeMap<(usize, i32), i64> = Default::default();
        for (topic, delivery, create) in batch.deliveries {
            tokio::pin!(delivery);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut delivery => break outcome,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {
                        tracing::warn!(
                            waiting_s = waiting_since.elapsed().as_secs(),
                            position = batch.last_position,
                            "broker has not acknowledged yet; committed events wait in the store"
                        );
                        waiting_since = Instant::now();
                    }
                }
            };
            match outcome {
                Ok(Ok(delivered)) => {
                    if let Some(create) = create {
                        create.record("messaging.destination.partition.id", delivered.partition);
                        create.record("messaging.kafka.offset", delivered.offset);
                    }
                    let last = last_offsets
                        .entry((topic, delivered.partition))
                        .or_insert(-1);
                    *last = (*last).max(delivered.offset);
                }
                Ok(Err((error, _))) => return Err(LogError::kafka("delivering")(error)),
                Err(_canceled) => {
                    return Err(LogError::Config(
                        "the producer went away mid-delivery".into(),
                    ))
                }
            }
        }
        let last_offsets: Vec<(&str, i32, i64)> = last_offsets
            .into_iter()
            .map(|((topic, partition), offset)| (batch.topics[topic].as_str(), partition, offset))
            .collect();
        self.store
            .record_publication(batch.last_position, &last_offsets)
            .await?;
        self.published.store(batch.last_position, Ordering::Relaxed);
        metrics::counter!(METRIC_PUBLISHED).increment(count as u64);
        metrics::histogram!(METRIC_PUBLISH_SECONDS)
            .record(batch.produced_at.elapsed().as_secs_f64());
        let lag = Utc::now() - batch.last_recorded_at;
        metrics::histogram!(METRIC_COMMIT_TO_ACK_SECONDS)
            .record(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
        Ok(())
    }
}

/// The headers partner consumers can route and deduplicate on without decoding the value.
/// `traceparent` (W3C) names the span that produced the record when the event is traced (the
/// correlation id stays in its own header), and is absent otherwise.
pub fn headers(event: &RecordedEvent, traceparent: Option<&str>) -> OwnedHeaders {
    let event_id = event.event_id.to_string();
    let version = event.event_version.to_string();
    let correlation = event.correlation_id.to_string();
    let causation = event.causation_id.to_string();
    let headers = OwnedHeaders::new_with_capacity(7)
        .insert(Header {
            key: "event_id",
            value: Some(&event_id),
        })
        .insert(Header {
            key: "event_type",
            value: Some(&event.event_type),
        })
        .insert(Header {
            key: "schema_version",
            value: Some(&version),
        })
        .insert(Header {
            key: "tenant_id",
            value: Some(event.tenant.as_str()),
        })
        .insert(Header {
            key: "correlation_id",
            value: Some(&correlation),
        })
        .insert(Header {
            key: "causation_id",
            value: Some(&causation),
        });
    match traceparent {
        Some(traceparent) => headers.insert(Header {
            key: "traceparent",
            value: Some(traceparent),
        }),
        None => headers,
    }
}
