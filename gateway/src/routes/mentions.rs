//! Commands on single mentions. (Listing and bulk ingest live under `/brands/{id}/mentions`.)

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use plasma_domain::brand::{Mention, MentionCommand};
use plasma_domain::ids::MentionId;
use plasma_domain::AggregateId;
use serde::Deserialize;

use crate::auth::{Authorized, Commands};
use crate::command::{Accepted, CommandOutcome, Target};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json, PathId};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/mentions/{id}/flag", post(flag))
        .route("/mentions/{id}/escalate", post(escalate))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

/// Flags a mention (spam, off-topic, …); a mention is flagged once.
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
        .execute::<Mention>(
            caller.tenant(),
            &meta,
            Target::Existing(id.as_uuid()),
            command,
            &state.services().mention,
        )
        .await?;
    Ok(Accepted::ok(outcome))
}

/// Escalates a mention to a human (an angry customer, a press question); once per mention.
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
        .execute::<Mention>(
            caller.tenant(),
            &meta,
            Target::Existing(id.as_uuid()),
            command,
            &state.services().mention,
        )
        .await?;
    Ok(Accepted::ok(outcome))
}
