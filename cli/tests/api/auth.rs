//! Bearer tokens and roles.

use plasma_gateway::Role;
use serde_json::json;

use crate::helpers::{problem, spawn_app, Backend, TENANT};

async fn requests_without_a_valid_token_are_answered_401(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.client.get(app.url("/v1/brands")).send().await.unwrap();
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );
    let body = problem(response, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("Authorization"));

    let response = app
        .client
        .get(app.url("/v1/brands"))
        .header("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
        .send()
        .await
        .unwrap();
    problem(response, 401, "unauthorized").await;

    for token in [
        "not-a-jwt".to_owned(),
        app.forged_token(),
        app.expired_token(),
    ] {
        problem(app.get("/v1/brands", &token).await, 401, "unauthorized").await;
    }
    let body = problem(
        app.get("/v1/brands", &app.expired_token()).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let body = problem(
        app.get("/v1/brands", &app.forged_token()).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    // Commands are refused before their body is even read.
    let response = app
        .client
        .post(app.url("/v1/brands"))
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    problem(response, 401, "unauthorized").await;
}

async fn a_viewer_can_query_but_cannot_run_commands(backend: Backend) {
    let app = spawn_app(backend).await;
    let viewer = app.token(TENANT, &[Role::Viewer]);
    assert_eq!(app.get("/v1/brands", &viewer).await.status(), 200);
    let response = app
        .post_json("/v1/brands", &viewer, &json!({"name": "Acme"}))
        .await;
    let body = problem(response, 403, "forbidden").await;
    assert!(
        body["detail"].as_str().unwrap().contains("commands"),
        "{body}"
    );
    problem(app.get("/v1/audit/events", &viewer).await, 403, "forbidden").await;
}

async fn an_editor_can_run_commands_but_cannot_read_the_audit_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let editor = app.token(TENANT, &[Role::Editor]);
    let brand = app.register_brand(&editor, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    problem(app.get("/v1/audit/events", &editor).await, 403, "forbidden").await;
    problem(
        app.get(&format!("/v1/audit/Brand/{id}/events"), &editor)
            .await,
        403,
        "forbidden",
    )
    .await;

    let auditor = app.token(TENANT, &[Role::Auditor]);
    assert_eq!(
        app.get(&format!("/v1/audit/Brand/{id}/events"), &auditor)
            .await
            .status(),
        200
    );
    problem(
        app.put_json(
            &format!("/v1/brands/{id}/keywords"),
            &auditor,
            &json!({"keywords": ["x"]}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
}

plasma_testkit::on_both_backends!(
    requests_without_a_valid_token_are_answered_401,
    a_viewer_can_query_but_cannot_run_commands,
    an_editor_can_run_commands_but_cannot_read_the_audit_log,
);
