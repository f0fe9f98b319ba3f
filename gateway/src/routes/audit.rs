//! Audit: the recorded history of an aggregate, its state as of a version or an instant, and
//! the tenant's whole event log. These read the event store itself, never a read model, so
//! they are always current (`min_position` is accepted and has nothing to wait for).

use axum::extract::State;
use axum::Json as JsonBody;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use plasma_commands::RecordedEvent;
use plasma_domain::agent::AgentRun;
use plasma_domain::brand::{Alert, Brand, Delivery, Mention};
use plasma_domain::content::Draft;
use plasma_domain::ids::{AlertId, BrandId, DeliveryId, DocumentId, DraftId, MentionId, RunId};
use plasma_domain::research::Document;
use plasma_domain::{AggregateId, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Audit, Authorized};
use crate::error::ApiError;
use crate::extract::{parse_id, NoParams, PathParams, ReadQuery};
use crate::state::AppState;

/// Default and largest page of the tenant's event log.
pub const DEFAULT_EVENTS_LIMIT: u32 = 100;
pub const MAX_EVENTS_LIMIT: u32 = 1000;
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tenant_events))
        .routes(routes!(history))
        .routes(routes!(state_as_of))
}

/// The aggregate types whose history the audit endpoints serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggregateKind {
    Brand,
    Mention,
    Alert,
    Delivery,
    Draft,
    AgentRun,
    Workflow,
    Document,
}

impl AggregateKind {
    const ALL: [Self; 8] = [
        Self::Brand,
        Self::Mention,
        Self::Alert,
        Self::Delivery,
        Self::Draft,
        Self::AgentRun,
        Self::Workflow,
        Self::Document,
    ];

    fn type_name(self) -> &'static str {
        match self {
            Self::Brand => Brand::TYPE,
            Self::Mention => Mention::TYPE,
            Self::Alert => Alert::TYPE,
            Self::Delivery => Delivery::TYPE,
            Self::Draft => Draft::TYPE,
            Self::AgentRun => AgentRun::TYPE,
            Self::Workflow => plasma_domain::agent::Workflow::TYPE,
            Self::Document => Document::TYPE,
        }
    }

    /// `AgentRun`, `agent_run`, `agent-run` and `agentrun` all name the same type.
    fn parse(raw: &str) -> Result<Self, ApiError> {
        let wanted: String = raw
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.type_name().to_lowercase() == wanted)
            .ok_or_else(|| ApiError::UnknownAggregateType(raw.chars().take(80).collect()))
    }

    /// The aggregate's id, parsed as its own kind of id.
    fn parse_id(self, raw: &str) -> Result<Uuid, ApiError> {
        Ok(match self {
            Self::Brand => parse_id::<BrandId>(raw, "id")?.as_uuid(),
            Self::Mention => parse_id::<MentionId>(raw, "id")?.as_uuid(),
            Self::Alert => parse_id::<AlertId>(raw, "id")?.as_uuid(),
            Self::Delivery => parse_id::<DeliveryId>(raw, "id")?.as_uuid(),
            Self::Draft => parse_id::<DraftId>(raw, "id")?.as_uuid(),
            Self::AgentRun => parse_id::<RunId>(raw, "id")?.as_uuid(),
            Self::Workflow => parse_id::<plasma_domain::ids::WorkflowId>(raw, "id")?.as_uuid(),
            Self::Document => parse_id::<DocumentId>(raw, "id")?.as_uuid(),
        })
    }

    /// The aggregate's state after `events`, as JSON.
    fn replay(self, events: &[RecordedEvent]) -> Result<serde_json::Value, ApiError> {
        match self {
            Self::Brand => replay::<Brand>(events),
            Self::Mention => replay::<Mention>(events),
            Self::Alert => replay::<Alert>(events),
            Self::Delivery => replay::<Delivery>(events),
            Self::Draft => replay::<Draft>(events),
            Self::AgentRun => replay::<AgentRun>(events),
            Self::Workflow => replay::<plasma_domain::agent::Workflow>(events),
            Self::Document => replay::<Document>(events),
        }
    }
}

