//! The write side of Plasma Engine: the event store (SQLite embedded, PostgreSQL in server mode)
//! with its outbox, and command handling on top of the domain's aggregates.
//!
//! Readers (projections, audit) use [`EventStore::read_all`], which follows the global position;
//! see the migrations for why that order never has holes a reader could skip.

mod cqrs;
mod error;
mod event;
mod handler;
pub mod log;
pub mod sentiment;
mod store;

pub use cqrs::{AggregateStore, LoadedContext};
pub use error::{CommandError, StoreError};
pub use event::{AppendBatch, CommandContext, EncodedEvent, RecordedEvent, StreamAppend};
pub use handler::{
    BulkIngestError, BulkReceipt, CommandHandler, CommandReceipt, MentionInput, Services,
};
pub use store::{EventStore, LoadedStream, StoreConfig};
