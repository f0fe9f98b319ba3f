//! Rebuilding a read model over HTTP while it keeps answering queries.

use std::time::{Duration, Instant};

use plasma_gateway::Role;
use serde_json::{json, Value};

use crate::helpers::{accepted, mention, problem, problem_with_field, spawn_app, Backend, TENANT};

async fn an_admin_rebuilds_a_read_model_and_follows_its_progress(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    let ingested = app
        .ingest(&token, id, (0..300).map(mention).collect())
        .await;
    let before = app
        .read(
            &format!("/v1/brands/{id}/mentions?limit=500"),
            &token,
            ingested["last_position"].as_i64().unwrap(),
        )
        .await;
    assert_eq!(before["items"].as_array().unwrap().len(), 300);

    let started = accepted(
        app.post_json(
            "/v1/admin/read-models/mentions/rebuild",
            &token,
            &json!({"source": "store"}),
        )
        .await,
        202,
    )
    .await;
    assert_eq!(started["read_model"], "mentions");
    assert_eq!(started["source"], "store");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status: Value = loop {
        // Queries keep being answered from the live tables during the rebuild.
        let page = app
            .get(&format!("/v1/brands/{id}/mentions?limit=1"), &token)
            .await;
        assert_eq!(page.status(), 200);
        let status = accepted(
            app.get("/v1/admin/read-models/mentions/rebuild", &token)
                .await,
            200,
        )
        .await;
        if status["state"] != "running" {
            break status;
        }
        assert!(Instant::now() < deadline, "rebuild still running: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["position"], status["target"]);
    assert_eq!(status["applied"], 301);
    assert!(status["finished_at"].is_string());

    let after = app
        .read(
            &format!("/v1/brands/{id}/mentions?limit=500"),
            &token,
            ingested["last_position"].as_i64().unwrap(),
        )
        .await;
    assert_eq!(after, before, "the rebuilt read model answers the same");
    // …and the live runner carries on after the swap.
    let more = app
        .ingest(&token, id, (300..310).map(mention).collect())
        .await;
    let page = app
        .read(
            &format!("/v1/brands/{id}/mentions?limit=500"),
            &token,
            more["last_position"].as_i64().unwrap(),
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 310);
}

async fn rebuilds_are_for_admins_and_known_read_models(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    let editor = app.token(TENANT, &[Role::Editor]);
    problem(
        app.post_json(
            "/v1/admin/read-models/mentions/rebuild",
            &editor,
            &json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        app.get("/v1/admin/read-models/mentions/rebuild", &editor)
            .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        app.post_json("/v1/admin/read-models/nope/rebuild", &admin, &json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get("/v1/admin/read-models/mentions/rebuild", &admin)
            .await,
        404,
        "not_found",
    )
    .await;
    // No log configured on this gateway.
    problem_with_field(
        app.post_json(
            "/v1/admin/read-models/mentions/rebuild",
            &admin,
            &json!({"source": "log"}),
        )
        .await,
        409,
        "log_not_configured",
        "source",
    )
    .await;
    problem(
        app.post_json(
            "/v1/admin/read-models/mentions/rebuild",
            &admin,
            &json!({"source": "tape"}),
        )
        .await,
        400,
        "invalid_body",
    )
    .await;
}

plasma_testkit::on_both_backends!(
    an_admin_rebuilds_a_read_model_and_follows_its_progress,
    rebuilds_are_for_admins_and_known_read_models,
);
