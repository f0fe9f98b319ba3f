//! The read side: a projection runtime and the read models it maintains.
//!
//! A projection reads events in global order from a [`Subscription`] (the event store in
//! embedded mode; a Kafka consumer later), applies them in batches, and stores its checkpoint in
//! the same transaction as the read-model change, so a crash never applies an event twice or
//! skips one. Read models can be rebuilt from position 0 into shadow tables and swapped in
//! while queries keep being served from the live tables.

mod error;
pub mod log;
pub mod models;
mod projection;
mod queries;
mod read_store;
mod rebuild;
mod runner;
mod subscription;

pub use error::ProjectionError;
pub use log::{replay_from_log, LogWorker, WorkerOptions, WorkerStep};
pub use models::{
    all_projections, projection_named, AgentRunsProjection, BrandStatsProjection, BrandsProjection,
    DocumentsProjection, DraftsProjection, MentionsProjection,
};
pub use projection::{Projection, Tables};
pub use queries::{
    AgentCheckpointView, AgentRunPage, AgentRunView, BrandView, Cursor, DailyStats,
    DocumentEntityView, DocumentPage, DocumentView, DraftFilter, DraftPage, DraftView,
    MentionFilter, MentionPage, MentionView, Page, ReadModels, StatsView,
};
pub use read_store::{ReadStore, ReadStoreConfig, ReadTx};
pub use rebuild::{rebuild, RebuildProgress};
pub use runner::{catch_up, ProjectionRunner, RunnerOptions, Step};
pub use subscription::{Batch, Checkpoint, StoreSubscription, Subscription};
