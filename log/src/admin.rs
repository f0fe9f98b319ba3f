//! Topic administration and the broker's view of partitions: what `plasma topics create`, the
//! subscriptions, replays and `tail` ask of the broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{LogConfig, LogError, PartitionKey, METADATA_TIMEOUT};

/// Where a partition starts when read from the beginning. Always an explicit offset, never
/// "beginning": tansu 0.6.0 answers the earliest-offset lookup with the first offset written
/// since it last restarted, which would silently skip the history (seen in the fault tests).
/// Event topics never delete, and were the start ever trimmed, `auto.offset.reset=earliest`
/// applies.
pub const FIRST_OFFSET: i64 = 0;

/// What creating one topic came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCreated {
    Created(String),
    Exists(String),
    Failed { topic: String, reason: String },
}

/// Creates every context's topic that does not exist yet: unlimited retention, delete policy.
pub async fn create_topics(
    config: &LogConfig,
    partitions: i32,
    replication: i32,
) -> Result<Vec<TopicCreated>, LogError> {
    let admin: AdminClient<DefaultClientContext> = config
        .consumer(None)
        .create()
        .map_err(LogError::kafka("creating the admin client"))?;
    let names = config.topics();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "delete")
                .set("retention.ms", "-1")
                .set("retention.bytes", "-1")
        })
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .map_err(LogError::kafka("creating topics"))?;
    Ok(results
        .into_iter()
        .map(|result| match result {
            Ok(topic) => TopicCreated::Created(topic),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => TopicCreated::Exists(topic),
            Err((topic, code)) => TopicCreated::Failed {
                topic,
                reason: code.to_string(),
            },
        })
        .collect())
}

/// Each partition's (low, high) watermarks, asked of the broker.
pub async fn partition_ends<C, X>(
    consumer: Arc<C>,
    partitions: &[PartitionKey],
) -> Result<HashMap<PartitionKey, (i64, i64)>, LogError>
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
    .map_err(|e| LogError::Task(format!("the watermark task failed: {e}")))?
    .map_err(LogError::kafka("reading partition ends"))
}

/// The partitions of `topics`, from the broker's metadata.
pub async fn partitions_of<C, X>(
    consumer: Arc<C>,
    topics: &[String],
) -> Result<Vec<PartitionKey>, LogError>
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map_err(LogError::kafka("reading topic metadata"))?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none() && !t.partitions().is_empty());
            let Some(found) = found else {
                return Err(LogError::Config(format!(
                    "topic {topic} does not exist; create it first (`plasma topics create`)"
                )));
            };
            out.extend(found.partitions().iter().map(|p| (topic.clone(), p.id())));
        }
        Ok(out)
    })
    .await
    .map_err(|e| LogError::Task(format!("the metadata task failed: {e}")))?
}

/// Answers whether the broker and the schema registry can be reached right now, for a
/// process's readiness probe. One metadata client, kept for the process's life.
pub struct LogProbe {
    consumer: Arc<rdkafka::consumer::BaseConsumer>,
    registry: crate::RegistryAdmin,
    topics: Vec<String>,
}

impl std::fmt::Debug for LogProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogProbe")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// How long one readiness check of the broker or the registry may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

impl LogProbe {
    pub fn new(config: &LogConfig) -> Result<Self, LogError> {
        let consumer = config
            .consumer(None)
            .create()
            .map_err(LogError::kafka("creating the readiness client"))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            registry: crate::RegistryAdmin::new(&config.registry_url)?,
            topics: config.topics(),
        })
    }

    /// The broker answers a metadata request listing the event topics.
    pub async fn broker(&self) -> Result<(), String> {
        let consumer = self.consumer.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(None, PROBE_TIMEOUT)
                .map_err(|e| format!("the broker does not answer: {e}"))?;
            let missing: Vec<&String> = topics
                .iter()
                .filter(|t| !metadata.topics().iter().any(|m| m.name() == t.as_str()))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("topics missing on the broker: {missing:?}"))
            }
        })
        .await
        .map_err(|e| format!("the broker check failed: {e}"))?
    }

    /// The schema registry answers.
    pub async fn registry(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.registry.subjects()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the schema registry does not answer: {e}")),
            Err(_) => Err("the schema registry did not answer in time".to_owned()),
        }
    }
}
