//! The audit endpoints: an aggregate's history, its state as of a version or an instant, and
//! the tenant's event log.

use std::time::Duration;

use chrono::Utc;
use plasma_gateway::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{problem, spawn_app, Backend, TENANT};

async fn the_audit_history_lists_an_aggregates_events_with_their_metadata(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let key = Uuid::new_v4();
    let correlation = Uuid::new_v4();
    let response = app
        .client
        .post(app.url("/v1/brands"))
        .bearer_auth(&token)
        .header("idempotency-key", key.to_string())
        .header("x-correlation-id", correlation.to_string())
        .json(&json!({"name": "Acme", "keywords": ["acme"]}))
        .send()
        .await
        .unwrap();
    let brand: Value = response.json().await.unwrap();
    let id = brand["aggregate_id"].as_str().unwrap();
    let changed: Value = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &token,
            &json!({"keywords": ["acme", "rockets"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["version"], 2);
    let archived: Value = app
        .post_json(&format!("/v1/brands/{id}/archive"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(archived["version"], 3);

    let auditor = app.token(TENANT, &[Role::Auditor]);
    let history: Value = app
        .get(&format!("/v1/audit/Brand/{id}/events"), &auditor)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["aggregate_type"], "Brand");
    assert_eq!(history["version"], 3);
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["BrandRegistered", "BrandKeywordsChanged", "BrandArchived"]
    );
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
    let positions: Vec<i64> = events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(events[0]["command_id"], key.to_string());
    assert_eq!(events[0]["causation_id"], key.to_string());
    assert_eq!(events[0]["correlation_id"], correlation.to_string());
    assert_eq!(events[0]["event_version"], 1);
    assert!(events[0]["event_id"].is_string());
    assert!(events[0]["recorded_at"].is_string());
    assert_eq!(events[0]["payload"]["BrandRegistered"]["name"], "Acme");
    assert_eq!(
        events[1]["payload"]["BrandKeywordsChanged"]["keywords"],
        json!(["acme", "rockets"])
    );

    // Type names are matched loosely; unknown ones have their own code.
    assert_eq!(
        app.get(&format!("/v1/audit/brand/{id}/events"), &auditor)
            .await
            .status(),
        200
    );
    problem(
        app.get(&format!("/v1/audit/Widget/{id}/events"), &auditor)
            .await,
        404,
        "unknown_aggregate_type",
    )
    .await;
    problem(
        app.get(
            &format!("/v1/audit/Draft/{}/events", Uuid::new_v4()),
            &auditor,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

async fn the_state_as_of_a_version_or_an_instant_replays_the_events_up_to_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let before_registration = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &token,
            &json!({"keywords": ["rockets"]}),
        )
        .await;
    assert_eq!(response.status(), 200);

    let state = |query: String| {
        let app = &app;
        let token = &token;
        async move {
            let response = app
                .get(&format!("/v1/audit/Brand/{id}/state{query}"), token)
                .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let current = state(String::new()).await;
    assert_eq!(current["version"], 2);
    assert_eq!(current["current_version"], 2);
    assert_eq!(current["state"]["keywords"], json!(["rockets"]));

    let first = state("?as_of_version=1".to_owned()).await;
    assert_eq!(first["version"], 1);
    assert_eq!(first["state"]["keywords"], json!(["acme"]));
    assert_eq!(first["state"]["registered"], true);

    let at = |t: chrono::DateTime<Utc>| {
        format!(
            "?as_of={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    };
    let then = state(at(between)).await;
    assert_eq!(then["version"], 1);
    assert_eq!(then["state"]["keywords"], json!(["acme"]));
    let before = state(at(before_registration)).await;
    assert_eq!(before["version"], 0);
    assert_eq!(before["state"]["registered"], false);

    // Both bounds: the events that satisfy both, here none (the brand is younger than `as_of`).
    let both = state("?as_of_version=1&as_of=2026-01-01T00:00:00Z".to_owned()).await;
    assert_eq!(both["version"], 0);
    let both = state(format!("?as_of_version=1&{}", &at(between)[1..])).await;
    assert_eq!(both["version"], 1);
}

async fn the_tenant_event_log_pages_through_this_tenants_events_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.admin();
    let b = app.token("other", &[Role::Admin]);
    app.register_brand(&a, "Acme").await;
    app.register_brand(&b, "Globex").await;
    app.register_brand(&a, "Initech").await;
    app.register_brand(&b, "Hooli").await;
    app.register_brand(&a, "Umbrella").await;

    let page: Value = app
        .get("/v1/audit/events?limit=2", &a)
        .await
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(page["has_more"], true);
    let next = page["next_from_position"].as_i64().unwrap();
    let rest: Value = app
        .get(
            &format!("/v1/audit/events?limit=2&from_position={next}"),
            &a,
        )
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = events
        .iter()
        .chain(rest["events"].as_array().unwrap())
        .map(|e| e["payload"]["BrandRegistered"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Acme", "Initech", "Umbrella"]);
    assert_eq!(rest["has_more"], false);
    problem(
        app.get("/v1/audit/events?limit=1001", &a).await,
        400,
        "invalid_query",
    )
    .await;
}

plasma_testkit::on_both_backends!(
    the_audit_history_lists_an_aggregates_events_with_their_metadata,
    the_state_as_of_a_version_or_an_instant_replays_the_events_up_to_it,
    the_tenant_event_log_pages_through_this_tenants_events_only,
);
