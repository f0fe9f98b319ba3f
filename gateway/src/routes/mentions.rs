//! Commands on single mentions. (Listing and bulk ingest live under `/brands/{id}/mentions`.)

use axum::extract::State;
use plasma_domain::brand::{Mention, MentionCommand};
use plasma_domain::ids::MentionId;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authorized, Commands};
use crate::command::{Accepted, CommandOutcome};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json, PathId};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(flag))
        .routes(routes!(escalate))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

/// Flags a mention (spam, off-topic, …); a mention is flagged once.
#[utoipa::path(
    post,
    path = "/mentions/{id}/flag",
    tag = "mentions",
    params(("id" = Uuid, Path, description = "The mention's id")),
    request_body = Reason,
    responses(
        (status = 200, description = "Flagged", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: already flagged"),
        (status = 422, description = "`validation_failed`: the reason was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.mention.id = %id))]
async fn flag(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<MentionId>,
    meta: CommandMeta,
    Json(body): Json<Reason>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = MentionCommand::Flag {
        reason: body.reason,
        at: state.now(),
    };
    let outcome = state
        .execute::<Mention>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome))
}

/// Escalates a mention to a human (an angry customer, a press question); once per mention.
#[utoipa::path(
    post,
    path = "/mentions/{id}/escalate",
    tag = "mentions",
    params(("id" = Uuid, Path, description = "The mention's id")),
    request_body = Reason,
    responses(
        (status = 200, description = "Escalated", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: already escalated"),
        (status = 422, description = "`validation_failed`: the reason was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.mention.id = %id))]
async fn escalate(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<MentionId>,
    meta: CommandMeta,
    Json(body): Json<Reason>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = MentionCommand::Escalate {
        reason: body.reason,
        at: state.now(),
    };
    let outcome = state
        .execute::<Mention>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome))
}
