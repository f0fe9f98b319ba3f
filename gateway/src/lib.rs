//! The HTTP API of Plasma Engine, as a library: a JSON API under `/v1` (axum), authenticated
//! with bearer JWTs, on top of the command handler (writes) and the read models (queries).
//!
//! - [`routes::router`]: the endpoints, and how to add a route module.
//! - [`AppState`]: what every handler can reach, built from [`state::StateParts`].
//! - [`options`]: the HTTP components' options, assembled by the binary's settings.
//! - [`error::ApiError`]: every failure, answered as `application/problem+json`, mapped in one
//!   place.
//! - [`openapi`]: the OpenAPI 3.1 document (`/openapi.json`) and the docs page (`/docs`).
//! - [`mcp`]: the tool registry over MCP (streamable HTTP at `/v1/mcp`, stdio for `plasma mcp`).
//!
//! The `plasma` binary (the cli crate) builds the stores and workers, then serves this router.

// Tests may unwrap (a panic is a failed test); production code may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod clock;
pub mod command;
pub mod error;
pub mod extract;
pub mod mcp;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod options;
pub mod rate_limit;
pub mod rebuilds;
mod retrieval;
pub mod routes;
mod schema_rules;
pub mod secret;
pub mod state;

pub use auth::{Principal, Role, TokenIssuer, TokenVerifier};
pub use clock::{Clock, SystemClock};
pub use error::ApiError;
pub use secret::Secret;
pub use state::AppState;
