//! Liveness, readiness and metrics.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{mention, spawn_app, Backend};

async fn health_answers_200_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

async fn ready_answers_200_once_every_projection_is_near_the_store_head(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    app.ingest(&token, id, (0..10).map(mention).collect()).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let response = app.client.get(app.url("/ready")).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "ready");
    assert_eq!(body["head"], 11);
    let names: Vec<&str> = body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "brands",
        "mentions",
        "brand_stats",
        "drafts",
        "agent_runs",
        "documents",
    ] {
        assert!(names.contains(&name), "{name} missing from {body}");
    }
}

async fn metrics_expose_http_event_and_projection_series(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    app.get(&format!("/v1/brands/{id}"), &token).await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        "http_requests_total{",
        "route=\"/v1/brands/{id}\"",
        "method=\"POST\"",
        "status=\"201\"",
        "http_request_duration_seconds_bucket{",
        "plasma_events_appended_total{aggregate_type=\"Brand\"}",
        "plasma_event_store_head_position",
        "plasma_projection_position{projection=\"brands\"}",
        "plasma_projection_lag_events{projection=\"mentions\"}",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
}

plasma_testkit::on_both_backends!(
    health_answers_200_without_a_token,
    ready_answers_200_once_every_projection_is_near_the_store_head,
    metrics_expose_http_event_and_projection_series,
);
