//! Where a projection's events come from. The runtime only sees [`Subscription`], so the same
//! projection can be fed from the event store (embedded) or a Kafka consumer (server).

use std::collections::BTreeMap;
use std::future::Future;

use plasma_commands::{EventStore, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::ProjectionError;

/// How far a projection has got. `position` is the global position of the last applied event
/// (what `min_position` waits and lag metrics use); `offsets` is for log-fed subscriptions
/// (topic/partition → next offset) and stays empty when fed from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub offsets: BTreeMap<String, i64>,
}

/// Events to apply together, and the checkpoint to store once they are applied.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<RecordedEvent>,
    pub checkpoint: Checkpoint,
}

/// A source of events in order, resumable from a checkpoint.
pub trait Subscription: Send {
    /// The next batch of at most `max` events after the current checkpoint; empty when caught up.
    fn next_batch(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Batch, ProjectionError>> + Send;

    /// Continues from `checkpoint` (on start, and when another process moved the checkpoint).
    fn seek(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// Reads straight from the event store, in global position order.
#[derive(Debug, Clone)]
pub struct StoreSubscription {
    store: EventStore,
    after: i64,
}

impl StoreSubscription {
    pub fn new(store: EventStore) -> Self {
        Self { store, after: 0 }
    }
}

impl Subscription for StoreSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Batch, ProjectionError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let events = self.store.read_all(self.after, limit).await?;
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        Ok(Batch {
            events,
            checkpoint: Checkpoint {
                position: self.after,
                offsets: BTreeMap::new(),
            },
        })
    }

    async fn seek(&mut self, checkpoint: &Checkpoint) -> Result<(), ProjectionError> {
        self.after = checkpoint.position;
        Ok(())
    }
}
