//! Operations on read models: start a rebuild (from the event store or the log) and follow its
//! progress. Admins only; a rebuild is non-destructive (shadow tables, swapped in when caught
//! up) but costs load, and the read models are shared by every tenant.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authorized, Operations};
use crate::error::ApiError;
use crate::extract::{Json, NoParams, PathParams, ReadQuery};
use crate::rebuilds::{RebuildSource, RebuildStatus, StartError};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start_rebuild, rebuild_status))
}

#[derive(Debug, Deserialize)]
struct ReadModelPath {
    name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartRebuild {
    /// `store` (default) or `log`.
    source: Option<RebuildSource>,
}

/// Starts rebuilding a read model into shadow tables; queries keep being served from the live
/// ones until the rebuilt copy is swapped in.
#[utoipa::path(
    post,
    path = "/admin/read-models/{name}/rebuild",
    tag = "admin",
    params(("name" = String, Path, description = "brands, mentions, brand_stats, drafts, agent_runs or documents")),
    request_body(content = StartRebuild, description = "Optional; the source defaults to the event store"),
    responses(
        (status = 202, description = "Started", body = RebuildStatus),
        (status = 404, description = "`not_found`: no such read model"),
        (status = 409, description = "`already_exists`: a rebuild of it is running"),
        (status = 400, description = "`invalid_body`: an unknown source"),
        (status = 409, description = "`log_not_configured`: `source` is `log` and this gateway has no log (embedded mode)"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.read_model = %path.name))]
async fn start_rebuild(
    State(state): State<AppState>,
    caller: Authorized<Operations>,
    PathParams(path): PathParams<ReadModelPath>,
    body: Option<Json<StartRebuild>>,
) -> Result<(StatusCode, axum::Json<RebuildStatus>), ApiError> {
    let source = body
        .and_then(|Json(b)| b.source)
        .unwrap_or(RebuildSource::Store);
    let status = state
        .rebuilds()
        .start(&path.name, source)
        .map_err(|error| match error {
            StartError::UnknownReadModel(_) => ApiError::NotFound(error.to_string()),
            StartError::AlreadyRunning(_) => ApiError::AlreadyExists(error.to_string()),
            StartError::NoLog => ApiError::LogNotConfigured(error.to_string()),
        })?;
    tracing::info!(?source, "read-model rebuild started");
    Ok((StatusCode::ACCEPTED, axum::Json(status)))
}

/// The progress of the latest rebuild of a read model started on this gateway.
#[utoipa::path(
    get,
    path = "/admin/read-models/{name}/rebuild",
    tag = "admin",
    params(("name" = String, Path, description = "The read model")),
    responses(
        (status = 200, description = "Running, succeeded or failed", body = RebuildStatus),
        (status = 404, description = "`not_found`: no rebuild of it was started here"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.read_model = %path.name))]
async fn rebuild_status(
    State(state): State<AppState>,
    caller: Authorized<Operations>,
    PathParams(path): PathParams<ReadModelPath>,
    // Validated like every query's (a rebuild's status needs no `min_position`, but a
    // malformed one is still refused).
    _query: ReadQuery<NoParams>,
) -> Result<axum::Json<RebuildStatus>, ApiError> {
    state
        .rebuilds()
        .status(&path.name)
        .map(axum::Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no rebuild of `{}` was started here", path.name))
        })
}
