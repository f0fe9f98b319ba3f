//! Command handling: load an aggregate, let it decide, append what it decided, and retry a
//! bounded number of times when a concurrent writer got there first.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use plasma_domain::brand::{
    Brand, BrandInactive, IngestMention, Mention, MentionError, MentionInput, MentionServices,
};
use plasma_domain::ids::BrandId;
use plasma_domain::AggregateId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{AppendBatch, AppendedRange, CommandContext, EncodedEvent, StreamAppend};
use crate::{CommandError, EventStore, StoreError};

/// What a command did: the aggregate, its version afterwards and the position of its last event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReceipt {
    pub aggregate_id: Uuid,
    pub version: i64,
    /// Position of the aggregate's last event (this command's, or an earlier one's if the
    /// command decided nothing needed to change). `None` for an aggregate with no events.
    pub last_position: Option<i64>,
    pub events_appended: u32,
    /// What was asked, so a reused command id with another request is told apart from a retry.
    #[serde(default)]
    pub fingerprint: Option<Uuid>,
    /// True when this is the recorded outcome of an earlier run of the same command id.
    #[serde(skip)]
    pub replayed: bool,
}

/// What a bulk mention ingest did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkReceipt {
    pub brand_id: BrandId,
    pub requested: u32,
    pub ingested: u32,
    /// Mentions that were already there (or repeated within the request): left unchanged.
    pub duplicates: u32,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// What was asked, so a reused command id with another request is told apart from a retry.
    #[serde(default)]
    pub fingerprint: Option<Uuid>,
    #[serde(skip)]
    pub replayed: bool,
}

/// Why a bulk ingest was refused; nothing is written in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkIngestError {
    #[error("the brand does not exist")]
    BrandNotFound,
    #[error("the brand is archived")]
    BrandArchived,
    #[error("mention {index}: {error}")]
    InvalidMention { index: usize, error: MentionError },
}

impl From<BrandInactive> for BulkIngestError {
    fn from(reason: BrandInactive) -> Self {
        match reason {
            BrandInactive::NotFound => Self::BrandNotFound,
            BrandInactive::Archived => Self::BrandArchived,
        }
    }
}

/// The aggregates' outside helpers, one field per aggregate that needs any.
#[derive(Debug, Clone)]
pub struct Services {
    pub mention: MentionServices,
}

/// Runs commands against the event store.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    store: EventStore,
    max_attempts: u32,
}

impl CommandHandler {
    /// Attempts per command before a conflict is reported; each retry reloads and decides again.
    pub const DEFAULT_ATTEMPTS: u32 = 5;

    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            max_attempts: Self::DEFAULT_ATTEMPTS,
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Loads an aggregate by replaying its stream: its state, version and last position.
    pub async fn load<A: Aggregate>(
        &self,
        context: &CommandContext,
        aggregate_id: Uuid,
    ) -> Result<(A, i64, Option<i64>), StoreError> {
        let stream = self
            .store
            .load_stream(&context.tenant, A::TYPE, aggregate_id)
            .await?;
        let mut aggregate = A::default();
        for event in &stream.events {
            aggregate.apply(event.decode()?);
        }
        Ok((aggregate, stream.version(), stream.last_position()))
    }

    /// Executes one command on one aggregate. A command id seen before returns its first
    /// receipt and appends nothing.
    #[tracing::instrument(skip_all, fields(plasma.tenant = %context.tenant, plasma.aggregate.type = A::TYPE, plasma.aggregate.id = %aggregate_id, plasma.command.id = %context.command_id))]
    pub async fn execute<A>(
        &self,
        context: &CommandContext,
        aggregate_id: Uuid,
        command: A::Command,
        services: &A::Services,
    ) -> Result<CommandReceipt, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone + Serialize,
        A::Error: 'static,
    {
        let fingerprint = fingerprint(A::TYPE, aggregate_id, &command);
        if let Some(receipt) = self
            .recorded::<CommandReceipt, _>(context, fingerprint)
            .await?
        {
            return Ok(receipt);
        }
        let command = &command;
        self.append_with_retries(context, fingerprint, move || async move {
            let (mut aggregate, version, last_position) =
                self.load::<A>(context, aggregate_id).await?;
            let sink = EventSink::default();
            aggregate
                .handle(command.clone(), services, &sink)
                .await
                .map_err(CommandError::Domain)?;
            let events = sink
                .collect()
                .await
                .iter()
                .map(EncodedEvent::encode)
                .collect::<Result<Vec<_>, _>>()?;
            let appended = events.len() as u32;
            let streams = vec![StreamAppend {
                aggregate_type: A::TYPE,
                aggregate_id,
                expected_version: version,
                events,
            }];
            let receipt = move |range: Option<AppendedRange>| CommandReceipt {
                aggregate_id,
                version: version + i64::from(appended),
                last_position: range.map(|r| r.last).or(last_position),
                events_appended: appended,
                fingerprint: Some(fingerprint),
                replayed: false,
            };
            Ok((streams, receipt))
        })
        .await
    }

