//! Domain errors as API errors, decided per variant: a refused value is 422
//! `validation_failed` (with its field), a command the current state does not allow is 409
//! `illegal_transition`, a missing aggregate is 404 `not_found`.
//!
//! The matches are exhaustive on purpose: a new domain error variant does not compile until
//! someone decides its status here.

use plasma_commands::{BulkIngestError, CommandError};
use plasma_domain::agent::{AgentRunError, WorkflowError};
use plasma_domain::brand::{AlertError, BrandError, DeliveryError, MentionError, RulesError};
use plasma_domain::content::DraftError;
use plasma_domain::research::DocumentError;
use plasma_domain::text::TextError;

use super::ApiError;

fn invalid(field: &str, message: impl ToString) -> ApiError {
    ApiError::Validation {
        field: Some(field.to_owned()),
        message: message.to_string(),
    }
}

fn transition(err: impl ToString) -> ApiError {
    ApiError::IllegalTransition(err.to_string())
}

impl From<TextError> for ApiError {
    fn from(err: TextError) -> Self {
        invalid(err.field(), &err)
    }
}

impl<E> From<CommandError<E>> for ApiError
where
    E: std::error::Error + 'static,
    ApiError: From<E>,
{
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Domain(err) => err.into(),
            CommandError::Conflict { attempts } => Self::VersionConflict { attempts },
            CommandError::IdempotencyKeyReused => Self::IdempotencyKeyReused,
            CommandError::Store(err) => err.into(),
        }
    }
}

impl From<BrandError> for ApiError {
    fn from(err: BrandError) -> Self {
        match err {
            BrandError::AlreadyRegistered => Self::AlreadyExists(err.to_string()),
            BrandError::NotFound => Self::NotFound("the brand does not exist".into()),
            BrandError::Archived => transition(err),
            BrandError::CompetesWithItself(_) => invalid("competitors", err),
            BrandError::Invalid(err) => err.into(),
            BrandError::Rules(err) => err.into(),
        }
    }
}

