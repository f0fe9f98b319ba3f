//! Running commands from handlers: context from the caller and headers, idempotency-key
//! checks, metrics, and the answer every command gives.
//!
//! A handler builds the domain command (stamping `at` with [`AppState::now`]) and calls
//! [`AppState::execute`] with the aggregate's typed id (a new one from
//! [`CommandMeta::new_aggregate_id`](crate::extract::CommandMeta::new_aggregate_id), or the
//! one the request names); it answers with [`Accepted`]:
//!
//! ```ignore
//! let outcome = state.execute::<Brand>(caller.tenant(), &meta, brand_id, command).await?;
//! Ok(Accepted::ok(outcome))
//! ```

use axum::http::header::{HeaderValue, LOCATION};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use plasma_commands::{BulkReceipt, CommandContext};
use plasma_domain::agent::{AgentRun, Workflow};
use plasma_domain::brand::{Alert, Brand, Delivery, Mention, MentionInput, MentionServices};
use plasma_domain::content::{Draft, DraftServices};
use plasma_domain::ids::{
    AlertId, BrandId, CommandId, DeliveryId, DocumentId, DraftId, MentionId, RunId, WorkflowId,
};
use plasma_domain::research::Document;
use plasma_domain::{AggregateId, TenantId};
use serde::Serialize;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::CommandMeta;
use crate::metrics;
use crate::state::AppState;

/// An aggregate the API runs commands on: the typed id that names one, and the outside
/// helpers its commands need.
pub trait CommandTarget: Aggregate {
    /// The typed id that names one instance, parsed from the path or minted by the server.
    type Id: AggregateId;

    /// The outside helpers this aggregate's commands need, from the app's state.
    fn services(state: &AppState) -> &Self::Services;
}

impl CommandTarget for Brand {
    type Id = BrandId;

    fn services(_state: &AppState) -> &() {
        &()
    }
}

impl CommandTarget for Alert {
    type Id = AlertId;

    fn services(_state: &AppState) -> &() {
        &()
    }
}

impl CommandTarget for Delivery {
    type Id = DeliveryId;

    fn services(_state: &AppState) -> &() {
        &()
    }
}

impl CommandTarget for Mention {
    type Id = MentionId;

    fn services(state: &AppState) -> &MentionServices {
        &state.services().mention
    }
}

impl CommandTarget for Draft {
    type Id = DraftId;

    fn services(state: &AppState) -> &DraftServices {
        state.draft_services()
    }
}

impl CommandTarget for AgentRun {
    type Id = RunId;

    fn services(_state: &AppState) -> &() {
        &()
    }
}

impl CommandTarget for Workflow {
    type Id = WorkflowId;

    fn services(_state: &AppState) -> &() {
        &()
    }
}

impl CommandTarget for Document {
    type Id = DocumentId;

    fn services(_state: &AppState) -> &() {
        &()
    }
}

/// What a command did, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommandOutcome {
    /// `Brand`, `Mention`, `Draft`, `AgentRun` or `Document`.
    #[schema(example = "Draft")]
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    /// The aggregate's version after the command.
    pub version: i64,
    /// Global position of the aggregate's last event: pass it as `min_position` to a query to
    /// read your own write.
    pub position: Option<i64>,
    /// Events this command appended (0 when nothing needed to change).
    pub events_appended: u32,
    /// The `Idempotency-Key` when one was sent, else a fresh id.
    pub command_id: Uuid,
    /// The agent run the command started, when it started one (a generated draft's drafting
    /// run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_run_id: Option<Uuid>,
    #[serde(skip)]
    pub replayed: bool,
}

/// What a bulk mention ingest did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    pub brand_id: Uuid,
    /// Mentions in the request.
    pub requested: u32,
    /// Mentions stored by this request.
    pub ingested: u32,
    /// Mentions already there (or repeated within the request): left unchanged.
    pub duplicates: u32,
    /// Positions of the first and last event appended; pass `last_position` as
    /// `min_position` to read the mentions.
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// The `Idempotency-Key` when one was sent, else a fresh id.
    pub command_id: Uuid,
    #[serde(skip)]
    pub replayed: bool,
}

impl BulkOutcome {
    fn new(receipt: BulkReceipt, command_id: Uuid) -> Self {
        Self {
            brand_id: receipt.brand_id.as_uuid(),
            requested: receipt.requested,
            ingested: receipt.ingested,
            duplicates: receipt.duplicates,
            first_position: receipt.first_position,
            last_position: receipt.last_position,
            command_id,
            replayed: receipt.replayed,
        }
    }
}

/// Answers of every command kind know whether they replay an earlier run.
pub trait IdempotentAnswer {
    fn replayed(&self) -> bool;
}

impl IdempotentAnswer for CommandOutcome {
    fn replayed(&self) -> bool {
        self.replayed
    }
}