    /// Ingests many mentions for one brand in one transaction. Every mention is validated first:
    /// one bad mention refuses the whole request. Mentions already stored (same tenant, source
    /// and external id) or repeated within the request are counted as duplicates.
    #[tracing::instrument(skip_all, fields(plasma.tenant = %context.tenant, plasma.brand.id = %brand_id, plasma.mentions = mentions.len()))]
    pub async fn ingest_mentions(
        &self,
        context: &CommandContext,
        brand_id: BrandId,
        mentions: Vec<MentionInput>,
        at: DateTime<Utc>,
        services: &MentionServices,
    ) -> Result<BulkReceipt, CommandError<BulkIngestError>> {
        let fingerprint = fingerprint(Mention::TYPE, brand_id.as_uuid(), &mentions);
        if let Some(receipt) = self
            .recorded::<BulkReceipt, _>(context, fingerprint)
            .await?
        {
            return Ok(receipt);
        }
        let (brand, _, _) = self.load::<Brand>(context, brand_id.as_uuid()).await?;
        brand
            .ensure_active()
            .map_err(|reason| CommandError::Domain(reason.into()))?;
        let requested = mentions.len() as u32;
        let commands: Vec<IngestMention> = mentions
            .into_iter()
            .map(|mention| IngestMention {
                brand_id,
                mention,
                competitors: brand.competitors.clone(),
                at,
            })
            .collect();
        let ids: Vec<Uuid> = commands
            .iter()
            .map(|c| c.mention_id(&context.tenant).as_uuid())
            .collect();
        // Validate and score every mention on all cores while the store looks up which already
        // exist. One invalid mention refuses the request before anything is written.
        let scorer = services.scorer.clone();
        let decide =
            tokio::task::spawn_blocking(move || decide_in_parallel(commands, scorer.as_ref()));
        let lookup = self
            .store
            .existing_streams(&context.tenant, Mention::TYPE, &ids);
        let (decided, existing) = tokio::join!(decide, lookup);
        let events = decided
            .map_err(|err| StoreError::corrupt("mention decisions")(Box::new(err)))?
            .map_err(|err| match err {
                Decision::Invalid { index, error } => {
                    CommandError::Domain(BulkIngestError::InvalidMention { index, error })
                }
                Decision::Store(err) => CommandError::Store(err),
            })?;
        // The first attempt uses the lookup made while scoring; a retry (a concurrent ingest
        // stored some of these mentions first) looks again.
        let mut existing = Some(existing?);
        let (ids, events) = (&ids, &events);
        self.append_with_retries(context, fingerprint, move || {
            let found = existing.take();
            async move {
                let existing = match found {
                    Some(found) => found,
                    None => {
                        self.store
                            .existing_streams(&context.tenant, Mention::TYPE, ids)
                            .await?
                    }
                };
                let mut seen = HashSet::with_capacity(ids.len());
                let streams: Vec<StreamAppend> = ids
                    .iter()
                    .zip(events)
                    .filter(|(id, _)| !existing.contains(*id) && seen.insert(**id))
                    .map(|(id, event)| StreamAppend {
                        aggregate_type: Mention::TYPE,
                        aggregate_id: *id,
                        expected_version: 0,
                        events: vec![event.clone()],
                    })
                    .collect();
                let ingested = streams.len() as u32;
                let receipt = move |range: Option<AppendedRange>| BulkReceipt {
                    brand_id,
                    requested,
                    ingested,
                    duplicates: requested - ingested,
                    first_position: range.map(|r| r.first),
                    last_position: range.map(|r| r.last),
                    fingerprint: Some(fingerprint),
                    replayed: false,
                };
                Ok((streams, receipt))
            }
        })
        .await
    }

