//! The agent context: runs of agent workflows, reported step by step by the worker executing
//! them, with checkpoints to pause and resume from.
//!
//! The worker drives a run through these endpoints; a worker that crashed (or a new one taking
//! over) reads `GET /v1/agent-runs/{id}`, whose `latest_checkpoint` carries the saved `state`,
//! and continues from there.

use axum::extract::State;
use axum::Json as JsonBody;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use plasma_domain::agent::{
    builtin, AgentRun, AgentRunCommand, AgentRunEvent, AgentRunStatus, ForkOrigin, ResumeFrom,
    Workflow,
};
use plasma_domain::ids::{RunId, WorkflowId};
use plasma_domain::AggregateId;
use plasma_domain::TenantId;
use plasma_projections::{AgentRunView, Page};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Authorized, Commands, Queries};
use crate::command::{Accepted, CommandOutcome};
use crate::error::ApiError;
use crate::extract::{parse_id, CommandMeta, Json, NoParams, PathId, PathParams, ReadQuery};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start, list))
        .routes(routes!(show))
        .routes(routes!(start_step))
        .routes(routes!(complete_step))
        .routes(routes!(fail_step))
        .routes(routes!(save_checkpoint))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(complete))
        .routes(routes!(fail))
        .routes(routes!(give_input))
        .routes(routes!(cancel))
        .routes(routes!(fork))
        .routes(routes!(timeline))
        .routes(routes!(stream))
}

fn run_url(id: Uuid) -> String {
    format!("/v1/agent-runs/{id}")
}

/// Runs `command` on an existing run and answers 200 with the run's URL.
async fn run(
    state: &AppState,
    caller: &Authorized<Commands>,
    meta: &CommandMeta,
    id: RunId,
    command: AgentRunCommand,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let outcome = state
        .execute::<AgentRun>(caller.tenant(), meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(run_url(id.as_uuid())))
}

/// The path of the step endpoints: `/agent-runs/{id}/steps/{index}/…`.
#[derive(Debug, Deserialize)]
struct StepPath {
    id: String,
    index: String,
}

