//! The content context: drafts written for a brand, from request through generation, voice
//! check and approval to publication.
//!
//! Text comes from the drafting workflow (`"generate": true`), or from outside (a model, a
//! template, a person): a generator posts what it wrote to `/drafts/{id}/generated`, an editor
//! posts hand edits to `/drafts/{id}/revisions`. The voice check runs here, against the brand's
//! voice guidelines. A generated draft's decision goes through its drafting run: approving or
//! rejecting it answers the run's `decision` step, and the run carries it out.

use axum::extract::State;
use axum::Json as JsonBody;
use chrono::{DateTime, Utc};
use plasma_domain::agent::{builtin, AgentRun, AgentRunCommand};
use plasma_domain::brand::{Brand, BrandInactive};
use plasma_domain::content::{
    Channel, Draft, DraftCommand, DraftError, DraftStatus, GeneratorInfo,
};
use plasma_domain::ids::{BrandId, DraftId, RunId};
use plasma_domain::AggregateId;
use plasma_projections::{DraftFilter, DraftView, Page};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Authorized, Commands, Queries};
use crate::command::{Accepted, CommandOutcome};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json, NoParams, PathId, ReadQuery};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request, list))
        .routes(routes!(show))
        .routes(routes!(record_generated))
        .routes(routes!(revise))
        .routes(routes!(check_voice))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(schedule))
        .routes(routes!(publish))
}

fn draft_url(id: Uuid) -> String {
    format!("/v1/drafts/{id}")
}

/// A generated draft's decision belongs to its drafting run. When the run waits at its
/// `decision` step, `decision` becomes that step's input (the run then records it on the draft
/// and goes on to schedule and publish) and the run's outcome is the answer. `None` when the
/// draft has no drafting run in progress (written by hand, or its run finished): the draft's
/// own command applies. A run still writing or checking the draft refuses the decision.
async fn decide_through_run(
    state: &AppState,
    caller: &Authorized<Commands>,
    meta: &CommandMeta,
    draft: DraftId,
    decision: serde_json::Value,
) -> Result<Option<Accepted<CommandOutcome>>, ApiError> {
    let run_id = RunId::for_draft(draft);
    let run: AgentRun = state.load(caller.tenant(), run_id).await?;
    if run.status.is_none() || run.finished_at.is_some() {
        return Ok(None);
    }
    match &run.step {
        Some(step) if step.kind == "input" && step.name == builtin::DRAFT_DECISION_STEP => {
            let command = AgentRunCommand::GiveInput {
                value: decision,
                at: state.now(),
            };
            let mut outcome = state
                .execute::<AgentRun>(caller.tenant(), meta, run_id, command)
                .await?;
            outcome.agent_run_id = Some(run_id.as_uuid());
            Ok(Some(
                Accepted::ok(outcome).with_location(draft_url(draft.as_uuid())),
            ))
        }
        _ => Err(ApiError::IllegalTransition(format!(
            "the draft's drafting run ({run_id}) has not reached its decision yet; decide once it waits for one (GET /v1/agent-runs/{run_id}/timeline)"
        ))),
    }
}

