//! The bad-input matrix: every refusal is problem+json with a stable code (and the field when
//! there is one), and none of them writes an event.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    mention, problem, problem_with_field, spawn_app, spawn_app_with, Backend, TestApp,
};

/// Registers a brand, waits for nothing, and returns its id and the tenant's event count.
async fn setup(app: &TestApp, token: &str) -> (String, usize) {
    let brand = app.register_brand(token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap().to_owned();
    app.ingest(token, &id, vec![mention(1)]).await;
    (id, app.event_count(token).await)
}

async fn malformed_unknown_missing_and_mistyped_bodies_are_400_with_the_field_and_write_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let (id, events) = setup(&app, &token).await;
    let json = Some("application/json");

    let body = problem(
        app.post_raw("/v1/brands", &token, json, r#"{"name": "#)
            .await,
        400,
        "invalid_body",
    )
    .await;
    assert!(body.get("field").is_none(), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("malformed JSON"));

    let cases: [(&str, Value, &str); 6] = [
        (
            "/v1/brands",
            json!({"name": "X", "colour": "red"}),
            "colour",
        ),
        (
            "/v1/brands",
            json!({"name": "X", "voice": {"font": "serif"}}),
            "voice.font",
        ),
        ("/v1/brands", json!({"keywords": ["x"]}), "name"),
        ("/v1/brands", json!({"name": 42}), "name"),
        (
            "/v1/brands",
            json!({"name": "X", "keywords": "acme"}),
            "keywords",
        ),
        (
            "/v1/brands/{id}/mentions",
            json!({"mentions": [mention(2), {"source": "x", "external_id": "y", "text": "z", "published_at": "yesterday"}]}),
            "mentions[1].published_at",
        ),
    ];
    for (path, body, field) in cases {
        let path = path.replace("{id}", &id);
        let response = app.post_json(&path, &token, &body).await;
        problem_with_field(response, 400, "invalid_body", field).await;
    }
    let response = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &token,
            &json!({"keywords": [1]}),
        )
        .await;
    problem_with_field(response, 400, "invalid_body", "keywords[0]").await;

    // Not declared as JSON.
    let response = app
        .post_raw("/v1/brands", &token, Some("text/plain"), r#"{"name": "X"}"#)
        .await;
    problem(response, 415, "unsupported_media_type").await;
    let response = app
        .post_raw("/v1/brands", &token, None, r#"{"name": "X"}"#)
        .await;
    problem(response, 415, "unsupported_media_type").await;

    assert_eq!(app.event_count(&token).await, events);
}

async fn bad_ids_and_query_parameters_are_400_with_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let (id, events) = setup(&app, &token).await;

    for (path, field) in [
        ("/v1/brands/not-a-uuid", "id"),
        ("/v1/brands/12345/mentions", "id"),
        ("/v1/audit/Brand/nope/events", "id"),
    ] {
        problem_with_field(app.get(path, &token).await, 400, "invalid_id", field).await;
    }
    let response = app
        .put_json(
            "/v1/brands/not-a-uuid/keywords",
            &token,
            &json!({"keywords": []}),
        )
        .await;
    problem_with_field(response, 400, "invalid_id", "id").await;
    let response = app
        .post_json("/v1/mentions/xyz/flag", &token, &json!({"reason": "spam"}))
        .await;
    problem_with_field(response, 400, "invalid_id", "id").await;

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("sentiment=angry", "sentiment"),
        ("from=yesterday", "from"),
        ("after=garbage", "after"),
        ("colour=red", "colour"),
        ("min_position=-3", "min_position"),
    ] {
        let response = app
            .get(&format!("/v1/brands/{id}/mentions?{query}"), &token)
            .await;
        problem_with_field(response, 400, "invalid_query", field).await;
    }
    // Query parameters are checked before any lookup: a bad cursor is a 400 even for a brand
    // the read model does not (yet) hold, rather than a 404 that depends on projection lag.
    let unknown = Uuid::now_v7();
    let response = app
        .get(
            &format!("/v1/brands/{unknown}/mentions?after=garbage"),
            &token,
        )
        .await;
    problem_with_field(response, 400, "invalid_query", "after").await;
    // A backwards range has no days: answered, empty (once the read models hold the brand;
    // until then the brand is unknown there, a 404).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let response = loop {
        let response = app
            .get(
                &format!("/v1/brands/{id}/stats?from=2026-02-01&to=2026-01-01"),
                &token,
            )
            .await;
        if response.status() != 404 || std::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(response.status(), 200);
    let stats: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stats["days"], serde_json::json!([]));
    assert_eq!(app.event_count(&token).await, events);
}

