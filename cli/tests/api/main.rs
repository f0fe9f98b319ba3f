//! API tests: the real server on port 0, each test on a fresh store, every test once on SQLite
//! and once on PostgreSQL. `TEST_LOG=1` turns logs on (filter with `PLASMA_LOG`).

// Tests may unwrap and panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod helpers;

mod admin;
mod agent_runs;
mod agents;
mod alerts;
mod analytics;
mod audit;
mod auth;
mod bad_input;
mod brands;
mod consistency;
mod demo;
mod documents;
mod drafts;
mod graph;
mod idempotency;
mod mcp;
mod oidc;
mod openapi;
mod ops;
mod rate_limit;
mod research;
mod tenancy;
