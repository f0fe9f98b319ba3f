//! The write side of Plasma Engine: the event store (SQLite embedded, PostgreSQL in server mode)
//! and command handling on top of the domain's aggregates. In server mode the store also keeps
//! what the relay needs (its leadership, its published position; see [`Publication`]): no
//! other crate writes SQL against the store's tables.
//!
//! Readers (projections, audit) use [`EventStore::read_all`], which follows the global position;
//! see the migrations for why that order never has holes a reader could skip.

mod error;
mod event;
mod handler;
mod store;
pub mod trace;

pub use error::{CommandError, StoreError};
pub use event::{AppendBatch, CommandContext, EncodedEvent, RecordedEvent, StreamAppend};
pub use handler::{BulkIngestError, BulkReceipt, CommandHandler, CommandReceipt, Services};
/// A bulk ingest takes mentions as the domain defines them.
pub use plasma_domain::brand::MentionInput;
pub use store::{EventStore, LoadedStream, PartitionKey, Publication, RelayLease, StoreConfig};
