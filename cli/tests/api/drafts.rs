//! The draft endpoints: a draft's lifecycle through HTTP, the transitions the domain refuses,
//! tenant isolation, idempotency and bad input.

use chrono::{Duration, Utc};
use plasma_gateway::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    accepted, position, problem, problem_with_field, spawn_app, Backend, TestApp,
};

/// Registers a brand whose voice bans "cheap"; returns its id.
async fn brand_with_voice(app: &TestApp, token: &str) -> String {
    let response = app
        .post_json(
            "/v1/brands",
            token,
            &json!({"name": "Acme", "voice": {"tone": "plain", "banned_words": ["cheap"]}}),
        )
        .await;
    accepted(response, 201).await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Requests a tweet for `brand`; returns the draft's id.
async fn request_draft(app: &TestApp, token: &str, brand: &str) -> String {
    let response = app
        .post_json(
            "/v1/drafts",
            token,
            &json!({"brand_id": brand, "brief": "Announce the new skates", "channel": "twitter"}),
        )
        .await;
    accepted(response, 201).await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Records a generated `text` for `draft`; returns the answer.
async fn generate(app: &TestApp, token: &str, draft: &str, text: &str) -> Value {
    let response = app
        .post_json(
            &format!("/v1/drafts/{draft}/generated"),
            token,
            &json!({"text": text, "generator": {"name": "llm", "version": "2026-01"}}),
        )
        .await;
    accepted(response, 200).await
}

async fn check_voice(app: &TestApp, token: &str, draft: &str) -> Value {
    let response = app
        .post_empty(&format!("/v1/drafts/{draft}/voice-check"), token)
        .await;
    accepted(response, 200).await
}

async fn a_draft_goes_from_request_through_a_failed_then_a_passed_voice_check_to_publication(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = brand_with_voice(&app, &token).await;

    let response = app
        .post_json(
            "/v1/drafts",
            &token,
            &json!({"brand_id": brand, "brief": "Announce the new skates", "channel": "twitter"}),
        )
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let requested = accepted(response, 201).await;
    let id = requested["aggregate_id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/v1/drafts/{id}"));
    assert_eq!(requested["aggregate_type"], "Draft");
    assert_eq!(requested["version"], 1);
    let view = app.read(&location, &token, position(&requested)).await;
    assert_eq!(view["status"], "requested");
    assert_eq!(view["brand_id"], brand.as_str());
    assert_eq!(view["channel"], "twitter");

    generate(&app, &token, &id, "Cheap skates, fast wheels.").await;
    let checked = check_voice(&app, &token, &id).await;
    assert_eq!(checked["version"], 3);
    let view = app.read(&location, &token, position(&checked)).await;
    assert_eq!(view["status"], "voice_checked");
    assert_eq!(view["voice_passed"], false);
    assert_eq!(
        view["voice_issues"],
        json!(["uses the banned word `cheap`"])
    );
    let response = app
        .post_empty(&format!("/v1/drafts/{id}/approve"), &token)
        .await;
    problem(response, 409, "illegal_transition").await;

    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/revisions"),
            &token,
            &json!({"text": "Rocket skates, fast wheels.", "note": "dropped a banned word"}),
        )
        .await;
    let revised = accepted(response, 200).await;
    let view = app.read(&location, &token, position(&revised)).await;
    assert_eq!(view["status"], "generated");
    assert_eq!(view["text"], "Rocket skates, fast wheels.");
    assert!(view["voice_passed"].is_null(), "{view}");

    let checked = check_voice(&app, &token, &id).await;
    let view = app.read(&location, &token, position(&checked)).await;
    assert_eq!(view["voice_passed"], true);
    assert_eq!(view["voice_issues"], json!([]));

    // Without a body the approver is the token's subject.
    let response = app
        .post_empty(&format!("/v1/drafts/{id}/approve"), &token)
        .await;
    let approved = accepted(response, 200).await;
    let view = app.read(&location, &token, position(&approved)).await;
    assert_eq!(view["status"], "approved");
    assert_eq!(view["approver"], "tester");

    let publish_at = (Utc::now() + Duration::days(1)).to_rfc3339();
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/schedule"),
            &token,
            &json!({"publish_at": publish_at}),
        )
        .await;
    let scheduled = accepted(response, 200).await;
    let view = app.read(&location, &token, position(&scheduled)).await;
    assert_eq!(view["status"], "scheduled");
    assert!(view["publish_at"].is_string(), "{view}");

    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/publish"),
            &token,
            &json!({"url": "https://twitter.example/acme/1"}),
        )
        .await;
    let published = accepted(response, 200).await;
    assert_eq!(published["version"], 8);
    let at = position(&published);
    let view = app.read(&location, &token, at).await;
    assert_eq!(view["status"], "published");
    assert_eq!(view["published_url"], "https://twitter.example/acme/1");
    assert_eq!(view["version"], 8);
    // A published draft never changes.
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/revisions"),
            &token,
            &json!({"text": "Too late"}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;

    let response = app
        .post_json(
            "/v1/drafts",
            &token,
            &json!({"brand_id": brand, "brief": "Another one", "channel": "blog"}),
        )
        .await;
    let other = accepted(response, 201).await;
    let at = position(&other);
    let other = other["aggregate_id"].as_str().unwrap();
    let listed = app
        .read(
            &format!("/v1/drafts?status=published&brand_id={brand}"),
            &token,
            at,
        )
        .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["draft_id"], id.as_str());
    let all = app.read("/v1/drafts?limit=1", &token, at).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let cursor = all["next_cursor"].as_str().unwrap();
    let next = app
        .read(&format!("/v1/drafts?limit=1&after={cursor}"), &token, at)
        .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 1);
    assert!(next["next_cursor"].is_null(), "{next}");
    let ids: Vec<&Value> = [&all, &next]
        .iter()
        .map(|page| &page["items"][0]["draft_id"])
        .collect();
    assert!(ids.contains(&&json!(other)), "{ids:?}");
}

