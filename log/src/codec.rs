//! Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary) through the
//! schema registry, with TopicRecordNameStrategy subjects.

use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde_json::Value as Json;

use plasma_commands::RecordedEvent;

use crate::{Catalog, LogError};

/// An event ready to produce.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub topic: String,
    /// The aggregate id: one aggregate's events share a partition, in order.
    pub key: String,
    pub value: Vec<u8>,
}

/// Encodes and decodes events against the registry; schema ids are cached after first use.
pub struct EventCodec {
    catalog: &'static Catalog,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    topic_prefix: String,
}

impl std::fmt::Debug for EventCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCodec")
            .field("topic_prefix", &self.topic_prefix)
            .finish_non_exhaustive()
    }
}

impl EventCodec {
    pub fn new(registry_url: &str, topic_prefix: &str) -> Result<Self, LogError> {
        let settings = || {
            SrSettings::new_builder(registry_url.trim_end_matches('/').to_owned())
                .no_proxy()
                .set_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| LogError::Registry {
                    context: "configuring the client".into(),
                    message: e.to_string(),
                })
        };
        Ok(Self {
            catalog: Catalog::get()?,
            encoder: AvroEncoder::new(settings()?),
            decoder: AvroDecoder::new(settings()?),
            topic_prefix: topic_prefix.to_owned(),
        })
    }

    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    /// The record for `event`, encoded with the schema registered under its subject.
    pub async fn encode(&self, event: &RecordedEvent) -> Result<LogRecord, LogError> {
        let (schema, value) = self.catalog.to_avro(event)?;
        let topic = schema.context.topic(&self.topic_prefix);
        let strategy =
            SubjectNameStrategy::TopicRecordNameStrategy(topic.clone(), schema.full_name.clone());
        let value = self
            .encoder
            .encode_value(value, &strategy)
            .await
            .map_err(|e| LogError::Registry {
                context: format!("encoding {}", schema.subject(&self.topic_prefix)),
                message: e.to_string(),
            })?;
        Ok(LogRecord {
            topic,
            key: event.aggregate_id.to_string(),
            value,
        })
    }

    async fn decode_value(
        &self,
        bytes: &[u8],
    ) -> Result<(String, apache_avro::types::Value), LogError> {
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|e| LogError::Registry {
                context: "decoding a record".into(),
                message: e.to_string(),
            })?;
        let name = decoded.name.ok_or_else(|| LogError::Registry {
            context: "decoding a record".into(),
            message: "the writer schema is not a named record".into(),
        })?;
        Ok((name.name().to_owned(), decoded.value))
    }

    /// The event a record carries.
    pub async fn decode(&self, bytes: &[u8]) -> Result<RecordedEvent, LogError> {
        let (event_type, value) = self.decode_value(bytes).await?;
        Ok(self.catalog.from_avro(&event_type, &value)?)
    }

    /// A record as JSON (envelope and data), as partner-facing tools print it.
    pub async fn decode_json(&self, bytes: &[u8]) -> Result<Json, LogError> {
        let (event_type, value) = self.decode_value(bytes).await?;
        let mut json = self.catalog.to_json(&event_type, &value)?;
        if let Json::Object(fields) = &mut json {
            fields.insert("event_type".into(), Json::String(event_type));
        }
        Ok(json)
    }
}
