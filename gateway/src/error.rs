//! The gateway's one error type and its HTTP form.
//!
//! Every failure a handler or extractor can meet becomes an [`ApiError`]; [`ApiError::problem`]
//! maps each variant to status, stable code and title in one exhaustive `match`, and the answer
//! is `application/problem+json` (RFC 9457) with a `code` clients can branch on and, when one
//! field is at fault, `field`. 5xx bodies say nothing about the cause: the cause chain goes to
//! the log as `error.message` / `error.cause_chain`. Each code has a section in `docs/errors.md`.

mod domain;

use std::time::Duration;

use axum::http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plasma_commands::StoreError;
use plasma_projections::ProjectionError;
use serde::Serialize;

use crate::auth::AuthError;

/// The content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Unauthorized(AuthError),
    #[error("this request needs the {required} permission")]
    Forbidden { required: &'static str },
    /// The thing does not exist — or belongs to another tenant, which is answered the same way.
    #[error("{0}")]
    NotFound(String),
    /// A body field names something that does not exist for this tenant (e.g. the `brand_id`
    /// of a new draft); answered like [`ApiError::NotFound`], with the field.
    #[error("{message}")]
    UnknownReference {
        field: &'static str,
        message: String,
    },
    #[error("unknown aggregate type `{0}`: use Brand, Mention, Draft, AgentRun or Document")]
    UnknownAggregateType(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on this route")]
    MethodNotAllowed { method: String },
    #[error("{message}")]
    InvalidBody {
        field: Option<String>,
        message: String,
    },
    #[error("the body must be JSON: send `Content-Type: application/json` (a workflow definition may also be YAML: `application/yaml`)")]
    UnsupportedMediaType,
    #[error("{message}")]
    InvalidQuery {
        field: Option<String>,
        message: String,
    },
    #[error("{message}")]
    InvalidId { field: String, message: String },
    #[error("{message}")]
    InvalidHeader {
        header: &'static str,
        message: String,
    },
    /// The domain refused a value.
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// The command is not allowed in the aggregate's current state.
    #[error("{0}")]
    IllegalTransition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the aggregate kept changing concurrently ({attempts} attempts); retry the request")]
    VersionConflict { attempts: u32 },
    #[error("this Idempotency-Key was already used for a different request; use a new key")]
    IdempotencyKeyReused,
    /// Asked for something only a deployment with the log can do (a rebuild from the log).
    #[error("{0}")]
    LogNotConfigured(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{count} mentions in one request; the limit is {max} per request")]
    TooManyMentions { count: usize, max: usize },
    #[error("too many requests for this tenant; retry in {}s", retry_seconds(.retry_after))]
    RateLimited { retry_after: Duration },
    #[error(
        "the read models have not reached position {min_position} within {}ms; retry shortly",
        .waited.as_millis()
    )]
    NotYetConsistent { min_position: i64, waited: Duration },
    #[error(
        "position {min_position} has not been written yet (the event store's head is {head}): \
         pass a position a command answered with"
    )]
    PositionNotWritten { min_position: i64, head: i64 },
    #[error("the request did not finish within {}ms", .after.as_millis())]
    Timeout { after: Duration },
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// Unexpected failures: answered 500 `internal`, logged with their cause chain.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("event store failure")]
    Store(#[source] StoreError),
    #[error("read model failure")]
    ReadModel(#[source] ProjectionError),
    #[error("encoding JSON")]
    Json(#[from] serde_json::Error),
    #[error("a handler panicked: {0}")]
    Panic(String),
    /// A blocking task (a model run) failed.
    #[error("a blocking task failed: {0}")]
    Task(String),
}

/// What the HTTP answer of one error consists of.
#[derive(Debug)]
struct ProblemParts {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    field: Option<String>,
    retry_after: Option<u64>,
}

/// An error answer (RFC 9457 problem details), served as `application/problem+json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:plasma:error:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:plasma:error:validation_failed")]
    kind: String,
    /// For people; may change.
    #[schema(example = "Validation failed")]
    title: &'a str,
    /// The HTTP status, repeated.
    #[schema(example = 422)]
    status: u16,
    /// What went wrong with this request, for people. 5xx answers say nothing of the cause.
    #[schema(example = "`name` must not be empty")]
    detail: String,
    /// Stable and snake_case: what clients branch on (one section each in docs/errors.md).
    #[schema(example = "validation_failed")]
    code: &'a str,
    /// The one field at fault, when there is one: a body path, a query parameter, `id` or
    /// `index` for a path parameter, or a header name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "name")]
    field: Option<&'a str>,
}

fn retry_seconds(d: &Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl ApiError {
    /// The one place errors become HTTP: status, stable code, title, field, Retry-After.
    fn problem(&self) -> ProblemParts {
        use StatusCode as S;
        let parts = |status, code, title| ProblemParts {
            status,
            code,
            title,
            field: None,
            retry_after: None,
        };
        match self {
            Self::Unauthorized(AuthError::KeysUnavailable) => ProblemParts {
                retry_after: Some(5),
                ..parts(
                    S::SERVICE_UNAVAILABLE,
                    "auth_unavailable",
                    "Token keys unavailable",
                )
            },
            Self::Unauthorized(_) => parts(S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden { .. } => parts(S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => parts(S::NOT_FOUND, "not_found", "Not found"),
            Self::UnknownReference { field, .. } => ProblemParts {
                field: Some((*field).to_owned()),
                ..parts(S::NOT_FOUND, "not_found", "Not found")
            },
            Self::UnknownAggregateType(_) => parts(
                S::NOT_FOUND,
                "unknown_aggregate_type",
                "Unknown aggregate type",
            ),
            Self::RouteNotFound { .. } => parts(S::NOT_FOUND, "route_not_found", "No such route"),
            Self::MethodNotAllowed { .. } => parts(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::InvalidBody { field, .. } => ProblemParts {
                field: field.clone(),
                ..parts(S::BAD_REQUEST, "invalid_body", "Invalid request body")
            },
            Self::UnsupportedMediaType => parts(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::InvalidQuery { field, .. } => ProblemParts {
                field: field.clone(),
                ..parts(S::BAD_REQUEST, "invalid_query", "Invalid query parameter")
            },
            Self::InvalidId { field, .. } => ProblemParts {
                field: Some(field.clone()),
                ..parts(S::BAD_REQUEST, "invalid_id", "Invalid id")
            },
            Self::InvalidHeader { header, .. } => ProblemParts {
                field: Some((*header).to_owned()),
                ..parts(S::BAD_REQUEST, "invalid_header", "Invalid header")
            },
            Self::Validation { field, .. } => ProblemParts {
                field: field.clone(),
                ..parts(
                    S::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "Validation failed",
                )
            },
            Self::IllegalTransition(_) => parts(
                S::CONFLICT,
                "illegal_transition",
                "Illegal state transition",
            ),
            Self::AlreadyExists(_) => parts(S::CONFLICT, "already_exists", "Already exists"),
            Self::VersionConflict { .. } => {
                parts(S::CONFLICT, "version_conflict", "Concurrent modification")
            }
            Self::LogNotConfigured(_) => ProblemParts {
                field: Some("source".to_owned()),
                ..parts(S::CONFLICT, "log_not_configured", "No log configured")
            },
            Self::IdempotencyKeyReused => parts(
                S::CONFLICT,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            Self::PayloadTooLarge { .. } => parts(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::TooManyMentions { .. } => ProblemParts {
                field: Some("mentions".to_owned()),
                ..parts(
                    S::PAYLOAD_TOO_LARGE,
                    "too_many_mentions",
                    "Too many mentions in one request",
                )
            },
            Self::RateLimited { retry_after } => ProblemParts {
                retry_after: Some(retry_seconds(retry_after).max(1)),
                ..parts(S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests")
            },
            Self::PositionNotWritten { .. } => ProblemParts {
                field: Some("min_position".to_owned()),
                ..parts(S::CONFLICT, "position_not_written", "Position not written")
            },
            Self::NotYetConsistent { .. } => ProblemParts {
                retry_after: Some(1),
                ..parts(
                    S::SERVICE_UNAVAILABLE,
                    "not_yet_consistent",
                    "Read models not yet consistent",
                )
            },
            Self::Timeout { .. } => ProblemParts {
                retry_after: Some(1),
                ..parts(S::SERVICE_UNAVAILABLE, "timeout", "Request timed out")
            },
            Self::Internal(_) => parts(S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        self.problem().code
    }

    pub fn status(&self) -> StatusCode {
        self.problem().status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.problem();
        let detail = if parts.status.is_server_error() && matches!(self, Self::Internal(_)) {
            trace_cause_chain(&self, parts.code);
            "The server failed to answer this request. The failure is logged; retry later or \
             report it with the time of the request."
                .to_owned()
        } else {
            if parts.status.is_server_error() {
                tracing::warn!(code = parts.code, error.message = %self, "request not served");
            } else {
                tracing::debug!(code = parts.code, error.message = %self, "request refused");
            }
            self.to_string()
        };
        let body = Problem {
            kind: format!("urn:plasma:error:{}", parts.code),
            title: parts.title,
            status: parts.status.as_u16(),
            detail,
            code: parts.code,
            field: parts.field.as_deref(),
        };
        // Serializing this struct cannot fail; fall back to a fixed body rather than panic.
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"type":"urn:plasma:error:internal","title":"Internal error","status":500,"code":"internal"}"#.to_vec()
        });
        let mut response = (parts.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = parts.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if parts.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::PayloadTooLarge { .. }) {
            // The rest of the body is left unread, so this connection cannot carry another
            // request; say so, or a client may reuse it and fail.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Logs an error with its whole `source()` chain.
pub fn trace_cause_chain(error: &(dyn std::error::Error + 'static), code: &str) {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    tracing::error!(
        code,
        error.message = %error,
        error.cause_chain = ?chain,
        "request failed"
    );
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => Self::VersionConflict { attempts: 1 },
            // The command id was recorded by a concurrent request whose receipt is not this
            // command's kind: the key was reused for something else.
            StoreError::DuplicateCommand => Self::IdempotencyKeyReused,
            err @ (StoreError::Database { .. }
            | StoreError::Migrate { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Config(_)) => Self::Internal(InternalError::Store(err)),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(err: ProjectionError) -> Self {
        match err {
            ProjectionError::BadCursor(_) => Self::InvalidQuery {
                field: Some("after".to_owned()),
                message: err.to_string(),
            },
            ProjectionError::NotYetConsistent {
                min_position,
                waited,
            } => Self::NotYetConsistent {
                min_position,
                waited,
            },
            ProjectionError::PositionNotWritten { min_position, head } => {
                Self::PositionNotWritten { min_position, head }
            }
            err @ (ProjectionError::Database { .. }
            | ProjectionError::Store(_)
            | ProjectionError::Log(_)
            | ProjectionError::Worker(_)
            | ProjectionError::BadCheckpoint { .. }
            | ProjectionError::BadValue { .. }
            | ProjectionError::UnknownProjection(_)
            | ProjectionError::Config(_)) => Self::Internal(InternalError::ReadModel(err)),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        Self::Internal(InternalError::Json(err))
    }
}
