//! Metric names (with units) and the Prometheus recorder behind `GET /metrics`.
//!
//! The recorder is process-global (the `metrics` facade has one): several gateways in one
//! process, as in the tests, share it. The read side's metrics are the projections crate's.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `method`, matched `route` and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Time to answer a request, by `method`, matched `route` and `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
/// Events appended through this gateway's commands, by `aggregate_type`.
pub const EVENTS_APPENDED_TOTAL: &str = "plasma_events_appended_total";
/// Global position of the event store's last event.
pub const EVENT_STORE_HEAD_POSITION: &str = "plasma_event_store_head_position";

/// The route label of requests no route matched, so unknown paths cannot blow up cardinality.
const UNMATCHED_ROUTE: &str = "unmatched";

const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's Prometheus recorder, installed on first use.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
                        DURATION_BUCKETS,
                    )
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            let handle = builder().install_recorder().unwrap_or_else(|err| {
                // Someone else installed a global recorder first: ours still renders, but
                // only what is recorded on it directly (nothing, through the macros).
                tracing::warn!(error.message = %err, "a metrics recorder was already installed");
                builder().build_recorder().handle()
            });
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests answered");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request"
    );
    metrics::describe_counter!(
        EVENTS_APPENDED_TOTAL,
        "Events appended by commands through this gateway"
    );
    metrics::describe_gauge!(
        EVENT_STORE_HEAD_POSITION,
        "Position of the last stored event"
    );
    plasma_projections::metrics::describe();
}

pub fn events_appended(aggregate_type: &'static str, count: u64) {
    if count > 0 {
        metrics::counter!(EVENTS_APPENDED_TOTAL, "aggregate_type" => aggregate_type)
            .increment(count);
    }
}

pub fn store_head(head: i64) {
    metrics::gauge!(EVENT_STORE_HEAD_POSITION).set(head as f64);
}

/// Middleware: counts and times every request by method, matched route and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    tracing::Span::current().record("http.response.status_code", response.status().as_u16());
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
