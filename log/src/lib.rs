//! The Kafka-compatible log, and everything that talks to it: the event contract (Avro through
//! a schema registry) and its codec, the relay that publishes committed events, the log-fed
//! projection subscription (a consumer group) and replay, topic administration, `tail`, and the
//! client settings they share. No other crate links rdkafka but the binary and the benchmarks.

pub mod admin;
pub mod codec;
pub mod contract;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod subscription;
pub mod tail;

use std::time::Duration;

use rdkafka::ClientConfig;

pub use codec::{EventCodec, LogRecord};
pub use contract::{Catalog, Context, ContractError, EventSchema};
pub use plasma_projections::PartitionKey;
pub use registry::{Registered, RegistryAdmin};
pub use relay::{Relay, RelayOptions};
pub use subscription::{replay_from_log, KafkaReplay, LogSubscription, SubscriptionOptions};

/// Where the log and its registry are, shared by every process that talks to them.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The schema registry's base URL.
    pub registry_url: String,
    /// Topics are `{prefix}.{context}.events`.
    pub topic_prefix: String,
}

impl LogConfig {
    /// Every context's topic.
    pub fn topics(&self) -> Vec<String> {
        Context::ALL
            .iter()
            .map(|c| c.topic(&self.topic_prefix))
            .collect()
    }

    /// The idempotent producer the relay uses: acks from every in-sync replica, retries that
    /// cannot duplicate, reorder or skip within a partition (the gapless guarantee makes any
    /// failure that could leave a gap fatal, and the relay then republishes from its published
    /// position), and no delivery timeout: a timed-out record is the one failure the gapless
    /// guarantee does not cover (later records of its partition could be written before it is
    /// republished, and consumers deduplicating by position would drop it). So a broker outage
    /// only delays delivery while unpublished events accumulate in the store.
    pub fn producer(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            // A failed batch must never be followed by later records of its partition (an
            // epoch bump would otherwise let them through): fail the producer instead, and the
            // relay republishes from its published position, in order.
            .set("enable.gapless.guarantee", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("compression.type", "lz4")
            // Java's default partitioner, so partner tools agree on where a key lives.
            .set("partitioner", "murmur2_random")
            .set("reconnect.backoff.max.ms", "2000");
        config
    }

    /// A consumer; with a group for workers, without one for replays and tails.
    pub fn consumer(&self, group: Option<&str>) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            // Metadata refreshes drive rebalances when partitions (re)appear, e.g. after a
            // broker restart: don't wait librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("reconnect.backoff.max.ms", "2000");
        match group {
            Some(group) => config
                .set("group.id", group)
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("partition.assignment.strategy", "range"),
            // librdkafka wants a group id even for manual assignment; nothing is ever committed.
            None => config.set("group.id", "plasma-unmanaged"),
        };
        config
    }
}

/// What went wrong talking to the log or the registry.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error("schema registry: {context}: {message}")]
    Registry { context: String, message: String },
    #[error("kafka: {context}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Store(#[from] plasma_commands::StoreError),
    #[error("{0}")]
    Config(String),
    /// A helper task (a blocking metadata call) failed.
    #[error("{0}")]
    Task(String),
    #[error("writing the output: {0}")]
    Output(String),
}

/// A Kafka error ends a projection runner, whose supervisor starts it again.
impl From<LogError> for plasma_projections::ProjectionError {
    fn from(error: LogError) -> Self {
        Self::Log(Box::new(error))
    }
}

impl LogError {
    pub fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| Self::Kafka { context, source }
    }
}

/// Routes librdkafka's own log lines and client errors into `tracing`. Broker disconnects are
/// routine for a relay or worker (they retry), so they are warnings, not errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingContext;

impl rdkafka::ClientContext for TracingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        trace_librdkafka(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason);
    }
}

/// [`TracingContext`]'s logging, for other contexts to reuse.
pub fn trace_librdkafka(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
            tracing::warn!(target: "librdkafka", fac, message)
        }
        L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, message),
        L::Debug => tracing::debug!(target: "librdkafka", fac, message),
    }
}

/// How long a metadata or watermark request may take before it counts as failed.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
