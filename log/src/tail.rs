//! `plasma tail`: a topic's events as JSON lines, decoded through the schema registry, each
//! with its topic, partition, offset, key and headers under `_log`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use plasma_domain::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use uuid::Uuid;

use crate::admin::{partition_ends, partitions_of, FIRST_OFFSET};
use crate::{EventCodec, LogConfig, LogError, PartitionKey};

/// What to print.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// A topic, or a bounded context's name (its topic).
    pub topic: String,
    /// From the first record instead of only new ones.
    pub from_beginning: bool,
    /// Only this aggregate's events (the record key).
    pub aggregate: Option<Uuid>,
    /// Stop once every partition's end (as of the start) was reached.
    pub exit_at_end: bool,
    /// Stop after this many events.
    pub limit: Option<u64>,
}

/// Prints events to `out` until done or until `stop` turns true; returns how many it printed.
pub async fn tail(
    config: &LogConfig,
    options: &TailOptions,
    out: &mut impl Write,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, LogError> {
    let topic = match Context::ALL.iter().find(|c| c.as_str() == options.topic) {
        Some(context) => context.topic(&config.topic_prefix),
        None => options.topic.clone(),
    };
    let codec = EventCodec::new(&config.registry_url, &config.topic_prefix)?;
    let consumer: StreamConsumer = config
        .consumer(None)
        .create()
        .map_err(LogError::kafka("creating the consumer"))?;
    let consumer = Arc::new(consumer);
    let partitions = partitions_of(consumer.clone(), std::slice::from_ref(&topic)).await?;
    let ends: HashMap<PartitionKey, i64> = partition_ends(consumer.clone(), &partitions)
        .await?
        .into_iter()
        .map(|(key, (_, high))| (key, high))
        .collect();
    let mut assignment = TopicPartitionList::new();
    for (t, p) in &partitions {
        let start = if options.from_beginning {
            Offset::Offset(FIRST_OFFSET)
        } else {
            Offset::End
        };
        assignment
            .add_partition_offset(t, *p, start)
            .map_err(LogError::kafka("assigning partitions"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(LogError::kafka("assigning partitions"))?;
    let key_filter = options.aggregate.map(|id| id.to_string());
    let mut done: HashSet<PartitionKey> = ends
        .iter()
        .filter(|(_, high)| **high == 0 || !options.from_beginning)
        .map(|(k, _)| k.clone())
        .collect();
    let mut printed = 0u64;
    loop {
        if options.exit_at_end && done.len() == partitions.len() {
            break;
        }
        if options.limit.is_some_and(|limit| printed >= limit) {
            break;
        }
        let message = tokio::select! {
            message = consumer.recv() => message.map_err(LogError::kafka("receiving"))?,
            _ = stop.changed() => break,
        };
        let key = (message.topic().to_owned(), message.partition());
        if ends
            .get(&key)
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            done.insert(key);
        }
        if let Some(wanted) = &key_filter {
            if message.key() != Some(wanted.as_bytes()) {
                continue;
            }
        }
        let Some(payload) = message.payload() else {
            continue;
        };
        let mut json = codec.decode_json(payload).await?;
        if let serde_json::Value::Object(fields) = &mut json {
            let mut headers = serde_json::Map::new();
            if let Some(h) = message.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    headers.insert(header.key.to_owned(), value.into_owned().into());
                }
            }
            let log = serde_json::json!({
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "key": message.key().map(String::from_utf8_lossy),
                "headers": headers,
            });
            fields.insert("_log".into(), log);
        }
        writeln!(out, "{json}").map_err(|e| LogError::Output(e.to_string()))?;
        out.flush().map_err(|e| LogError::Output(e.to_string()))?;
        printed += 1;
    }
    Ok(printed)
}
