//! The HTTP gateway of Plasma Engine: a JSON API under `/v1` (axum), authenticated with bearer
//! JWTs, on top of the command handler (writes) and the read models (queries), with the
//! projection workers running in-process.
//!
//! - [`Settings`]: layered configuration (defaults → file → `PLASMA_*` → flags).
//! - [`Application`]: builds stores, workers and router; [`Application::run_until_stopped`].
//! - [`routes`]: the endpoints, and how to add a route module.
//! - [`error::ApiError`]: every failure, answered as `application/problem+json`.
//! - [`openapi`]: the OpenAPI 3.1 document (`/openapi.json`) and the docs page (`/docs`).
//! - [`demo`]: the `plasma dev --demo` data set.
//!
//! The `plasma` binary (`main.rs`) only parses its command line and wires these together.

// Tests may unwrap (a panic is a failed test); production code may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod clock;
pub mod command;
pub mod demo;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod rebuilds;
pub mod routes;
pub mod secret;
pub mod settings;
pub mod startup;
pub mod state;
pub mod workers;

pub use auth::{Principal, Role, TokenIssuer, TokenVerifier};
pub use clock::{Clock, SystemClock};
pub use error::ApiError;
pub use secret::Secret;
pub use settings::{Profile, Settings, SettingsError, SettingsLayer};
pub use startup::{Application, ComponentOutcome, RunReport, StartupError};
pub use state::AppState;
