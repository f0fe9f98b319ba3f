//! Where a projection's events come from. The runtime only sees [`Subscription`]: the event
//! store in embedded mode ([`StoreSubscription`]), a Kafka consumer group in server mode (the
//! log crate's `LogSubscription`).

use std::future::Future;

use plasma_commands::{EventStore, RecordedEvent};

use crate::checkpoint::{Checkpoint, Progress};
use crate::{ProjectionError, ReadStore};

/// Events to apply together, and where they leave the subscription (recorded in the same
/// transaction, with a compare-and-set).
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<RecordedEvent>,
    pub progress: Progress,
    /// Records taken off the source, duplicates included (for a log: ≥ `events.len()`).
    pub handled: usize,
}

impl Batch {
    /// Nothing to apply and nothing to record: the subscription is caught up.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.progress == Progress::None
    }

    pub fn empty() -> Self {
        Self {
            events: Vec::new(),
            progress: Progress::None,
            handled: 0,
        }
    }
}

/// A source of events in order, resumable from what the read store recorded.
///
/// The runner may ask for the next batch while the previous one is still being committed (it
/// reads ahead); a subscription continues from the last batch it handed out, and goes back to
/// the stored state on [`Subscription::resync`] when a commit found it moved.
pub trait Subscription: Send + 'static {
    /// The next batch of at most `max` events; [`Batch::is_empty`] when caught up.
    fn next_batch(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Batch, ProjectionError>> + Send;

    /// Continues from `checkpoint`, the projection's stored state (on start).
    fn seek(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// `batch` is committed.
    fn committed(
        &mut self,
        batch: &Batch,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// The stored state moved under `batch` (another runner, a rebalance, a rebuild swap):
    /// nothing of it, nor of any batch read after it, was applied. Reload and continue from
    /// the stored state; `stored` is the projection's checkpoint as found.
    fn resync(
        &mut self,
        read: &ReadStore,
        stored: &Checkpoint,
        batch: &Batch,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Whether `next_batch` already waits a while for events when there are none (a consumer's
    /// poll); the runner pauses itself otherwise.
    fn waits_when_idle(&self) -> bool {
        false
    }
}

/// Reads straight from the event store, in global position order.
#[derive(Debug, Clone)]
pub struct StoreSubscription {
    store: EventStore,
    /// The position of the last event handed out.
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
        let Some(last) = events.last() else {
            return Ok(Batch::empty());
        };
        let from = self.after;
        self.after = last.position;
        Ok(Batch {
            handled: events.len(),
            events,
            progress: Progress::Position {
                from,
                to: self.after,
            },
        })
    }

    async fn seek(&mut self, checkpoint: &Checkpoint) -> Result<(), ProjectionError> {
        self.after = checkpoint.position;
        Ok(())
    }

    async fn committed(&mut self, _batch: &Batch) -> Result<(), ProjectionError> {
        Ok(())
    }

    async fn resync(
        &mut self,
        _read: &ReadStore,
        stored: &Checkpoint,
        _batch: &Batch,
    ) -> Result<(), ProjectionError> {
        self.seek(stored).await
    }
}
