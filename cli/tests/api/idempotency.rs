//! `Idempotency-Key`: a retried command gets its first answer and appends nothing.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{mention, problem, problem_with_field, spawn_app, Backend};

async fn the_same_idempotency_key_twice_gives_the_same_answer_and_one_set_of_events(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let key = Uuid::new_v4().to_string();
    let register = || {
        app.client
            .post(app.url("/v1/brands"))
            .bearer_auth(&token)
            .header("idempotency-key", &key)
            .json(&json!({"name": "Acme", "keywords": ["acme"]}))
            .send()
    };
    let first = register().await.unwrap();
    let second = register().await.unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201);
    assert_eq!(
        first.headers().get("location"),
        second.headers().get("location")
    );
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(second.headers().get("idempotent-replayed").unwrap(), "true");
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first["command_id"], key.as_str());
    let brand = first["aggregate_id"].as_str().unwrap().to_owned();
    assert_eq!(app.event_count(&token).await, 1);

    let bulk_key = Uuid::new_v4().to_string();
    // A retry resends the same request (mention() stamps the current time, so build it once).
    let body = json!({"mentions": [mention(1), mention(2)]});
    let ingest = || {
        app.client
            .post(app.url(&format!("/v1/brands/{brand}/mentions")))
            .bearer_auth(&token)
            .header("idempotency-key", &bulk_key)
            .json(&body)
            .send()
    };
    let first: Value = ingest().await.unwrap().json().await.unwrap();
    let second: Value = ingest().await.unwrap().json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first["ingested"], 2);
    assert_eq!(app.event_count(&token).await, 3);

    // The same key with other mentions is another request: refused, nothing written.
    let other = app
        .client
        .post(app.url(&format!("/v1/brands/{brand}/mentions")))
        .bearer_auth(&token)
        .header("idempotency-key", &bulk_key)
        .json(&json!({"mentions": [mention(3)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["code"], "idempotency_key_reused");
    assert_eq!(app.event_count(&token).await, 3);
}

async fn an_idempotency_key_reused_for_another_request_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let other = app.register_brand(&token, "Globex").await;
    let other = other["aggregate_id"].as_str().unwrap();
    let key = Uuid::new_v4().to_string();
    let response = app
        .client
        .post(app.url("/v1/brands"))
        .bearer_auth(&token)
        .header("idempotency-key", &key)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let before = app.event_count(&token).await;

    let response = app
        .client
        .put(app.url(&format!("/v1/brands/{other}/keywords")))
        .bearer_auth(&token)
        .header("idempotency-key", &key)
        .json(&json!({"keywords": ["globex"]}))
        .send()
        .await
        .unwrap();
    problem(response, 409, "idempotency_key_reused").await;
    let response = app
        .client
        .post(app.url(&format!("/v1/brands/{other}/mentions")))
        .bearer_auth(&token)
        .header("idempotency-key", &key)
        .json(&json!({"mentions": [mention(1)]}))
        .send()
        .await
        .unwrap();
    problem(response, 409, "idempotency_key_reused").await;

    let response = app
        .client
        .post(app.url("/v1/brands"))
        .bearer_auth(&token)
        .header("idempotency-key", "not-a-uuid")
        .json(&json!({"name": "Initech"}))
        .send()
        .await
        .unwrap();
    problem_with_field(response, 400, "invalid_header", "Idempotency-Key").await;
    assert_eq!(app.event_count(&token).await, before);
}

plasma_testkit::on_both_backends!(
    the_same_idempotency_key_twice_gives_the_same_answer_and_one_set_of_events,
    an_idempotency_key_reused_for_another_request_is_refused,
);