async fn values_the_domain_refuses_are_422_with_the_field_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let (id, events) = setup(&app, &token).await;

    let response = app
        .post_json("/v1/brands", &token, &json!({"name": "   "}))
        .await;
    problem_with_field(response, 422, "validation_failed", "name").await;
    let response = app
        .post_json(
            "/v1/brands",
            &token,
            &json!({"name": "Acme", "competitors": ["ACME"]}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "competitors").await;
    let mut bad = mention(3);
    bad["text"] = json!("   ");
    let response = app
        .post_json(
            &format!("/v1/brands/{id}/mentions"),
            &token,
            &json!({"mentions": [mention(2), bad]}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "mentions[1].text").await;
    let mut bad = mention(4);
    bad["url"] = json!("javascript:alert(1)");
    let response = app
        .post_json(
            &format!("/v1/brands/{id}/mentions"),
            &token,
            &json!({"mentions": [bad]}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "mentions[0].url").await;
    let response = app
        .post_json(
            &format!("/v1/brands/{id}/mentions"),
            &token,
            &json!({"mentions": []}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "mentions").await;
    assert_eq!(app.event_count(&token).await, events);
}

async fn commands_the_current_state_does_not_allow_are_409_illegal_transition(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let (id, _) = setup(&app, &token).await;
    let events = app.tenant_events(&token).await;
    let mention_id = events
        .iter()
        .find(|e| e["event_type"] == "MentionIngested")
        .unwrap()["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let flag_path = format!("/v1/mentions/{mention_id}/flag");
    let reason = json!({"reason": "spam"});
    let flag = || app.post_json(&flag_path, &token, &reason);
    assert_eq!(flag().await.status(), 200);
    let count = app.event_count(&token).await;
    problem(flag().await, 409, "illegal_transition").await;

    let archive_path = format!("/v1/brands/{id}/archive");
    let empty = json!({});
    let archive = || app.post_json(&archive_path, &token, &empty);
    assert_eq!(archive().await.status(), 200);
    let count_after_archive = app.event_count(&token).await;
    assert_eq!(count_after_archive, count + 1);
    problem(archive().await, 409, "illegal_transition").await;
    let response = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &token,
            &json!({"keywords": ["x"]}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;
    let response = app
        .post_json(
            &format!("/v1/brands/{id}/mentions"),
            &token,
            &json!({"mentions": [mention(9)]}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;
    assert_eq!(app.event_count(&token).await, count_after_archive);
}

async fn an_oversized_body_is_413_with_the_limit_and_writes_nothing(backend: Backend) {
    let limit = 2 * 1024 * 1024;
    let app = spawn_app_with(backend, |settings| settings.http.body_limit = Some(limit)).await;
    let token = app.admin();
    let (id, events) = setup(&app, &token).await;

    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(limit + 1));
    let body = problem(
        app.post_raw("/v1/brands", &token, Some("application/json"), huge)
            .await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string()),
        "{body}"
    );

    // Without a Content-Length the limit still holds, while streaming.
    let chunks: Vec<Result<String, std::io::Error>> = (0..3)
        .map(|_| Ok(format!("[\"{}\",", "y".repeat(limit / 2))))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = app
        .post_raw(
            &format!("/v1/brands/{id}/mentions"),
            &token,
            Some("application/json"),
            stream,
        )
        .await;
    problem(response, 413, "payload_too_large").await;
    assert_eq!(app.event_count(&token).await, events);
}

async fn more_than_10000_mentions_in_one_request_is_413_with_the_limit_and_writes_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let (id, events) = setup(&app, &token).await;
    let mentions: Vec<Value> = (0..10_001)
        .map(|i| json!({"source": "t", "external_id": i.to_string(), "text": "hi", "published_at": "2026-01-01T00:00:00Z"}))
        .collect();
    let response = app
        .post_json(
            &format!("/v1/brands/{id}/mentions"),
            &token,
            &json!({ "mentions": mentions }),
        )
        .await;
    let body = problem_with_field(response, 413, "too_many_mentions", "mentions").await;
    assert!(body["detail"].as_str().unwrap().contains("10000"), "{body}");
    assert_eq!(app.event_count(&token).await, events);
}

async fn unknown_routes_and_methods_answer_problem_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    problem(app.get("/v2/brands", &token).await, 404, "route_not_found").await;
    problem(
        app.get("/nothing-here", &token).await,
        404,
        "route_not_found",
    )
    .await;
    let response = app
        .client
        .delete(app.url("/v1/brands"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(response, 405, "method_not_allowed").await;
}

plasma_testkit::on_both_backends!(
    malformed_unknown_missing_and_mistyped_bodies_are_400_with_the_field_and_write_nothing,
    bad_ids_and_query_parameters_are_400_with_the_field,
    values_the_domain_refuses_are_422_with_the_field_and_write_nothing,
    commands_the_current_state_does_not_allow_are_409_illegal_transition,
    an_oversized_body_is_413_with_the_limit_and_writes_nothing,
    more_than_10000_mentions_in_one_request_is_413_with_the_limit_and_writes_nothing,
    unknown_routes_and_methods_answer_problem_json,
);