async fn publishing_an_unapproved_draft_and_approving_a_rejected_one_are_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = brand_with_voice(&app, &token).await;
    let id = request_draft(&app, &token, &brand).await;

    // No text yet: nothing to check.
    let response = app
        .post_empty(&format!("/v1/drafts/{id}/voice-check"), &token)
        .await;
    problem(response, 409, "illegal_transition").await;

    generate(&app, &token, &id, "Rocket skates.").await;
    let response = app
        .post_empty(&format!("/v1/drafts/{id}/publish"), &token)
        .await;
    let body = problem(response, 409, "illegal_transition").await;
    assert!(
        body["detail"].as_str().unwrap().contains("not approved"),
        "{body}"
    );

    check_voice(&app, &token, &id).await;
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/reject"),
            &token,
            &json!({"reason": "off message"}),
        )
        .await;
    let rejected = accepted(response, 200).await;
    let view = app
        .read(&format!("/v1/drafts/{id}"), &token, position(&rejected))
        .await;
    assert_eq!(view["status"], "rejected");
    assert_eq!(view["rejection_reason"], "off message");
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/approve"),
            &token,
            &json!({"approver": "ana"}),
        )
        .await;
    let body = problem(response, 409, "illegal_transition").await;
    assert!(
        body["detail"].as_str().unwrap().contains("rejected"),
        "{body}"
    );

    // New text brings it back; once checked, an explicit approver is recorded.
    generate(&app, &token, &id, "Rocket skates, again.").await;
    check_voice(&app, &token, &id).await;
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/approve"),
            &token,
            &json!({"approver": "ana"}),
        )
        .await;
    let approved = accepted(response, 200).await;
    let view = app
        .read(&format!("/v1/drafts/{id}"), &token, position(&approved))
        .await;
    assert_eq!(view["approver"], "ana");

    // Scheduling in the past is a refused value.
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/schedule"),
            &token,
            &json!({"publish_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "publish_at").await;
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/publish"),
            &token,
            &json!({"url": "ftp://example.com/x"}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "url").await;
}

async fn a_draft_for_a_missing_archived_or_other_tenants_brand_is_refused_and_drafts_stay_with_their_tenant(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let a = app.token("tenant-a", &[Role::Admin]);
    let b = app.token("tenant-b", &[Role::Admin]);
    let brand = brand_with_voice(&app, &a).await;
    let id = request_draft(&app, &a, &brand).await;
    let generated = generate(&app, &a, &id, "Rocket skates.").await;
    let events_of_a = app.event_count(&a).await;

    for brand_id in [brand.clone(), Uuid::now_v7().to_string()] {
        let response = app
            .post_json(
                "/v1/drafts",
                &b,
                &json!({"brand_id": brand_id, "brief": "Steal it", "channel": "blog"}),
            )
            .await;
        problem_with_field(response, 404, "not_found", "brand_id").await;
    }
    let at = position(&generated);
    problem(
        app.get(&format!("/v1/drafts/{id}?min_position={at}"), &b)
            .await,
        404,
        "not_found",
    )
    .await;
    for path in ["voice-check", "approve", "publish"] {
        let response = app.post_empty(&format!("/v1/drafts/{id}/{path}"), &b).await;
        problem(response, 404, "not_found").await;
    }
    let response = app
        .post_json(
            &format!("/v1/drafts/{id}/revisions"),
            &b,
            &json!({"text": "Defaced"}),
        )
        .await;
    problem(response, 404, "not_found").await;
    let listed = app.read("/v1/drafts", &b, at).await;
    assert_eq!(listed["items"], json!([]));
    let listed = app
        .read(&format!("/v1/drafts?brand_id={brand}"), &b, at)
        .await;
    assert_eq!(listed["items"], json!([]));
    assert_eq!(app.event_count(&b).await, 0);
    assert_eq!(app.event_count(&a).await, events_of_a);

    let response = app
        .post_empty(&format!("/v1/brands/{brand}/archive"), &a)
        .await;
    accepted(response, 200).await;
    let response = app
        .post_json(
            "/v1/drafts",
            &a,
            &json!({"brand_id": brand, "brief": "One more", "channel": "blog"}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;
}

async fn requesting_a_draft_twice_with_one_idempotency_key_creates_one_draft(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = brand_with_voice(&app, &token).await;
    let before = app.event_count(&token).await;
    let key = Uuid::new_v4().to_string();
    let body = json!({"brand_id": brand, "brief": "Announce", "channel": "linkedin"});
    let first = app
        .post_json_with_key("/v1/drafts", &token, &key, &body)
        .await;
    let second = app
        .post_json_with_key("/v1/drafts", &token, &key, &body)
        .await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(first.headers()["location"], second.headers()["location"]);
    let first = accepted(first, 201).await;
    let second = accepted(second, 201).await;
    assert_eq!(first, second);
    assert_eq!(first["command_id"], key.as_str());
    assert_eq!(app.event_count(&token).await, before + 1);

    // The same key on another draft is a different request.
    let id = request_draft(&app, &token, &brand).await;
    let response = app
        .post_json_with_key(
            &format!("/v1/drafts/{id}/reject"),
            &token,
            &key,
            &json!({"reason": "no"}),
        )
        .await;
    problem(response, 409, "idempotency_key_reused").await;
}

async fn bad_draft_input_is_refused_with_the_field_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = brand_with_voice(&app, &token).await;
    let id = request_draft(&app, &token, &brand).await;
    let events = app.event_count(&token).await;

    let good = json!({"brand_id": brand, "brief": "Announce", "channel": "blog"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let cases: [(String, Value, &str); 7] = [
        ("/v1/drafts".into(), with("colour", json!("red")), "colour"),
        (
            "/v1/drafts".into(),
            with("channel", json!("fax")),
            "channel",
        ),
        (
            "/v1/drafts".into(),
            with("brand_id", json!("acme")),
            "brand_id",
        ),
        ("/v1/drafts".into(), with("brief", json!(7)), "brief"),
        (
            format!("/v1/drafts/{id}/generated"),
            json!({"text": "x", "generator": {"name": "llm"}}),
            "generator.version",
        ),
        (
            format!("/v1/drafts/{id}/schedule"),
            json!({"publish_at": "tomorrow"}),
            "publish_at",
        ),
        (
            format!("/v1/drafts/{id}/approve"),
            json!({"approver": "ana", "on_behalf_of": "bob"}),
            "on_behalf_of",
        ),
    ];
    for (path, body, field) in cases {
        let response = app.post_json(&path, &token, &body).await;
        problem_with_field(response, 400, "invalid_body", field).await;
    }
    let response = app
        .post_json("/v1/drafts", &token, &with("brief", json!("  ")))
        .await;
    problem_with_field(response, 422, "validation_failed", "brief").await;
    // An optional body, when there is one, must still be JSON.
    let response = app
        .post_raw(
            &format!("/v1/drafts/{id}/approve"),
            &token,
            Some("text/plain"),
            "ana",
        )
        .await;
    problem(response, 415, "unsupported_media_type").await;
    let response = app
        .post_empty("/v1/drafts/not-a-uuid/approve", &token)
        .await;
    problem_with_field(response, 400, "invalid_id", "id").await;
    for (query, field) in [
        ("status=lost", "status"),
        ("brand_id=acme", "brand_id"),
        ("limit=0", "limit"),
        ("after=garbage", "after"),
        ("colour=red", "colour"),
    ] {
        let response = app.get(&format!("/v1/drafts?{query}"), &token).await;
        problem_with_field(response, 400, "invalid_query", field).await;
    }
    assert_eq!(app.event_count(&token).await, events);
}

plasma_testkit::on_both_backends!(
    a_draft_goes_from_request_through_a_failed_then_a_passed_voice_check_to_publication,
    publishing_an_unapproved_draft_and_approving_a_rejected_one_are_409,
    a_draft_for_a_missing_archived_or_other_tenants_brand_is_refused_and_drafts_stay_with_their_tenant,
    requesting_a_draft_twice_with_one_idempotency_key_creates_one_draft,
    bad_draft_input_is_refused_with_the_field_and_writes_nothing,
);