impl IdempotentAnswer for BulkOutcome {
    fn replayed(&self) -> bool {
        self.replayed
    }
}

/// A command's answer: 200 or 201 with the outcome as JSON, a `Location` where sensible, and
/// `Idempotent-Replayed: true` when this repeats an earlier run of the same `Idempotency-Key`.
#[derive(Debug)]
pub struct Accepted<B> {
    status: StatusCode,
    location: Option<String>,
    body: B,
}

impl<B: Serialize + IdempotentAnswer> Accepted<B> {
    pub fn ok(body: B) -> Self {
        Self {
            status: StatusCode::OK,
            location: None,
            body,
        }
    }

    /// 201 with the new resource's URL.
    pub fn created(body: B, location: String) -> Self {
        Self {
            status: StatusCode::CREATED,
            location: Some(location),
            body,
        }
    }

    /// Where to read the result (e.g. the brand's mentions after an ingest).
    pub fn with_location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }
}

impl<B: Serialize + IdempotentAnswer> IntoResponse for Accepted<B> {
    fn into_response(self) -> Response {
        let replayed = self.body.replayed();
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(LOCATION, location);
        }
        if replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

impl AppState {
    /// Runs `command` on `tenant`'s aggregate `A` with `id`, a new one or an existing one.
    pub async fn execute<A>(
        &self,
        tenant: &TenantId,
        meta: &CommandMeta,
        id: A::Id,
        command: A::Command,
    ) -> Result<CommandOutcome, ApiError>
    where
        A: CommandTarget,
        A::Command: Clone + serde::Serialize,
        A::Error: 'static,
        ApiError: From<A::Error>,
    {
        // A reused command id with a different request is refused by the handler, which
        // compares the recorded request's fingerprint.
        let span = command_span(A::TYPE, meta);
        let context = span.in_scope(|| context(tenant, meta));
        let receipt = self
            .handler()
            .execute::<A>(&context, id.as_uuid(), command, A::services(self))
            .instrument(span.clone())
            .await?;
        span.in_scope(|| {
            tracing::debug!(
                events = receipt.events_appended,
                replayed = receipt.replayed,
                "command handled"
            );
        });
        if !receipt.replayed {
            metrics::events_appended(A::TYPE, u64::from(receipt.events_appended));
        }
        Ok(CommandOutcome {
            aggregate_type: A::TYPE,
            aggregate_id: receipt.aggregate_id,
            version: receipt.version,
            position: receipt.last_position,
            events_appended: receipt.events_appended,
            command_id: context.command_id.as_uuid(),
            agent_run_id: None,
            replayed: receipt.replayed,
        })
    }

    /// The current state of `tenant`'s aggregate `A` with `id`, replayed from the event store
    /// (never a read model, so it is as current as a command would see it). An aggregate with
    /// no events — never created, or another tenant's — is `A::default()`.
    ///
    /// For handlers whose command needs another aggregate's state (a draft's voice check needs
    /// its brand's voice guidelines).
    pub async fn load<A: CommandTarget>(
        &self,
        tenant: &TenantId,
        id: A::Id,
    ) -> Result<A, ApiError> {
        // Loading reads the tenant's stream only; the command id is never used.
        let context =
            CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::now_v7()), None);
        let (aggregate, _version, _position) =
            self.handler().load::<A>(&context, id.as_uuid()).await?;
        Ok(aggregate)
    }

    /// Ingests `mentions` into `brand` in one transaction.
    pub async fn ingest_mentions(
        &self,
        tenant: &TenantId,
        meta: &CommandMeta,
        brand: BrandId,
        mentions: Vec<MentionInput>,
    ) -> Result<BulkOutcome, ApiError> {
        let span = command_span(Mention::TYPE, meta);
        let context = span.in_scope(|| context(tenant, meta));
        let receipt = self
            .handler()
            .ingest_mentions(
                &context,
                brand,
                mentions,
                self.now(),
                &self.services().mention,
            )
            .instrument(span)
            .await?;
        if !receipt.replayed {
            metrics::events_appended(Mention::TYPE, u64::from(receipt.ingested));
        }
        Ok(BulkOutcome::new(receipt, context.command_id.as_uuid()))
    }
}

/// The span of handling one command: loading the aggregate, deciding, appending. The command
/// context is created inside it, so the events record this span as their trace parent.
fn command_span(aggregate_type: &str, meta: &CommandMeta) -> tracing::Span {
    tracing::info_span!(
        "command",
        otel.name = format!("command {aggregate_type}"),
        plasma.aggregate_type = aggregate_type,
        plasma.command_id = %meta.command_id.as_uuid(),
    )
}

fn context(tenant: &TenantId, meta: &CommandMeta) -> CommandContext {
    CommandContext::new(tenant.clone(), meta.command_id, meta.correlation_id)
}