    /// Appends what `decide` decides, up to `max_attempts` times: when a concurrent writer
    /// appended first, the store refuses the whole batch and `decide` runs again (reloading,
    /// deciding anew) after a short backoff. `decide` answers with the streams to append and
    /// the receipt to record with them, given where the events landed. When a concurrent retry
    /// of the same command id recorded first, its receipt is the answer.
    async fn append_with_retries<R, E, Decide, Decided, Receipt>(
        &self,
        context: &CommandContext,
        fingerprint: Uuid,
        mut decide: Decide,
    ) -> Result<R, CommandError<E>>
    where
        R: Replayable,
        E: std::error::Error + 'static,
        Decide: FnMut() -> Decided,
        Decided: Future<Output = Result<(Vec<StreamAppend>, Receipt), CommandError<E>>>,
        Receipt: Fn(Option<AppendedRange>) -> R + Send + Sync + 'static,
    {
        for attempt in 1..=self.max_attempts {
            let (streams, receipt) = match decide().await {
                Ok(decided) => decided,
                // A concurrent run of the same command id may have recorded first, and its
                // events are why this run was refused (registering what it just registered):
                // the first run's receipt is the answer, as for any retry.
                Err(err @ CommandError::Domain(_)) => {
                    return match self.recorded(context, fingerprint).await? {
                        Some(receipt) => Ok(receipt),
                        None => Err(err),
                    }
                }
                Err(err) => return Err(err),
            };
            let batch = AppendBatch { context, streams };
            match self.store.append(batch, receipt).await {
                Ok(receipt) => return Ok(receipt),
                Err(StoreError::Conflict) => {
                    tracing::debug!(
                        attempt,
                        "a concurrent writer appended first; deciding again"
                    );
                    backoff(attempt).await;
                }
                Err(StoreError::DuplicateCommand) => {
                    return self
                        .recorded(context, fingerprint)
                        .await?
                        .ok_or(CommandError::Store(StoreError::DuplicateCommand));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(CommandError::Conflict {
            attempts: self.max_attempts,
        })
    }

    /// The receipt of an earlier run of this command id. A receipt of another kind, or for a
    /// request with another fingerprint, means the id was reused for a different request.
    async fn recorded<R: Replayable, E: std::error::Error + 'static>(
        &self,
        context: &CommandContext,
        fingerprint: Uuid,
    ) -> Result<Option<R>, CommandError<E>> {
        let Some(raw) = self
            .store
            .receipt::<serde_json::Value>(&context.tenant, context.command_id)
            .await?
        else {
            return Ok(None);
        };
        let receipt: R =
            serde_json::from_value(raw).map_err(|_| CommandError::IdempotencyKeyReused)?;
        match receipt.fingerprint() {
            Some(recorded) if recorded != fingerprint => Err(CommandError::IdempotencyKeyReused),
            _ => Ok(Some(receipt.replayed())),
        }
    }
}

/// Identifies a request: the aggregate, and the command without the time the gateway stamped
/// on it (`at`), so that a retry of the same request has the same fingerprint.
fn fingerprint<C: Serialize>(aggregate_type: &str, aggregate_id: Uuid, command: &C) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x2f6e_83c1_5d0a_4b7e_9c41_7a2b_d3e5_f601);
    let mut value = serde_json::to_value(command).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(outer) = &mut value {
        outer.remove("at");
        // Enum commands are {"Variant": {...fields}}: their `at` is one level down.
        for inner in outer.values_mut() {
            if let serde_json::Value::Object(fields) = inner {
                fields.remove("at");
            }
        }
    }
    let key = format!("{aggregate_type}/{aggregate_id}/{value}");
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

trait Replayable: Serialize + serde::de::DeserializeOwned {
    fn replayed(self) -> Self;
    fn fingerprint(&self) -> Option<Uuid>;
}

impl Replayable for CommandReceipt {
    fn fingerprint(&self) -> Option<Uuid> {
        self.fingerprint
    }

    fn replayed(self) -> Self {
        Self {
            replayed: true,
            ..self
        }
    }
}

impl Replayable for BulkReceipt {
    fn fingerprint(&self) -> Option<Uuid> {
        self.fingerprint
    }

    fn replayed(self) -> Self {
        Self {
            replayed: true,
            ..self
        }
    }
}

/// Why a mention could not be decided.
enum Decision {
    Invalid { index: usize, error: MentionError },
    Store(StoreError),
}

/// Validates, scores and encodes every mention, on every core: sentiment scoring is the
/// costliest part of an ingest, and each mention is independent of the others.
fn decide_in_parallel(
    commands: Vec<IngestMention>,
    scorer: &dyn plasma_domain::brand::SentimentScorer,
) -> Result<Vec<EncodedEvent>, Decision> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = commands.len().div_ceil(threads).max(1);
    let decide = |offset: usize, part: &[IngestMention]| -> Result<Vec<EncodedEvent>, Decision> {
        part.iter()
            .enumerate()
            .map(
                |(i, command)| match Mention::default().decide_ingest(command.clone(), scorer) {
                    Ok(Some(event)) => EncodedEvent::encode(&event).map_err(Decision::Store),
                    Ok(None) => Err(Decision::Store(StoreError::Config(
                        "a new mention decided nothing".into(),
                    ))),
                    Err(error) => Err(Decision::Invalid {
                        index: offset + i,
                        error,
                    }),
                },
            )
            .collect()
    };
    let parts: Vec<Result<Vec<EncodedEvent>, Decision>> = std::thread::scope(|scope| {
        let handles: Vec<_> = commands
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || decide(n * chunk, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Decision::Store(StoreError::Config(
                        "a scoring thread panicked".into(),
                    )))
                })
            })
            .collect()
    });
    // Parts are in order, so the first error found is the lowest index.
    let mut events = Vec::with_capacity(commands.len());
    for part in parts {
        events.extend(part?);
    }
    Ok(events)
}

/// A short, growing pause so that retrying writers spread out instead of colliding again.
async fn backoff(attempt: u32) {
    let jitter = u64::from(Uuid::new_v4().as_u128() as u8 % 8);
    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5 + jitter)).await;
}
