//! The read side: a projection runtime and the read models it maintains.
//!
//! A projection reads events in global order from a [`Subscription`] (the event store in
//! embedded mode; a Kafka consumer group in server mode, implemented by the log crate), applies
//! them in batches, and records its [`checkpoint`] in the same transaction as the read-model
//! change, so a crash never applies an event twice or skips one. Read models can be rebuilt
//! into shadow tables and swapped in while queries keep being served from the live tables.

pub mod checkpoint;
mod error;
pub mod metrics;
pub mod models;
mod projection;
mod read_models;
mod read_store;
mod rebuild;
mod runner;
mod subscription;

pub use checkpoint::{Checkpoint, PartitionKey, PartitionState};
pub use error::ProjectionError;
pub use models::activity::{
    AuthorsView, Interval, Ranked, TimelinePoint, TrendingTerm, VoicePoint,
};
pub use models::agent_runs::{AgentCheckpointView, AgentRunView};
pub use models::alerts::{
    AlertDetailView, AlertFilter, AlertView, DeliveryAttemptView, DeliveryView,
};
pub use models::brands::BrandView;
pub use models::chunks::{fuse_by_rank, fuse_by_weighted_rank, ChunkFilter, ChunkHit};
pub use models::communities::{
    Citation, CommunityEntity, CommunityRelation, CommunityReport, CommunityRun, CommunityView,
    ComputedCommunities,
};
pub use models::documents::{DocumentEntityView, DocumentView};
pub use models::drafts::{DraftFilter, DraftView};
pub use models::graph::{
    EdgeView, EntityRanking, EntityView, GraphSnapshot, NeighbourView, NeighbourhoodView, PathStep,
    PathView,
};
pub use models::mentions::{MentionFilter, MentionView};
pub use models::stats::{DailyStats, StatsView};
pub use models::workflows::{WorkflowVersionView, WorkflowView};
pub use models::{
    all_projections, projection_named, AgentRunsProjection, AlertsProjection,
    BrandActivityProjection, BrandStatsProjection, BrandsProjection, ChunksProjection,
    DocumentsProjection, DraftsProjection, MentionsProjection, WorkflowsProjection,
};
pub use projection::{Projection, Tables};
pub use read_models::{Cursor, Page, PageRequest, ReadModels};
pub use read_store::{ReadStore, ReadStoreConfig, ReadTx};
pub use rebuild::{
    drop_shadow, rebuild, swap_in_shadow, LogReplay, OnProgress, RebuildProgress, RebuildSource,
    Rebuilder,
};
pub use runner::{
    catch_up, create_read_models, run_steps, ProjectionRunner, RunnerOptions, Step, Steps,
};
pub use subscription::{Batch, StoreSubscription, Subscription};