fn replay<A: Aggregate + Serialize>(
    events: &[RecordedEvent],
) -> Result<serde_json::Value, ApiError> {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event.decode::<A::Event>()?);
    }
    Ok(serde_json::to_value(&aggregate)?)
}

/// One recorded event with all its metadata.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEvent {
    position: i64,
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    event_type: String,
    event_version: i32,
    recorded_at: DateTime<Utc>,
    correlation_id: Uuid,
    causation_id: Uuid,
    command_id: Uuid,
    payload: serde_json::Value,
}

impl TryFrom<RecordedEvent> for AuditEvent {
    type Error = ApiError;
    fn try_from(event: RecordedEvent) -> Result<Self, ApiError> {
        let payload = serde_json::from_str(&event.payload)?;
        Ok(Self {
            position: event.position,
            event_id: event.event_id,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type,
            event_version: event.event_version,
            recorded_at: event.recorded_at,
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            command_id: event.command_id,
            payload,
        })
    }
}

#[derive(Debug, Deserialize)]
struct StreamPath {
    aggregate_type: String,
    id: String,
}

/// Loads one aggregate's events for `tenant`; another tenant's aggregate is not found.
async fn load(
    state: &AppState,
    tenant: &TenantId,
    path: &StreamPath,
) -> Result<(AggregateKind, Uuid, Vec<RecordedEvent>), ApiError> {
    let kind = AggregateKind::parse(&path.aggregate_type)?;
    let id = kind.parse_id(&path.id)?;
    let stream = state
        .store()
        .load_stream(tenant, kind.type_name(), id)
        .await?;
    if stream.events.is_empty() {
        return Err(ApiError::NotFound(format!(
            "{} {id} does not exist",
            kind.type_name()
        )));
    }
    Ok((kind, id, stream.events))
}

#[derive(Debug, Serialize, ToSchema)]
struct History {
    aggregate_type: &'static str,
    aggregate_id: Uuid,
    version: i64,
    events: Vec<AuditEvent>,
}

/// Every event of one aggregate, oldest first.
#[utoipa::path(
    get,
    path = "/audit/{aggregate_type}/{id}/events",
    tag = "audit",
    params(
        ("aggregate_type" = String, Path, description = "`Brand`, `Mention`, `Alert`, `Delivery`, `Draft`, `AgentRun` or `Document` (case, `_` and `-` ignored)"),
        ("id" = Uuid, Path, description = "The aggregate's id"),
    ),
    responses(
        (status = 200, description = "The aggregate's events", body = History),
        (status = 404, description = "`unknown_aggregate_type`: not one of the five types"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.aggregate.type = %path.aggregate_type, plasma.aggregate.id = %path.id))]
