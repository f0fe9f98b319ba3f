//! The event store behind cqrs-es's own `EventStore` trait, so a stock `CqrsFramework` (and its
//! queries) can run on our tables with our metadata.

use std::collections::HashMap;
use std::marker::PhantomData;

use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope};
use uuid::Uuid;

use crate::event::{AppendBatch, CommandContext, EncodedEvent, RecordedEvent, StreamAppend};
use crate::{EventStore, StoreError};

/// One tenant's view of one aggregate type, for one command context.
#[derive(Debug)]
pub struct AggregateStore<A> {
    store: EventStore,
    context: CommandContext,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> AggregateStore<A> {
    pub fn new(store: EventStore, context: CommandContext) -> Self {
        Self {
            store,
            context,
            _aggregate: PhantomData,
        }
    }
}

/// An aggregate loaded for a command, with the version its new events must follow.
#[derive(Debug)]
pub struct LoadedContext<A> {
    aggregate_id: Uuid,
    aggregate: A,
    version: i64,
}

impl<A: Aggregate> AggregateContext<A> for LoadedContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

fn parse_id<E: std::error::Error>(aggregate_id: &str) -> Result<Uuid, AggregateError<E>> {
    Uuid::parse_str(aggregate_id).map_err(|err| AggregateError::UnexpectedError(Box::new(err)))
}

fn store_error<E: std::error::Error>(err: StoreError) -> AggregateError<E> {
    match err {
        StoreError::Conflict => AggregateError::AggregateConflict,
        StoreError::Database { .. } => AggregateError::DatabaseConnectionError(Box::new(err)),
        StoreError::Corrupt { .. } => AggregateError::DeserializationError(Box::new(err)),
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

fn envelope<A: Aggregate>(event: RecordedEvent) -> Result<EventEnvelope<A>, StoreError> {
    let payload = event.decode()?;
    let metadata = HashMap::from([
        ("position".to_owned(), event.position.to_string()),
        ("event_id".to_owned(), event.event_id.to_string()),
        ("tenant".to_owned(), event.tenant.to_string()),
        (
            "correlation_id".to_owned(),
            event.correlation_id.to_string(),
        ),
        ("causation_id".to_owned(), event.causation_id.to_string()),
        ("command_id".to_owned(), event.command_id.to_string()),
        ("recorded_at".to_owned(), event.recorded_at.to_rfc3339()),
    ]);
    Ok(EventEnvelope {
        aggregate_id: event.aggregate_id.to_string(),
        sequence: usize::try_from(event.sequence).unwrap_or_default(),
        payload,
        metadata,
    })
}

impl<A: Aggregate> cqrs_es::EventStore<A> for AggregateStore<A> {
    type AC = LoadedContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let id = parse_id(aggregate_id)?;
        let stream = self
            .store
            .load_stream(&self.context.tenant, A::TYPE, id)
            .await
            .map_err(store_error)?;
        stream
            .events
            .into_iter()
            .map(|e| envelope(e).map_err(store_error))
            .collect()
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<LoadedContext<A>, AggregateError<A::Error>> {
        let id = parse_id(aggregate_id)?;
        let stream = self
            .store
            .load_stream(&self.context.tenant, A::TYPE, id)
            .await
            .map_err(store_error)?;
        let version = stream.version();
        let mut aggregate = A::default();
        for event in &stream.events {
            aggregate.apply(event.decode().map_err(store_error)?);
        }
        Ok(LoadedContext {
            aggregate_id: id,
            aggregate,
            version,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: LoadedContext<A>,
        _metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let encoded = events
            .iter()
            .map(EncodedEvent::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        let batch = AppendBatch {
            context: &self.context,
            streams: vec![StreamAppend {
                aggregate_type: A::TYPE,
                aggregate_id: context.aggregate_id,
                expected_version: context.version,
                events: encoded,
            }],
        };
        self.store
            .append(batch, |range| range)
            .await
            .map_err(store_error)?;
        let appended = self
            .store
            .load_stream(&self.context.tenant, A::TYPE, context.aggregate_id)
            .await
            .map_err(store_error)?;
        appended
            .events
            .into_iter()
            .filter(|e| e.sequence > context.version)
            .map(|e| envelope(e).map_err(store_error))
            .collect()
    }
}
