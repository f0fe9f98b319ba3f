//! Operations endpoints, outside `/v1` and without authentication: liveness, readiness and
//! Prometheus metrics.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(render_metrics))
}

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    status: &'static str,
    version: &'static str,
}

/// 200 while the process can answer at all.
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses((status = 200, description = "The process answers", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    status: &'static str,
    /// Position of the last stored event; absent when the store did not answer.
    head: Option<i64>,
    /// Most events a projection may lag before the gateway is not ready; absent when the
    /// projections run in other processes (their lag is then reported, not gated on).
    max_lag: Option<u64>,
    projections: Vec<ProjectionLag>,
    /// Why the gateway is not ready; empty when it is.
    problems: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ProjectionLag {
    name: &'static str,
    position: i64,
    lag: i64,
}

/// Checks the store answers and every projection is within `ready_max_lag` of its head; also
/// refreshes the store and projection gauges.
async fn probe(state: &AppState) -> Readiness {
    let max_lag = state.ready_max_lag();
    let mut problems = Vec::new();
    if state.is_draining() {
        problems.push("shutting down: finishing in-flight requests".to_owned());
    }
    let head = match state.store().head().await {
        Ok(head) => Some(head),
        Err(err) => {
            tracing::warn!(error.message = %err, "readiness: the event store does not answer");
            problems.push("the event store does not answer".to_owned());
            None
        }
    };
    let positions: HashMap<String, i64> = match state.read().store().positions().await {
        Ok(positions) => positions.into_iter().collect(),
        Err(err) => {
            tracing::warn!(error.message = %err, "readiness: the read store does not answer");
            problems.push("the read store does not answer".to_owned());
            HashMap::new()
        }
    };
    let mut projections = Vec::new();
    if let Some(head) = head {
        metrics::store_head(head);
        for &name in state.projections() {
            let position = positions.get(name).copied().unwrap_or(0);
            let lag = (head - position).max(0);
            plasma_projections::metrics::record_position(name, position, head);
            if max_lag.is_some_and(|max| lag.unsigned_abs() > max) {
                problems.push(format!(
                    "projection {name} is {lag} events behind (at most {} allowed)",
                    max_lag.unwrap_or_default()
                ));
            }
            projections.push(ProjectionLag {
                name,
                position,
                lag,
            });
        }
    }
    Readiness {
        status: if problems.is_empty() {
            "ready"
        } else {
            "not_ready"
        },
        head,
        max_lag,
        projections,
        problems,
    }
}

/// 200 when the store answers and every projection is close enough to its head; 503 with the
/// details otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `problems` says why", body = Readiness,
            content_type = "application/json"),
    )
)]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let readiness = probe(&state).await;
    let status = if readiness.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text exposition format",
        body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn render_metrics(State(state): State<AppState>) -> Response {
    // Gauges are read at scrape time, so they are as fresh as the scrape.
    probe(&state).await;
    let handle = state.metrics();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