impl StepPath {
    /// The run id (400 `invalid_id`, field `id`) and step index (400 `invalid_id`, field
    /// `index`, unless a non-negative integer that fits 32 bits).
    fn parse(self) -> Result<(RunId, u32), ApiError> {
        let id = parse_id(&self.id, "id")?;
        let index = self.index.parse().map_err(|_| ApiError::InvalidId {
            field: "index".to_owned(),
            message: format!(
                "a step index is a non-negative integer, not `{}`",
                self.index.chars().take(40).collect::<String>()
            ),
        })?;
        Ok((id, index))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartRun {
    workflow: String,
    /// Any JSON (at most 256 KiB serialized); `null` when left out.
    #[serde(default)]
    input: Value,
    /// The defined workflow's version to run; the latest when left out.
    #[serde(default)]
    version: Option<u32>,
}

/// Starts a run of `workflow` under a new server-minted id (a UUIDv7, or derived from the
/// `Idempotency-Key` when one is sent); the run is `running`.
///
/// When `workflow` is defined (`PUT /v1/workflows/{name}`, or a built-in such as
/// `plasma.draft`), the agent worker executes it: the run is pinned to `version` (the latest
/// by default) and follows its steps, with a checkpoint after each; follow it with
/// `GET /v1/agent-runs/{id}/timeline` or `/stream`. Otherwise the caller drives the run step
/// by step through the step endpoints.
#[utoipa::path(
    post,
    path = "/agent-runs",
    tag = "agent-runs",
    request_body = StartRun,
    responses(
        (status = 201, description = "Started; `Location` is the run's URL", body = CommandOutcome),
        (status = 422, description = "`validation_failed`: the workflow was refused, `input` is over 256 KiB, or (`field: version`) the workflow has no such version"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = tracing::field::Empty))]
async fn start(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    meta: CommandMeta,
    Json(body): Json<StartRun>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let id = RunId::from_uuid(meta.new_aggregate_id());
    let versions = defined_versions(&state, caller.tenant(), &body.workflow).await?;
    let command = match (versions, body.version) {
        (None, None) => AgentRunCommand::Start {
            workflow: body.workflow,
            input: body.input,
            at: state.now(),
        },
        (None, Some(_)) => {
            return Err(ApiError::Validation {
                field: Some("workflow".to_owned()),
                message: format!(
                    "workflow `{}` is not defined, so it has no versions",
                    body.workflow
                ),
            })
        }
        (Some(latest), version) => {
            let version = version.unwrap_or(latest);
            if version == 0 || version > latest {
                return Err(ApiError::Validation {
                    field: Some("version".to_owned()),
                    message: format!("workflow `{}` has versions 1 to {latest}", body.workflow),
                });
            }
            AgentRunCommand::StartManaged {
                workflow: body.workflow,
                version,
                input: body.input,
                fork: None,
                continued_from: None,
                at: state.now(),
            }
        }
    };
    let outcome = state
        .execute::<AgentRun>(caller.tenant(), &meta, id, command)
        .await?;
    tracing::Span::current().record("plasma.run.id", outcome.aggregate_id.to_string());
    let location = run_url(outcome.aggregate_id);
    Ok(Accepted::created(outcome, location))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartStep {
    name: String,
}

/// Starts step `index` (one step at a time; indexes are the worker's to choose, so a step may
/// be retried under its index).
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/steps/{index}/start",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id"), ("index" = u32, Path, description = "The step's index")),
    request_body = StartStep,
    responses(
        (status = 200, description = "Started", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is paused, completed or failed, or another step is in progress"),
        (status = 422, description = "`validation_failed`: the name was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = tracing::field::Empty, plasma.step.index = tracing::field::Empty))]
async fn start_step(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathParams(path): PathParams<StepPath>,
    meta: CommandMeta,
    Json(body): Json<StartStep>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let (id, index) = record_step(path)?;
    let command = AgentRunCommand::StartStep {
        index,
        name: body.name,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CompleteStep {
    /// Any JSON (at most 256 KiB serialized); `null` when left out.
    #[serde(default)]
    output: Value,
}

/// Ends step `index`, the one in progress, with its output.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/steps/{index}/complete",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id"), ("index" = u32, Path, description = "The step's index")),
    request_body = CompleteStep,
    responses(
        (status = 200, description = "Completed", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is paused, completed or failed, or step `index` is not the one in progress"),
        (status = 422, description = "`validation_failed`: `output` is over 256 KiB"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = tracing::field::Empty, plasma.step.index = tracing::field::Empty))]
async fn complete_step(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathParams(path): PathParams<StepPath>,
    meta: CommandMeta,
    Json(body): Json<CompleteStep>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let (id, index) = record_step(path)?;
    let command = AgentRunCommand::CompleteStep {
        index,
        output: body.output,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Failure {
    error: String,
}

/// Ends step `index`, the one in progress, as failed. The run goes on: the worker decides
/// whether to retry the step, pause the run or fail it.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/steps/{index}/fail",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id"), ("index" = u32, Path, description = "The step's index")),
    request_body = Failure,
    responses(
        (status = 200, description = "Failed", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is paused, completed or failed, or step `index` is not the one in progress"),
        (status = 422, description = "`validation_failed`: the error was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = tracing::field::Empty, plasma.step.index = tracing::field::Empty))]
async fn fail_step(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathParams(path): PathParams<StepPath>,
    meta: CommandMeta,
    Json(body): Json<Failure>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let (id, index) = record_step(path)?;
    let command = AgentRunCommand::FailStep {
        index,
        error: body.error,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

/// Parses a step path and records it on the handler's span.
fn record_step(path: StepPath) -> Result<(RunId, u32), ApiError> {
    let (id, index) = path.parse()?;
    let span = tracing::Span::current();
    span.record("plasma.run.id", id.to_string());
    span.record("plasma.step.index", index);
    Ok((id, index))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SaveCheckpoint {
    /// A slot: saving under an existing name replaces that checkpoint.
    name: String,
    /// The step the state belongs to; a resume hands it back.
    step_index: u32,
    /// What the worker needs to continue (at most 256 KiB serialized).
    state: Value,
}

/// Saves a checkpoint of a running run; it becomes the latest.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/checkpoints",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body = SaveCheckpoint,
    responses(
        (status = 200, description = "Saved; it is the latest", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is paused, completed or failed"),
        (status = 422, description = "`validation_failed`: the name was refused, `state` is over 256 KiB, or the run has 100 checkpoints"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn save_checkpoint(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    Json(body): Json<SaveCheckpoint>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = AgentRunCommand::SaveCheckpoint {
        name: body.name,
        step_index: body.step_index,
        state: body.state,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Pause {
    reason: String,
}

/// Pauses a running run; it does nothing more until resumed (or failed).
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/pause",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body = Pause,
    responses(
        (status = 200, description = "Paused", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is paused, completed or failed"),
        (status = 422, description = "`validation_failed`: the reason was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn pause(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    Json(body): Json<Pause>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = AgentRunCommand::Pause {
        reason: body.reason,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Resume {
    /// The name of the checkpoint to resume from; the latest one when left out.
    #[serde(default)]
    checkpoint: Option<String>,
}

/// Resumes a paused run from a checkpoint, abandoning any step in progress. The body is
/// optional: none (or `{}`) resumes from the latest checkpoint, `{"checkpoint": "name"}` from
/// the named one. A run without checkpoints cannot resume (409 `illegal_transition`); a name
/// the run has no checkpoint under is 422 `validation_failed` with `field: checkpoint`.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/resume",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body(content = Option<Resume>, description = "Optional: without it, the latest checkpoint"),
    responses(
        (status = 200, description = "Resumed; the run is running", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is not paused, or has no checkpoint"),
        (status = 422, description = "`validation_failed` (`field: checkpoint`): the run has no checkpoint of that name"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn resume(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    body: Option<Json<Resume>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let from = match body.and_then(|Json(body)| body.checkpoint) {
        Some(name) => ResumeFrom::Named(name),
        None => ResumeFrom::Latest,
    };
    let command = AgentRunCommand::Resume {
        from,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Complete {
    /// Any JSON (at most 256 KiB serialized); `null` when left out.
    #[serde(default)]
    output: Value,
}

/// Completes a running run (no step may be in progress); it never changes again.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/complete",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body = Complete,
    responses(
        (status = 200, description = "Completed", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is paused, completed or failed, or a step is in progress"),
        (status = 422, description = "`validation_failed`: `output` is over 256 KiB"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn complete(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    Json(body): Json<Complete>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = AgentRunCommand::Complete {
        output: body.output,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

/// Fails a running or paused run; it never changes again.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/fail",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body = Failure,
    responses(
        (status = 200, description = "Failed", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is completed or failed"),
        (status = 422, description = "`validation_failed`: the error was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn fail(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    Json(body): Json<Failure>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = AgentRunCommand::Fail {
        error: body.error,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    #[param(inline)]
    status: Option<AgentRunStatus>,
    /// Page size, 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$")]
    after: Option<String>,
}

/// The tenant's runs, newest started first, optionally of one status, paged.
#[utoipa::path(
    get,
    path = "/agent-runs",
    tag = "agent-runs",
    params(RunsQuery),
    responses((status = 200, description = "A page of runs", body = Page<AgentRunView>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<RunsQuery>,
) -> Result<JsonBody<Page<AgentRunView>>, ApiError> {
    let params = query.params;
    let page = super::page(params.limit, params.after)?;
    let reads = state.read().after(query.min_position);
    let runs = reads
        .agent_runs(caller.tenant(), params.status, &page)
        .await?;
    Ok(JsonBody(runs))
}

/// One run as it stands, with its latest checkpoint (state included) to resume from.
#[utoipa::path(
    get,
    path = "/agent-runs/{id}",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    responses((status = 200, description = "The run, with its latest checkpoint", body = AgentRunView))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn show(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<RunId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<AgentRunView>, ApiError> {
    let reads = state.read().after(query.min_position);
    reads
        .agent_run(caller.tenant(), id)
        .await?
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("agent run {id} does not exist")))
}

/// The latest version of `workflow` when it is defined (a built-in or the tenant's own).
async fn defined_versions(
    state: &AppState,
    tenant: &TenantId,
    workflow: &str,
) -> Result<Option<u32>, ApiError> {
    if let Some(latest) = builtin::latest(workflow) {
        return Ok(Some(latest));
    }
    if plasma_domain::agent::validate_name(workflow).is_err() {
        return Ok(None);
    }
    let defined: Workflow = state
        .load(tenant, WorkflowId::derive(tenant, workflow))
        .await?;
    Ok(defined.latest().map(|v| v.version))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GiveInput {
    /// Any JSON (at most 256 KiB serialized): the waiting step's output.
    value: Value,
}

/// Answers the `input` step an executed run waits on; the value becomes the step's output and
/// the run goes on.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/input",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body = GiveInput,
    responses(
        (status = 200, description = "Given; the run goes on", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is not waiting for input"),
        (status = 422, description = "`validation_failed`: `value` is over 256 KiB"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn give_input(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    Json(body): Json<GiveInput>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = AgentRunCommand::GiveInput {
        value: body.value,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Cancel {
    /// Why; "cancelled" when left out or blank.
    #[serde(default)]
    reason: Option<String>,
}

/// Cancels a running or paused run for good; a step in progress is abandoned (its effect, if
/// already under way, is not undone).
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/cancel",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    request_body(content = Option<Cancel>, description = "Optional"),
    responses(
        (status = 200, description = "Cancelled", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the run is completed, failed or cancelled"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn cancel(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    body: Option<Json<Cancel>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "cancelled".to_owned());
    let command = AgentRunCommand::Cancel {
        reason,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Fork {
    /// The checkpoint to start from; the latest when left out.
    #[serde(default)]
    checkpoint: Option<String>,
    /// The new run's input; the parent's when left out.
    #[serde(default)]
    input: Option<Value>,
}

/// Starts a new run of the same workflow version from one of an executed run's checkpoints
/// (any status, finished ones included). The parent's history is untouched; the fork's steps
/// run under its own id, so their effects are new.
#[utoipa::path(
    post,
    path = "/agent-runs/{id}/fork",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The parent run's id")),
    request_body(content = Option<Fork>, description = "Optional: without it, from the latest checkpoint with the parent's input"),
    responses(
        (status = 201, description = "Forked; `Location` is the new run's URL", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such run"),
        (status = 409, description = "`illegal_transition`: the run is not executed by the agent worker, or has no checkpoint"),
        (status = 422, description = "`validation_failed` (`field: checkpoint`): no checkpoint of that name"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id, plasma.fork.id = tracing::field::Empty))]
async fn fork(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<RunId>,
    meta: CommandMeta,
    body: Option<Json<Fork>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let parent: AgentRun = state.load(caller.tenant(), id).await?;
    if parent.status.is_none() {
        return Err(ApiError::NotFound(format!("agent run {id} does not exist")));
    }
    let Some(version) = parent.workflow_version else {
        return Err(ApiError::IllegalTransition(
            "only a run the agent worker executes can be forked".to_owned(),
        ));
    };
    let (checkpoint, input) = match body {
        Some(Json(body)) => (body.checkpoint, body.input),
        None => (None, None),
    };
    let from = checkpoint.map_or(ResumeFrom::Latest, ResumeFrom::Named);
    let checkpoint = parent.checkpoint(from)?.clone();
    let child = RunId::from_uuid(meta.new_aggregate_id());
    let command = AgentRunCommand::StartManaged {
        workflow: parent.workflow.clone(),
        version,
        input: input.unwrap_or_else(|| parent.input.clone()),
        fork: Some(ForkOrigin {
            run_id: id,
            checkpoint: checkpoint.name,
            state: checkpoint.state,
        }),
        continued_from: None,
        at: state.now(),
    };
    let outcome = state
        .execute::<AgentRun>(caller.tenant(), &meta, child, command)
        .await?;
    tracing::Span::current().record("plasma.fork.id", outcome.aggregate_id.to_string());
    let location = run_url(outcome.aggregate_id);
    Ok(Accepted::created(outcome, location))
}

/// One step of a run's timeline (one attempt: a retried step appears once per attempt).
#[derive(Debug, Clone, Serialize, ToSchema)]
struct TimelineStep {
    index: u32,
    name: String,
    /// `tool`, `llm`, `branch`, `map`, `wait`, `input` or `continue_as_new`; null for a
    /// caller-driven run.
    kind: Option<String>,
    attempt: u32,
    /// `running`, `completed` or `failed`.
    status: &'static str,
    /// The rendered input recorded before the effect.
    input: Value,
    output: Option<Value>,
    error: Option<String>,
    transient: Option<bool>,
    /// Map elements recorded so far.
    items_completed: u32,
    /// The output streamed so far while the step runs (a generation's text); null once the
    /// step has its output, or when nothing streams.
    streamed: Option<String>,
    wake_at: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
struct TimelineCheckpoint {
    name: String,
    parent: Option<String>,
    /// The step the run continues at from here (4294967295: the end).
    step_index: u32,
    saved_at: DateTime<Utc>,
    /// Retention pruned it: it is history only, and cannot be forked from.
    pruned: bool,
}

/// What a running run waits for.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct Waiting {
    /// `input` (a person), `time` (a durable wait) or `retry` (a backoff).
    kind: &'static str,
    step: Option<String>,
    prompt: Option<String>,
    until: Option<DateTime<Utc>>,
}

/// A run's whole history, folded: steps with their inputs and outputs, checkpoints with their
/// parents, and what it waits for. Read from the run's events (the audit trail), so it is
/// current the moment a command returns.
#[derive(Debug, Clone, Serialize, ToSchema)]
struct Timeline {
    run_id: Uuid,
    workflow: String,
    workflow_version: Option<u32>,
    status: AgentRunStatus,
    forked_from: Option<Uuid>,
    forked_checkpoint: Option<String>,
    /// The run whose `continue_as_new` step started this one.
    continued_from: Option<Uuid>,
    /// The run this one continued as (its `continue_as_new` step's output).
    continued_as: Option<Uuid>,
    input: Value,
    output: Option<Value>,
    error: Option<String>,
    waiting: Option<Waiting>,
    steps: Vec<TimelineStep>,
    checkpoints: Vec<TimelineCheckpoint>,
    /// Events in the run's history and their total size, to see a run growing too long
    /// (fork it or start a new run from its last checkpoint).
    history_events: usize,
    history_bytes: usize,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The attempt of step `index` still running in the timeline.
fn open_step(t: &mut Timeline, index: u32) -> Option<&mut TimelineStep> {
    t.steps
        .iter_mut()
        .rev()
        .find(|s| s.index == index && s.status == "running")
}

fn fold_timeline(
    id: Uuid,
    events: &[plasma_commands::RecordedEvent],
) -> Result<Timeline, ApiError> {
    let mut timeline: Option<Timeline> = None;
    let mut run = AgentRun::default();
    for event in events {
        let decoded: AgentRunEvent = event.decode()?;
        run.apply(decoded.clone());
        let at = event.recorded_at;
        if let AgentRunEvent::AgentRunStarted {
            workflow,
            input,
            workflow_version,
            forked_from,
            forked_checkpoint,
            continued_from,
            at,
            ..
        } = &decoded
        {
            timeline = Some(Timeline {
                run_id: id,
                workflow: workflow.clone(),
                workflow_version: *workflow_version,
                status: AgentRunStatus::Running,
                forked_from: forked_from.map(|r| r.as_uuid()),
                forked_checkpoint: forked_checkpoint.clone(),
                continued_from: continued_from.map(|r| r.as_uuid()),
                continued_as: None,
                input: input.clone(),
                output: None,
                error: None,
                waiting: None,
                steps: Vec::new(),
                checkpoints: Vec::new(),
                history_events: 0,
                history_bytes: 0,
                started_at: *at,
                updated_at: *at,
            });
        }
        let Some(t) = timeline.as_mut() else { continue };
        t.history_events += 1;
        t.history_bytes += event.payload.len();
        t.updated_at = at;
        match decoded {
            AgentRunEvent::AgentStepStarted {
                index,
                name,
                at,
                kind,
                input,
                attempt,
                wake_at,
            } => {
                // A step abandoned by a resume stays `running` in history only until now.
                for s in t.steps.iter_mut().filter(|s| s.status == "running") {
                    s.status = "abandoned";
                }
                t.steps.push(TimelineStep {
                    index,
                    name,
                    kind,
                    attempt,
                    status: "running",
                    input,
                    output: None,
                    error: None,
                    transient: None,
                    items_completed: 0,
                    streamed: None,
                    wake_at,
                    started_at: at,
                    ended_at: None,
                })
            }
            AgentRunEvent::AgentStepCompleted { index, output, at } => {
                let mut continued_as = None;
                if let Some(s) = open_step(t, index) {
                    if s.kind.as_deref() == Some("continue_as_new") {
                        continued_as = output
                            .get("run_id")
                            .and_then(Value::as_str)
                            .and_then(|id| Uuid::parse_str(id).ok());
                    }
                    s.status = "completed";
                    s.output = Some(output);
                    s.streamed = None;
                    s.ended_at = Some(at);
                }
                if continued_as.is_some() {
                    t.continued_as = continued_as;
                }
            }
            AgentRunEvent::AgentStepFailed {
                index,
                error,
                at,
                transient,
                ..
            } => {
                if let Some(s) = open_step(t, index) {
                    s.status = "failed";
                    s.error = Some(error);
                    s.transient = Some(transient);
                    s.ended_at = Some(at);
                }
            }
            AgentRunEvent::AgentStepItemCompleted { index, .. } => {
                if let Some(s) = open_step(t, index) {
                    s.items_completed += 1;
                }
            }
            AgentRunEvent::AgentStepOutputStreamed { index, text, .. } => {
                if let Some(s) = open_step(t, index) {
                    s.streamed.get_or_insert_with(String::new).push_str(&text);
                }
            }
            AgentRunEvent::AgentCheckpointSaved {
                name,
                step_index,
                at,
                parent,
                ..
            } => t.checkpoints.push(TimelineCheckpoint {
                name,
                parent,
                step_index,
                saved_at: at,
                pruned: false,
            }),
            AgentRunEvent::AgentRunCompleted { output, .. } => t.output = Some(output),
            AgentRunEvent::AgentRunFailed { error, .. } => t.error = Some(error),
            AgentRunEvent::AgentRunCancelled { reason, .. } => {
                t.error = Some(format!("cancelled: {reason}"))
            }
            AgentRunEvent::AgentRunResumed { .. } => {
                for s in t.steps.iter_mut().filter(|s| s.status == "running") {
                    s.status = "abandoned";
                }
            }
            AgentRunEvent::AgentCheckpointsPruned { names, .. } => {
                for c in t.checkpoints.iter_mut().filter(|c| names.contains(&c.name)) {
                    c.pruned = true;
                }
            }
            _ => {}
        }
    }
    let mut t =
        timeline.ok_or_else(|| ApiError::NotFound(format!("agent run {id} does not exist")))?;
    t.status = run.status.unwrap_or(AgentRunStatus::Running);
    if t.status == AgentRunStatus::Running {
        t.waiting = match &run.step {
            Some(step) if step.kind == "input" => Some(Waiting {
                kind: "input",
                step: Some(step.name.clone()),
                prompt: step
                    .input
                    .get("prompt")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                until: None,
            }),
            Some(step) if step.kind == "wait" => Some(Waiting {
                kind: "time",
                step: Some(step.name.clone()),
                prompt: None,
                until: step.wake_at,
            }),
            None if run.retry_at.is_some() && run.failures > 0 => Some(Waiting {
                kind: "retry",
                step: None,
                prompt: None,
                until: run.retry_at,
            }),
            _ => None,
        };
    }
    Ok(t)
}

/// A run's timeline: every step attempt with its recorded input and output, every checkpoint
/// with its parent, what the run waits for, and the size of its history.
#[utoipa::path(
    get,
    path = "/agent-runs/{id}/timeline",
    tag = "agent-runs",
    params(("id" = Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's timeline", body = Timeline),
        (status = 404, description = "`not_found`: no such run"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn timeline(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<RunId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<Timeline>, ApiError> {
    // Read from the event store, always current: `min_position` is checked and has nothing to wait for.
    let _ = query;
    let stream = state
        .store()
        .load_stream(caller.tenant(), AgentRun::TYPE, id.as_uuid())
        .await?;
    Ok(JsonBody(fold_timeline(id.as_uuid(), &stream.events)?))
}

/// How often a stream looks for new events of its run.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// How long the stream stays open, in seconds (1 ..= 60; 30 by default). An `EventSource`
    /// reconnects by itself, with `Last-Event-ID`, and goes on where it stopped.
    #[param(minimum = 1, maximum = 60)]
    max_seconds: Option<u64>,
}

/// The run's events as server-sent events, from the first (or after `Last-Event-ID`, a
/// sequence number) as they are recorded: `event:` is the event type, `id:` its sequence,
/// `data:` `{sequence, event_type, recorded_at, data}`. The stream ends after the run
/// completes, fails or is cancelled, or after `max_seconds` (a client reconnects with
/// `Last-Event-ID`); a comment line every 15 s keeps proxies from closing it.
#[utoipa::path(
    get,
    path = "/agent-runs/{id}/stream",
    tag = "agent-runs",
    params(
        ("id" = Uuid, Path, description = "The run's id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this sequence"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "A stream of the run's events", content_type = "text/event-stream", body = String),
        (status = 404, description = "`not_found`: no such run"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.run.id = %id))]
async fn stream(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<RunId>,
    query: ReadQuery<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let tenant = caller.tenant().clone();
    let first = state
        .store()
        .load_stream(&tenant, AgentRun::TYPE, id.as_uuid())
        .await?;
    if first.events.is_empty() {
        return Err(ApiError::NotFound(format!("agent run {id} does not exist")));
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let lifetime =
        std::time::Duration::from_secs(query.params.max_seconds.unwrap_or(30).clamp(1, 60));
    let deadline = tokio::time::Instant::now() + lifetime;
    let store = state.store().clone();
    let run_id = id.as_uuid();
    // (pending events to send, last sequence sent, finished)
    let start = (std::collections::VecDeque::from(first.events), after, false);
    let events = futures::stream::unfold(start, move |(mut pending, mut sent, mut done)| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            loop {
                while let Some(event) = pending.pop_front() {
                    if event.sequence <= sent {
                        continue;
                    }
                    sent = event.sequence;
                    if matches!(
                        event.event_type.as_str(),
                        "AgentRunCompleted" | "AgentRunFailed" | "AgentRunCancelled"
                    ) {
                        done = true;
                    }
                    let data: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
                    let inner = data
                        .as_object()
                        .and_then(|o| o.values().next().cloned())
                        .unwrap_or(Value::Null);
                    let body = serde_json::json!({
                        "sequence": event.sequence,
                        "event_type": event.event_type,
                        "recorded_at": event.recorded_at,
                        "data": inner,
                    });
                    let sse = Event::default()
                        .event(event.event_type.clone())
                        .id(event.sequence.to_string())
                        .data(body.to_string());
                    return Some((Ok(sse), (pending, sent, done)));
                }
                if done || tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(STREAM_POLL).await;
                match store.load_stream(&tenant, AgentRun::TYPE, run_id).await {
                    Ok(stream) => {
                        pending.extend(stream.events.into_iter().filter(|e| e.sequence > sent))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "an agent run stream could not read its events");
                        return None;
                    }
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}
