//! What the agent worker's tools reach outside through: HTTP to allow-listed hosts, and the
//! publisher drafts go out by. Adapters implement them.

use async_trait::async_trait;
use serde_json::Value;

use crate::content::Channel;
use crate::ids::{BrandId, DraftId};
use crate::TenantId;

/// An HTTP request a workflow's `http.request` step sends.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Sent as `Idempotency-Key`: the same for every attempt of one step, so the receiver acts
    /// once.
    pub idempotency_key: String,
}

/// The answer: the status and the body (JSON when it parses, else its text).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundResponse {
    pub status: u16,
    pub body: Value,
}

/// Why a request did not get an answer; a refusal is final, a failure may pass on retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait OutboundHttp: Send + Sync + std::fmt::Debug {
    async fn send(&self, request: &OutboundRequest) -> Result<OutboundResponse, OutboundError>;
}

/// A draft to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    pub tenant: TenantId,
    pub draft_id: DraftId,
    pub brand_id: BrandId,
    pub channel: Channel,
    pub text: String,
    /// The same for every attempt at publishing this draft in this run.
    pub idempotency_key: String,
}

/// Why publishing failed; `transient` failures are retried, the others dead-letter the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    pub transient: bool,
    pub message: String,
}

/// Where published drafts go.
#[async_trait]
pub trait DraftPublisher: Send + Sync + std::fmt::Debug {
    /// Publishes the draft; answers where it can be read, if the channel says.
    async fn publish(&self, request: &PublishRequest) -> Result<Option<String>, PublishError>;
}