impl From<RulesError> for ApiError {
    fn from(err: RulesError) -> Self {
        match err {
            RulesError::BadK(_) => invalid("k", err),
            RulesError::BadMinVolume(_) => invalid("min_volume", err),
            RulesError::TooManyChannels(_) => invalid("channels", err),
            RulesError::BadChannelId(_) | RulesError::DuplicateChannel(_) => {
                invalid("channels.id", err)
            }
            RulesError::BadChannelUrl(_) => invalid("channels.url", err),
            RulesError::Invalid(err) => err.into(),
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(err: AlertError) -> Self {
        match err {
            AlertError::NotFound => Self::NotFound("the alert does not exist".into()),
            AlertError::AlreadyAcknowledged | AlertError::AlreadyResolved => transition(err),
            AlertError::SnoozeInThePast => invalid("until", err),
            AlertError::Invalid(err) => err.into(),
        }
    }
}

impl From<DeliveryError> for ApiError {
    fn from(err: DeliveryError) -> Self {
        match err {
            DeliveryError::NotFound => Self::NotFound("the delivery does not exist".into()),
            DeliveryError::NotNextAttempt { .. }
            | DeliveryError::NotPending
            | DeliveryError::StillPending => transition(err),
        }
    }
}

impl From<MentionError> for ApiError {
    fn from(err: MentionError) -> Self {
        match err {
            MentionError::NotFound => Self::NotFound("the mention does not exist".into()),
            MentionError::AlreadyFlagged | MentionError::AlreadyEscalated => transition(err),
            MentionError::BadUrl => invalid("url", err),
            MentionError::Invalid(err) => err.into(),
        }
    }
}

impl From<BulkIngestError> for ApiError {
    fn from(err: BulkIngestError) -> Self {
        match err {
            BulkIngestError::BrandNotFound => Self::NotFound("the brand does not exist".into()),
            BulkIngestError::BrandArchived => transition(err),
            BulkIngestError::InvalidMention { index, error } => {
                // The mention's own field, under its place in the request.
                let field = match &error {
                    MentionError::Invalid(text) => text.field(),
                    MentionError::BadUrl => "url",
                    MentionError::NotFound
                    | MentionError::AlreadyFlagged
                    | MentionError::AlreadyEscalated => "",
                };
                let field = if field.is_empty() {
                    format!("mentions[{index}]")
                } else {
                    format!("mentions[{index}].{field}")
                };
                invalid(&field, format!("mention {index}: {error}"))
            }
        }
    }
}

impl From<DraftError> for ApiError {
    fn from(err: DraftError) -> Self {
        match err {
            DraftError::AlreadyRequested => Self::AlreadyExists(err.to_string()),
            DraftError::NotFound => Self::NotFound("the draft does not exist".into()),
            DraftError::NoText
            | DraftError::VoiceNotChecked
            | DraftError::VoiceCheckFailed
            | DraftError::NotApproved
            | DraftError::Rejected
            | DraftError::Locked(_)
            | DraftError::Published => transition(err),
            DraftError::PublishAtNotInFuture => invalid("publish_at", err),
            DraftError::BadUrl => invalid("url", err),
            DraftError::Invalid(err) => err.into(),
        }
    }
}

impl From<AgentRunError> for ApiError {
    fn from(err: AgentRunError) -> Self {
        match err {
            AgentRunError::AlreadyStarted => Self::AlreadyExists(err.to_string()),
            AgentRunError::NotFound => Self::NotFound("the agent run does not exist".into()),
            AgentRunError::Finished(_)
            | AgentRunError::Paused
            | AgentRunError::NotPaused
            | AgentRunError::StepInProgress { .. }
            | AgentRunError::NoStepInProgress
            | AgentRunError::StepMismatch { .. }
            | AgentRunError::NoCheckpoint
            | AgentRunError::NotManaged
            | AgentRunError::Managed
            | AgentRunError::NotWaitingForInput
            | AgentRunError::NotAMap { .. }
            | AgentRunError::NotFinished(_) => transition(err),
            AgentRunError::BadState => invalid("checkpoint", err),
            AgentRunError::KeepNone => invalid("keep", err),
            // Naming a checkpoint the run does not have is a refused value, like an entity
            // pointing at a chunk that does not exist; resuming a run that has no checkpoint
            // at all (`NoCheckpoint`) is a matter of its state.
            AgentRunError::CheckpointNotFound(_) => invalid("checkpoint", err),
            AgentRunError::TooManyCheckpoints { .. } => invalid("name", err),
            AgentRunError::JsonTooLarge { field, .. } => invalid(field, err),
            AgentRunError::Invalid(err) => err.into(),
        }
    }
}

impl From<WorkflowError> for ApiError {
    fn from(err: WorkflowError) -> Self {
        match &err {
            WorkflowError::BadName(_) => invalid("name", err),
            WorkflowError::Invalid(_) => invalid("definition", err),
            WorkflowError::Step { step, .. } => invalid(&format!("steps.{step}"), err),
            WorkflowError::NotFound(_) => Self::NotFound(err.to_string()),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(err: DocumentError) -> Self {
        match err {
            DocumentError::AlreadyIngested => Self::AlreadyExists(err.to_string()),
            DocumentError::NotFound => Self::NotFound("the document does not exist".into()),
            DocumentError::ChunkSizeOutOfRange { .. } => invalid("max_chars", err),
            DocumentError::OverlapTooLarge { .. } => invalid("overlap", err),
            DocumentError::AlreadyChunked { .. }
            | DocumentError::NotChunked
            | DocumentError::Removed => transition(err),
            DocumentError::UnknownChunk { .. } | DocumentError::DuplicateEntity(_) => {
                invalid("entities", err)
            }
            DocumentError::UnknownEntity(_) => invalid("relations", err),
            DocumentError::DimensionOutOfRange { .. } => invalid("model.dimension", err),
            DocumentError::VectorsDoNotCoverChunks { .. }
            | DocumentError::WrongDimension { .. }
            | DocumentError::NotAUnitVector { .. } => invalid("vectors", err),
            DocumentError::Invalid(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn refused_values_name_their_field_and_state_errors_are_conflicts() {
        let err = ApiError::from(BrandError::Invalid(TextError::Empty { field: "name" }));
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(matches!(err, ApiError::Validation { field: Some(f), .. } if f == "name"));
        assert_eq!(
            ApiError::from(MentionError::AlreadyFlagged).code(),
            "illegal_transition"
        );
        assert_eq!(ApiError::from(DraftError::NotFound).code(), "not_found");
    }

    #[test]
    fn a_missing_named_checkpoint_is_a_refused_value_but_no_checkpoint_at_all_is_a_state() {
        let err = ApiError::from(AgentRunError::CheckpointNotFound("plan".into()));
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(matches!(err, ApiError::Validation { field: Some(f), .. } if f == "checkpoint"));
        assert_eq!(
            ApiError::from(AgentRunError::NoCheckpoint).code(),
            "illegal_transition"
        );
        assert_eq!(
            ApiError::from(DraftError::Rejected).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(DraftError::NotApproved).code(),
            "illegal_transition"
        );
        assert_eq!(
            ApiError::from(DocumentError::AlreadyChunked {
                max_chars: 500,
                overlap: 0
            })
            .code(),
            "illegal_transition"
        );
    }

    #[test]
    fn a_bad_mention_in_a_bulk_request_is_named_by_its_index() {
        let err = ApiError::from(BulkIngestError::InvalidMention {
            index: 7,
            error: MentionError::Invalid(TextError::Empty { field: "text" }),
        });
        assert!(
            matches!(err, ApiError::Validation { field: Some(f), .. } if f == "mentions[7].text")
        );
    }
}
