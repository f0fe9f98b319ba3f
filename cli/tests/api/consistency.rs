//! Read-your-writes with `min_position`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{
    mention, position, problem, problem_with_field, spawn_app, spawn_app_with, Backend,
};

async fn a_query_with_the_commands_position_sees_the_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    let position = brand["position"].as_i64().unwrap();
    assert!(position > 0);

    let response = app
        .get(&format!("/v1/brands/{id}?min_position={position}"), &token)
        .await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["name"], "Acme");

    let bulk = app.ingest(&token, id, (0..25).map(mention).collect()).await;
    let position = bulk["last_position"].as_i64().unwrap();
    let page: Value = app
        .get(
            &format!("/v1/brands/{id}/mentions?min_position={position}&limit=500"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 25);
    let stats: Value = app
        .get(
            &format!("/v1/brands/{id}/stats?min_position={position}"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"]["volume"], 25);
}

async fn a_position_never_written_is_answered_409_at_once(backend: Backend) {
    let wait = Duration::from_secs(5);
    let app = spawn_app_with(backend, |settings| {
        settings.consistency.min_position_wait = Some(wait);
    })
    .await;
    let token = app.admin();
    app.register_brand(&token, "Acme").await;
    let started = Instant::now();
    let response = app.get("/v1/brands?min_position=1000000", &token).await;
    let body = problem_with_field(response, 409, "position_not_written", "min_position").await;
    assert!(
        started.elapsed() < wait,
        "it waited: {:?}",
        started.elapsed()
    );
    assert!(
        body["detail"].as_str().unwrap().contains("head is 1"),
        "{body}"
    );
}

async fn a_written_position_not_yet_applied_answers_503_with_retry_after(backend: Backend) {
    let wait = Duration::from_millis(300);
    // No projection runs in this gateway: nothing applies what is written.
    let app = spawn_app_with(backend, |settings| {
        settings.consistency.min_position_wait = Some(wait);
        settings.projections.mode = Some(plasma_cli::settings::ProjectionsMode::External);
    })
    .await;
    let token = app.admin();
    let written = position(&app.register_brand(&token, "Acme").await);
    let started = Instant::now();
    let response = app
        .get(&format!("/v1/brands?min_position={written}"), &token)
        .await;
    let elapsed = started.elapsed();
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    problem(response, 503, "not_yet_consistent").await;
    assert!(elapsed >= wait, "answered after {elapsed:?}");
    assert!(
        elapsed < wait + Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
}

plasma_testkit::on_both_backends!(
    a_query_with_the_commands_position_sees_the_write,
    a_position_never_written_is_answered_409_at_once,
    a_written_position_not_yet_applied_answers_503_with_retry_after,
);
