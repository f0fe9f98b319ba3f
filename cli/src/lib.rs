//! The `plasma` binary's library: one [`Settings`] assembled from each component's options, the
//! [`Application`] a gateway process runs (stores, in-process projection runners, the HTTP
//! server), one [`supervisor`] for every long-running component, the server-mode process
//! commands ([`log`]), and the demo data set ([`demo`]).
//!
//! `main.rs` only parses the command line ([`args`]) and dispatches.

// Tests may unwrap (a panic is a failed test); production code may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod args;
pub mod demo;
pub mod graph;
pub mod log;
pub mod settings;
pub mod supervisor;
pub mod telemetry;
pub mod workers;

pub use app::{Application, ComponentOutcome, RunReport, StartupError};
pub use settings::{Profile, Settings, SettingsError, SettingsLayer};