/// Runs `command` on an existing draft and answers 200 with the draft's URL.
async fn run(
    state: &AppState,
    caller: &Authorized<Commands>,
    meta: &CommandMeta,
    id: DraftId,
    command: DraftCommand,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let outcome = state
        .execute::<Draft>(caller.tenant(), meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(draft_url(id.as_uuid())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RequestDraft {
    brand_id: BrandId,
    brief: String,
    channel: Channel,
    /// Let the platform write it: starts the drafting workflow (`plasma.draft`): generate in the
    /// brand's voice → voice check → revise while it fails → wait for an editor's decision
    /// (`POST /v1/agent-runs/{agent_run_id}/input`) → publish, at `publish_at` if given.
    #[serde(default)]
    generate: bool,
    /// With `generate`: when to publish once approved (RFC 3339); at once when left out.
    #[serde(default)]
    publish_at: Option<DateTime<Utc>>,
}

/// Asks for a draft for one of the tenant's brands, under a new server-minted id: a UUIDv7,
/// or derived from the `Idempotency-Key` when one is sent, so a retry lands on the same
/// aggregate.
///
/// The brand must exist for this tenant (404 `not_found` with `field: brand_id` otherwise,
/// exactly as for another tenant's brand) and must not be archived (409 `illegal_transition`).
/// The brand is read from the event store, not a read model, so a brand registered a moment
/// ago is found without waiting for projections.
#[utoipa::path(
    post,
    path = "/drafts",
    tag = "drafts",
    request_body = RequestDraft,
    responses(
        (status = 201, description = "Requested; `Location` is the draft's URL", body = CommandOutcome),
        (status = 404, description = "`not_found` (`field: brand_id`): the brand does not exist for this tenant"),
        (status = 409, description = "`illegal_transition`: the brand is archived"),
        (status = 422, description = "`validation_failed`: the brief was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %body.brand_id, plasma.draft.id = tracing::field::Empty))]
async fn request(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    meta: CommandMeta,
    Json(body): Json<RequestDraft>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let brand: Brand = state.load(caller.tenant(), body.brand_id).await?;
    brand.ensure_active().map_err(|reason| match reason {
        BrandInactive::NotFound => ApiError::UnknownReference {
            field: "brand_id",
            message: format!("brand {} does not exist", body.brand_id),
        },
        BrandInactive::Archived => ApiError::IllegalTransition(format!(
            "brand {} is archived and takes no new drafts",
            body.brand_id
        )),
    })?;
    let id = DraftId::from_uuid(meta.new_aggregate_id());
    let command = DraftCommand::Request {
        brand_id: body.brand_id,
        brief: body.brief,
        channel: body.channel,
        at: state.now(),
    };
    if body.publish_at.is_some() && !body.generate {
        return Err(ApiError::Validation {
            field: Some("publish_at".to_owned()),
            message: "`publish_at` goes with `generate: true`; schedule a hand-written draft with /schedule".to_owned(),
        });
    }
    let mut outcome = state
        .execute::<Draft>(caller.tenant(), &meta, id, command)
        .await?;
    tracing::Span::current().record("plasma.draft.id", outcome.aggregate_id.to_string());
    if body.generate {
        let draft = DraftId::from_uuid(outcome.aggregate_id);
        let run = RunId::for_draft(draft);
        let command = AgentRunCommand::StartManaged {
            workflow: builtin::DRAFT_WORKFLOW.to_owned(),
            version: builtin::DRAFT_WORKFLOW_VERSION,
            input: serde_json::json!({ "draft_id": draft, "publish_at": body.publish_at }),
            fork: None,
            continued_from: None,
            at: state.now(),
        };
        let started = state
            .execute::<AgentRun>(caller.tenant(), &meta.derived("draft-run"), run, command)
            .await;
        match started {
            Ok(_) => {}
            // A retry of a request whose run already started.
            Err(ApiError::AlreadyExists(_)) => {}
            Err(other) => return Err(other),
        }
        outcome.agent_run_id = Some(run.as_uuid());
    }
    let location = draft_url(outcome.aggregate_id);
    Ok(Accepted::created(outcome, location))
}

/// Who produced a text: a model and its version, a template, a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Generator {
    name: String,
    version: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Generated {
    text: String,
    generator: Generator,
}

/// Records a text a generator wrote; it becomes the current text and needs a voice check.
#[utoipa::path(
    post,
    path = "/drafts/{id}/generated",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    request_body = Generated,
    responses(
        (status = 200, description = "Recorded; the draft is `generated`", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the draft is approved, scheduled or published"),
        (status = 422, description = "`validation_failed`: the text or generator was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn record_generated(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
    Json(body): Json<Generated>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DraftCommand::RecordGenerated {
        text: body.text,
        generator: GeneratorInfo {
            name: body.generator.name,
            version: body.generator.version,
        },
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Revision {
    text: String,
    /// What changed; may be left out.
    #[serde(default)]
    note: String,
}

/// Replaces the text by hand; it becomes the current text and needs a voice check.
#[utoipa::path(
    post,
    path = "/drafts/{id}/revisions",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    request_body = Revision,
    responses(
        (status = 200, description = "Revised; the draft is `generated`", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: no text yet, or approved, scheduled or published"),
        (status = 422, description = "`validation_failed`: the text or note was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn revise(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
    Json(body): Json<Revision>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DraftCommand::Revise {
        text: body.text,
        note: body.note,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

/// Checks the current text against the brand's voice guidelines (banned words, required
/// phrases, the channel's length limit); the request needs no body. The verdict is recorded
/// either way: read it (`voice_passed`, `voice_issues`) from `GET /v1/drafts/{id}` with the
/// answer's `position` as `min_position`.
///
/// The guidelines are read from the brand's own event stream, so the check always uses the
/// brand's current voice, never a lagging read model.
#[utoipa::path(
    post,
    path = "/drafts/{id}/voice-check",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    responses(
        (status = 200, description = "Checked (passed or not); the draft is `voice_checked`", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: no text yet, rejected, or approved, scheduled or published"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn check_voice(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let draft: Draft = state.load(caller.tenant(), id).await?;
    let brand_id = draft.brand_id.ok_or(DraftError::NotFound)?;
    // A draft is only ever requested for an existing brand, and brands are never deleted.
    let brand: Brand = state.load(caller.tenant(), brand_id).await?;
    let command = DraftCommand::CheckVoice {
        guidelines: brand.voice,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Approval {
    /// Who approves; the caller's token subject (`sub`) when left out.
    #[serde(default)]
    approver: Option<String>,
}

/// Approves a draft whose current text passed its voice check. The body is optional: without
/// one (or without `approver`) the approver is the caller's token subject. For a generated
/// draft whose drafting run waits for its decision, the approval is that run's input: the
/// answer is the run's outcome (`agent_run_id` set), and the run approves the draft, then
/// schedules or publishes it.
#[utoipa::path(
    post,
    path = "/drafts/{id}/approve",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    request_body(content = Option<Approval>, description = "Optional"),
    responses(
        (status = 200, description = "Approved", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: not voice-checked, failed its voice check, rejected, or already approved, scheduled or published; or its drafting run has not reached its decision"),
        (status = 422, description = "`validation_failed`: the approver was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn approve(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
    body: Option<Json<Approval>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let approver = body
        .and_then(|Json(body)| body.approver)
        .unwrap_or_else(|| caller.principal().subject.clone());
    let decision = serde_json::json!({ "approved": true, "approver": approver });
    if let Some(answered) = decide_through_run(&state, &caller, &meta, id, decision).await? {
        return Ok(answered);
    }
    let command = DraftCommand::Approve {
        approver,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rejection {
    reason: String,
}

/// Rejects a draft (also cancelling its approval and schedule); new text brings it back. For a
/// generated draft whose drafting run waits for its decision, the rejection is that run's
/// input, and the run rejects the draft.
#[utoipa::path(
    post,
    path = "/drafts/{id}/reject",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    request_body = Rejection,
    responses(
        (status = 200, description = "Rejected", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: already rejected, or published; or its drafting run has not reached its decision"),
        (status = 422, description = "`validation_failed`: the reason was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn reject(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
    Json(body): Json<Rejection>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    // Checked here as the draft would, so a run never carries a reason the draft refuses.
    let reason = plasma_domain::text::required("reason", &body.reason, 1000)?;
    let decision = serde_json::json!({ "approved": false, "reason": reason });
    if let Some(answered) = decide_through_run(&state, &caller, &meta, id, decision).await? {
        return Ok(answered);
    }
    let command = DraftCommand::Reject {
        reason: body.reason,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Schedule {
    /// When to publish (RFC 3339); must be later than now.
    publish_at: DateTime<Utc>,
}

/// Plans publication of an approved draft; scheduling again moves the date.
#[utoipa::path(
    post,
    path = "/drafts/{id}/schedule",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    request_body = Schedule,
    responses(
        (status = 200, description = "Scheduled", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: not approved, rejected or published"),
        (status = 422, description = "`validation_failed` (`field: publish_at`): not in the future"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn schedule(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
    Json(body): Json<Schedule>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DraftCommand::Schedule {
        publish_at: body.publish_at,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Publication {
    /// Where the draft went out (http or https), when known.
    #[serde(default)]
    url: Option<String>,
}

/// Records that an approved (or scheduled) draft was published; the body is optional.
#[utoipa::path(
    post,
    path = "/drafts/{id}/publish",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    request_body(content = Option<Publication>, description = "Optional"),
    responses(
        (status = 200, description = "Published", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: not approved, rejected or already published"),
        (status = 422, description = "`validation_failed` (`field: url`): not an http(s) URL"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn publish(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DraftId>,
    meta: CommandMeta,
    body: Option<Json<Publication>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DraftCommand::MarkPublished {
        url: body.and_then(|Json(body)| body.url),
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DraftsQuery {
    #[param(inline)]
    status: Option<DraftStatus>,
    #[param(inline)]
    brand_id: Option<BrandId>,
    /// Page size, 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$")]
    after: Option<String>,
}

/// The tenant's drafts, most recently changed first, filtered by status and brand, paged.
#[utoipa::path(
    get,
    path = "/drafts",
    tag = "drafts",
    params(DraftsQuery),
    responses((status = 200, description = "A page of drafts", body = Page<DraftView>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<DraftsQuery>,
) -> Result<JsonBody<Page<DraftView>>, ApiError> {
    let params = query.params;
    let page = super::page(params.limit, params.after)?;
    let reads = state.read().after(query.min_position);
    let filter = DraftFilter {
        status: params.status,
        brand: params.brand_id,
    };
    let drafts = reads.drafts(caller.tenant(), &filter, &page).await?;
    Ok(JsonBody(drafts))
}

/// One draft as it stands.
#[utoipa::path(
    get,
    path = "/drafts/{id}",
    tag = "drafts",
    params(("id" = Uuid, Path, description = "The draft's id")),
    responses((status = 200, description = "The draft", body = DraftView))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.draft.id = %id))]
async fn show(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<DraftId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<DraftView>, ApiError> {
    let reads = state.read().after(query.min_position);
    reads
        .draft(caller.tenant(), id)
        .await?
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("draft {id} does not exist")))
}
