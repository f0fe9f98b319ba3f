//! Tenants never see each other: another tenant's ids answer 404, never 403.

use plasma_gateway::Role;
use serde_json::json;

use crate::helpers::{mention, problem, spawn_app, Backend};

async fn another_tenant_gets_404_for_a_brand_its_mentions_and_its_audit_and_cannot_ingest_into_it(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let a = app.token("tenant-a", &[Role::Admin]);
    let b = app.token("tenant-b", &[Role::Admin]);
    let brand = app.register_brand(&a, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    let ingested = app.ingest(&a, id, vec![mention(1), mention(2)]).await;
    let position = ingested["last_position"].as_i64().unwrap();
    let page: serde_json::Value = app
        .get(
            &format!("/v1/brands/{id}/mentions?min_position={position}"),
            &a,
        )
        .await
        .json()
        .await
        .unwrap();
    let mention_id = page["items"][0]["mention_id"].as_str().unwrap().to_owned();
    let events_of_a = app.event_count(&a).await;
    assert_eq!(events_of_a, 3);

    for path in [
        format!("/v1/brands/{id}?min_position={position}"),
        format!("/v1/brands/{id}/mentions?min_position={position}"),
        format!("/v1/brands/{id}/stats?min_position={position}"),
        format!("/v1/audit/Brand/{id}/events"),
        format!("/v1/audit/Brand/{id}/state"),
        format!("/v1/audit/Mention/{mention_id}/events"),
    ] {
        problem(app.get(&path, &b).await, 404, "not_found").await;
    }
    let response = app
        .post_json(
            &format!("/v1/brands/{id}/mentions"),
            &b,
            &json!({"mentions": [mention(3)]}),
        )
        .await;
    problem(response, 404, "not_found").await;
    let response = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &b,
            &json!({"keywords": ["stolen"]}),
        )
        .await;
    problem(response, 404, "not_found").await;
    let response = app
        .post_json(
            &format!("/v1/mentions/{mention_id}/flag"),
            &b,
            &json!({"reason": "spam"}),
        )
        .await;
    problem(response, 404, "not_found").await;

    let brands: serde_json::Value = app.get("/v1/brands", &b).await.json().await.unwrap();
    assert_eq!(brands["items"], json!([]));
    assert_eq!(app.event_count(&b).await, 0);
    assert_eq!(app.event_count(&a).await, events_of_a);
}

plasma_testkit::on_both_backends!(
    another_tenant_gets_404_for_a_brand_its_mentions_and_its_audit_and_cannot_ingest_into_it,
);