async fn history(
    State(state): State<AppState>,
    caller: Authorized<Audit>,
    PathParams(path): PathParams<StreamPath>,
    _query: ReadQuery<NoParams>,
) -> Result<JsonBody<History>, ApiError> {
    let (kind, id, events) = load(&state, caller.tenant(), &path).await?;
    let version = events.last().map_or(0, |e| e.sequence);
    let events = events
        .into_iter()
        .map(AuditEvent::try_from)
        .collect::<Result<_, _>>()?;
    Ok(JsonBody(History {
        aggregate_type: kind.type_name(),
        aggregate_id: id,
        version,
        events,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AsOf {
    /// The state right after this version (sequence) was applied (0: before any event).
    #[param(minimum = 0)]
    as_of_version: Option<i64>,
    /// The state as recorded at this instant (RFC 3339). With `as_of_version` too, the state
    /// after the events that satisfy both.
    as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct StateAsOf {
    aggregate_type: &'static str,
    aggregate_id: Uuid,
    /// Version of the last event applied (0: the aggregate did not exist yet).
    version: i64,
    /// Position and time of that event.
    position: Option<i64>,
    recorded_at: Option<DateTime<Utc>>,
    /// The aggregate's current version, for comparison.
    current_version: i64,
    state: serde_json::Value,
}

/// The aggregate's state rebuilt by replaying its events up to `as_of_version` or `as_of`
/// (the current state without either).
#[utoipa::path(
    get,
    path = "/audit/{aggregate_type}/{id}/state",
    tag = "audit",
    params(
        ("aggregate_type" = String, Path, description = "`Brand`, `Mention`, `Alert`, `Delivery`, `Draft`, `AgentRun` or `Document` (case, `_` and `-` ignored)"),
        ("id" = Uuid, Path, description = "The aggregate's id"),
        AsOf,
    ),
    responses(
        (status = 200, description = "The state as of that point", body = StateAsOf),
        (status = 404, description = "`unknown_aggregate_type`: not one of the five types"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.aggregate.type = %path.aggregate_type, plasma.aggregate.id = %path.id))]
async fn state_as_of(
    State(state): State<AppState>,
    caller: Authorized<Audit>,
    PathParams(path): PathParams<StreamPath>,
    query: ReadQuery<AsOf>,
) -> Result<JsonBody<StateAsOf>, ApiError> {
    let AsOf {
        as_of_version,
        as_of,
    } = query.params;
    // Both together: the events that satisfy both (the earlier of the two points).
    if as_of_version.is_some_and(|v| v < 0) {
        return Err(ApiError::InvalidQuery {
            field: Some("as_of_version".to_owned()),
            message: "`as_of_version` must not be negative".to_owned(),
        });
    }
    let (kind, id, events) = load(&state, caller.tenant(), &path).await?;
    let current_version = events.last().map_or(0, |e| e.sequence);
    let upto = events
        .iter()
        .take_while(|e| {
            as_of_version.is_none_or(|v| e.sequence <= v)
                && as_of.is_none_or(|t| e.recorded_at <= t)
        })
        .count();
    let applied = &events[..upto];
    let last = applied.last();
    Ok(JsonBody(StateAsOf {
        aggregate_type: kind.type_name(),
        aggregate_id: id,
        version: last.map_or(0, |e| e.sequence),
        position: last.map(|e| e.position),
        recorded_at: last.map(|e| e.recorded_at),
        current_version,
        state: kind.replay(applied)?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// The first position to return (inclusive); 1 by default.
    #[param(minimum = 0)]
    from_position: Option<i64>,
    /// Events per page, 1 ..= 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct EventLog {
    events: Vec<AuditEvent>,
    /// Pass as `from_position` for the next page.
    next_from_position: i64,
    /// Position of the last event in the store when this page was read.
    head: i64,
    /// Whether this tenant has more events after this page.
    has_more: bool,
}

/// The tenant's events in global position order, across all aggregates.
#[utoipa::path(
    get,
    path = "/audit/events",
    tag = "audit",
    params(EventsQuery),
    responses((status = 200, description = "A page of the tenant's event log", body = EventLog))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn tenant_events(
    State(state): State<AppState>,
    caller: Authorized<Audit>,
    query: ReadQuery<EventsQuery>,
) -> Result<JsonBody<EventLog>, ApiError> {
    let from = query.params.from_position.unwrap_or(1);
    if from < 0 {
        return Err(ApiError::InvalidQuery {
            field: Some("from_position".to_owned()),
            message: "`from_position` must not be negative".to_owned(),
        });
    }
    let limit = query.params.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if !(1..=MAX_EVENTS_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery {
            field: Some("limit".to_owned()),
            message: format!("`limit` must be between 1 and {MAX_EVENTS_LIMIT}"),
        });
    }
    let store = state.store();
    let head = store.head().await?;
    // One more than asked tells whether another page exists.
    let mut page = store
        .read_tenant(
            caller.tenant(),
            from.saturating_sub(1),
            i64::from(limit) + 1,
        )
        .await?;
    let has_more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_from_position = page.last().map_or(from, |e| e.position + 1);
    let events = page
        .into_iter()
        .map(AuditEvent::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JsonBody(EventLog {
        events,
        next_from_position,
        head,
        has_more,
    }))
}
