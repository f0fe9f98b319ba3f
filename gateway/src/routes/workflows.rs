//! Workflow definitions and the tool registry.
//!
//! `PUT /workflows/{name}` records a new version of a workflow (an identical definition records
//! nothing); runs keep the version they started with. A definition is checked when it is put:
//! an unknown tool, a reference to a step that does not run before, a branch back (a cycle),
//! a malformed template are refused with 422 `validation_failed`, `field` naming the step
//! (`steps.<id>`). A definition may be sent as JSON or as YAML (`Content-Type:
//! application/yaml`); both are read by the same rules.

use axum::extract::State;
use axum::Json as JsonBody;
use plasma_domain::agent::tools::ToolSpec;
use plasma_domain::agent::{
    builtin, tools, unknown_step_field, validate_name, Workflow, WorkflowCommand,
    WorkflowDefinition,
};
use plasma_domain::ids::WorkflowId;
use plasma_projections::{WorkflowVersionView, WorkflowView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authorized, Commands, Queries};
use crate::command::{Accepted, CommandOutcome};
use crate::error::ApiError;
use crate::extract::{from_value, CommandMeta, JsonOrYaml, NoParams, PathParams, ReadQuery};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(define, versions))
        .routes(routes!(tool_list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct NamePath {
    /// 1-100 characters a-z, 0-9, `-`, `_` or `.`, starting with a letter or digit.
    #[param(pattern = r"^[a-z0-9][a-z0-9._-]{0,99}$")]
    name: String,
}

impl NamePath {
    fn parse(self) -> Result<String, ApiError> {
        validate_name(&self.name).map_err(|err| ApiError::InvalidId {
            field: "name".to_owned(),
            message: err.to_string(),
        })?;
        Ok(self.name)
    }
}

/// Records `definition` as the next version of workflow `name` (version 1 for a new name). An
/// identical definition to the latest records nothing and answers the latest version. Names
/// starting with `plasma.` are the platform's built-ins and cannot be defined.
#[utoipa::path(
    put,
    path = "/workflows/{name}",
    tag = "workflows",
    params(NamePath),
    request_body(
        description = "The definition, as JSON or as YAML",
        content(
            (WorkflowDefinition = "application/json"),
            (WorkflowDefinition = "application/yaml"),
        )
    ),
    responses(
        (status = 200, description = "Recorded; `version` in the body is the aggregate's, which equals the workflow's latest version", body = CommandOutcome),
        (status = 400, description = "`invalid_id`: the name is malformed; `invalid_body`: malformed JSON or YAML, or a field of the wrong shape"),
        (status = 415, description = "`unsupported_media_type`: neither JSON nor YAML"),
        (status = 422, description = "`validation_failed`: the definition was refused; `field` is `steps.<id>` for the step at fault"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.workflow = %path.name))]
async fn define(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathParams(path): PathParams<NamePath>,
    meta: CommandMeta,
    JsonOrYaml(body): JsonOrYaml<serde_json::Value>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let name = path.parse()?;
    if let Some((index, field)) = unknown_step_field(&body) {
        return Err(ApiError::InvalidBody {
            message: format!("unknown field `{field}` for a step of this kind"),
            field: Some(format!("steps[{index}].{field}")),
        });
    }
    let definition: WorkflowDefinition = from_value(body)?;
    let id = WorkflowId::derive(caller.tenant(), &name);
    let command = WorkflowCommand::Define {
        name: name.clone(),
        definition,
        at: state.now(),
    };
    let outcome = state
        .execute::<Workflow>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(format!("/v1/workflows/{name}")))
}

/// The tenant's workflows, each with its latest version (built-ins are not listed; see
/// `GET /v1/workflows/plasma.draft`).
#[utoipa::path(
    get,
    path = "/workflows",
    tag = "workflows",
    responses((status = 200, description = "The workflows by name", body = Vec<WorkflowView>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<Vec<WorkflowView>>, ApiError> {
    let reads = state.read().after(query.min_position);
    Ok(JsonBody(reads.workflows(caller.tenant()).await?))
}

#[derive(Debug, Serialize, ToSchema)]
struct Versions {
    name: String,
    /// Oldest first.
    versions: Vec<WorkflowVersionView>,
}

/// Every version of one workflow with its definition, oldest first (a built-in's versions
/// too).
#[utoipa::path(
    get,
    path = "/workflows/{name}",
    tag = "workflows",
    params(NamePath),
    responses(
        (status = 200, description = "The versions", body = Versions),
        (status = 404, description = "`not_found`: no such workflow"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.workflow = %path.name))]
async fn versions(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathParams(path): PathParams<NamePath>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<Versions>, ApiError> {
    let name = path.parse()?;
    let versions = match builtin::latest(&name) {
        Some(latest) => (1..=latest)
            .filter_map(|v| {
                builtin::definition(&name, v).map(|d| WorkflowVersionView {
                    name: name.clone(),
                    version: v,
                    definition: serde_json::to_value(d).unwrap_or_default(),
                    defined_at: chrono::DateTime::UNIX_EPOCH,
                })
            })
            .collect(),
        None => {
            let reads = state.read().after(query.min_position);
            reads.workflow_versions(caller.tenant(), &name).await?
        }
    };
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!(
            "workflow `{name}` does not exist"
        )));
    }
    Ok(JsonBody(Versions { name, versions }))
}

/// The tool registry: what workflow steps (and MCP clients) can call, with JSON Schemas of
/// input and output. `read` tools need the read role, `write` tools the write role.
#[utoipa::path(
    get,
    path = "/tools",
    tag = "workflows",
    responses((status = 200, description = "Every tool", body = Vec<ToolSpec>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn tool_list(
    caller: Authorized<Queries>,
    query: ReadQuery<NoParams>,
) -> JsonBody<Vec<ToolSpec>> {
    // `min_position` is accepted (and checked) like on every query; the registry is static.
    let _ = (caller, query);
    JsonBody(tools::all().to_vec())
}
