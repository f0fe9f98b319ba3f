use chrono::{DateTime, Utc};
use plasma_domain::ids::{CommandId, CorrelationId};
use plasma_domain::TenantId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who asked for a command and why: recorded on every event it appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    pub tenant: TenantId,
    pub command_id: CommandId,
    pub correlation_id: CorrelationId,
    /// What caused the command: the command itself for a user request, an event id when an
    /// event triggered it.
    pub causation_id: Uuid,
    /// The W3C `traceparent` of the span the command was issued in, recorded with its events so
    /// the relay and the workers continue that trace; `None` when not traced.
    pub trace_parent: Option<String>,
}

impl CommandContext {
    /// A user-initiated command: it is its own cause, and starts a correlation unless given one.
    pub fn new(
        tenant: TenantId,
        command_id: CommandId,
        correlation_id: Option<CorrelationId>,
    ) -> Self {
        let correlation_id = correlation_id.unwrap_or_else(|| {
            CorrelationId::from_uuid(plasma_domain::AggregateId::as_uuid(&command_id))
        });
        Self {
            tenant,
            command_id,
            correlation_id,
            causation_id: plasma_domain::AggregateId::as_uuid(&command_id),
            trace_parent: crate::trace::current_traceparent(),
        }
    }
}

/// An event ready to be appended: its stable name, schema version and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub event_type: String,
    pub event_version: i32,
    pub payload: String,
}

impl EncodedEvent {
    pub fn encode<E: cqrs_es::DomainEvent>(event: &E) -> Result<Self, crate::StoreError> {
        let event_version = event
            .event_version()
            .parse()
            .map_err(|err| crate::StoreError::corrupt("event version")(Box::new(err) as Box<_>))?;
        let payload = serde_json::to_string(event)
            .map_err(|err| crate::StoreError::corrupt("event payload")(Box::new(err)))?;
        Ok(Self {
            event_type: event.event_type(),
            event_version,
            payload,
        })
    }
}

/// New events for one stream, expected to follow `expected_version` (0 for a new stream).
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    pub expected_version: i64,
    pub events: Vec<EncodedEvent>,
}

/// Everything one command appends, in one transaction, with the receipt a retry will get back.
#[derive(Debug)]
pub struct AppendBatch<'a> {
    pub context: &'a CommandContext,
    pub streams: Vec<StreamAppend>,
}

impl AppendBatch<'_> {
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
}

/// Positions handed out by an append: `first..=last`, or none when nothing was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendedRange {
    pub first: i64,
    pub last: i64,
}

/// An event as the store recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub tenant: TenantId,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: i32,
    /// The event as JSON; decode with [`RecordedEvent::decode`].
    pub payload: String,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub command_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    /// The trace the event belongs to (W3C `traceparent`): the command's span when the store
    /// recorded it; a consumer reading it from the log sees the relay's span instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

impl RecordedEvent {
    /// Decodes the payload into the aggregate's event type.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, crate::StoreError> {
        serde_json::from_str(&self.payload)
            .map_err(|err| crate::StoreError::corrupt("event payload")(Box::new(err)))
    }
}
