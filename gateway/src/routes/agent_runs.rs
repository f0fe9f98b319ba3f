//! The agent context: runs of agent workflows, reported step by step by the worker executing
//! them, with checkpoints to pause and resume from.
//!
//! The worker drives a run through these endpoints; a worker that crashed (or a new one taking
//! over) reads `GET /v1/agent-runs/{id}`, whose `latest_checkpoint` carries the saved `state`,
//! and continues from there.

use axum::extract::State;
use axum::Json as JsonBody;
use plasma_domain::agent::{AgentRun, AgentRunCommand, AgentRunStatus, ResumeFrom};
use plasma_domain::ids::RunId;
use plasma_domain::AggregateId;
use plasma_projections::{AgentRunView, Page};
use serde::Deserialize;
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
}

/// Starts a run of `workflow` under a new server-minted id (a UUIDv7, or derived from the
/// `Idempotency-Key` when one is sent); the run is `running`.
#[utoipa::path(
    post,
    path = "/agent-runs",
    tag = "agent-runs",
    request_body = StartRun,
    responses(
        (status = 201, description = "Started; `Location` is the run's URL", body = CommandOutcome),
        (status = 422, description = "`validation_failed`: the workflow was refused, or `input` is over 256 KiB"),
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
    let command = AgentRunCommand::Start {
        workflow: body.workflow,
        input: body.input,
        at: state.now(),
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
