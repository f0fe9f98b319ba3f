//! The document endpoints: ingest, chunk, record and re-record entities, the transitions the
//! domain refuses, tenant isolation, idempotency and bad input.

use plasma_gateway::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    accepted, position, problem, problem_with_field, spawn_app, spawn_app_with, Backend, TestApp,
};

/// About 1,800 characters of sentences: several chunks of 500.
fn text() -> String {
    (0..30)
        .map(|i| format!("Ana of Acme tested rocket skates, round {i}, on the long hill. "))
        .collect()
}

/// Ingests a document, leaving it for an explicit chunking; returns the answer.
async fn ingest(app: &TestApp, token: &str) -> Value {
    let response = app
        .post_json(
            "/v1/documents",
            token,
            &json!({"title": "Skate field notes", "source": "https://notes.example/1", "text": text(), "chunk": false}),
        )
        .await;
    accepted(response, 201).await
}

fn extractor(version: &str) -> Value {
    json!({"name": "ner", "version": version})
}

async fn a_document_is_ingested_chunked_and_its_entities_recorded_then_re_recorded(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let response = app
        .post_json(
            "/v1/documents",
            &token,
            &json!({"title": "Skate field notes", "source": "https://notes.example/1", "text": text(), "chunk": false}),
        )
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let ingested = accepted(response, 201).await;
    let id = ingested["aggregate_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/documents/{id}"));
    assert_eq!(ingested["aggregate_type"], "Document");
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let view = app.read(&location, &token, position(&ingested)).await;
    assert_eq!(view["status"], "ingested");
    assert_eq!(view["title"], "Skate field notes");
    assert_eq!(view["char_count"], text().trim().chars().count());
    assert!(view.get("text").is_none(), "views carry no text: {view}");

    // Entities point at chunks: none before chunking.
    let response = app
        .post_json(
            &format!("{location}/entities"),
            &token,
            &json!({"entities": [], "extractor": extractor("1")}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;

    let chunk = json!({"max_chars": 500, "overlap": 50});
    let response = app
        .post_json(&format!("{location}/chunk"), &token, &chunk)
        .await;
    let chunked = accepted(response, 200).await;
    assert_eq!(chunked["events_appended"], 1);
    let view = app.read(&location, &token, position(&chunked)).await;
    assert_chunked(&view);
    let chunks = view["chunk_count"].as_i64().unwrap();
    assert!(chunks >= 4, "{view}");
    // The same chunking again is a no-op (a safe retry); other parameters are refused.
    let response = app
        .post_json(&format!("{location}/chunk"), &token, &chunk)
        .await;
    let again = accepted(response, 200).await;
    assert_eq!(again["events_appended"], 0);
    // The document's version may have moved on meanwhile: the extraction worker records its
    // entities as soon as it is chunked.
    assert!(
        again["version"].as_i64() >= chunked["version"].as_i64(),
        "{again}"
    );
    let response = app
        .post_json(
            &format!("{location}/chunk"),
            &token,
            &json!({"max_chars": 800}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;

    let response = app
        .post_json(
            &format!("{location}/entities"),
            &token,
            &json!({
                "entities": [
                    {"name": "Ana", "kind": "person", "chunk_indexes": [1, 0, 1]},
                    {"name": "Acme", "kind": "organisation", "chunk_indexes": [0]}
                ],
                "relations": [{"from": "Ana", "to": "Acme", "kind": "works_at"}],
                "extractor": extractor("1")
            }),
        )
        .await;
    let recorded = accepted(response, 200).await;
    let view = app.read(&location, &token, position(&recorded)).await;
    assert_eq!(view["status"], "entities_extracted");
    assert_eq!(view["entity_count"], 2);
    assert_eq!(view["relation_count"], 1);
    assert_eq!(
        view["entities"],
        json!([{"name": "Ana", "kind": "person"}, {"name": "Acme", "kind": "organisation"}])
    );

    // A newer extractor's findings replace the earlier ones.
    let response = app
        .post_json(
            &format!("{location}/entities"),
            &token,
            &json!({
                "entities": [{"name": "Acme Corp", "kind": "organisation", "chunk_indexes": [0]}],
                "extractor": extractor("2")
            }),
        )
        .await;
    let rerecorded = accepted(response, 200).await;
    let at = position(&rerecorded);
    let view = app.read(&location, &token, at).await;
    assert_eq!(view["entity_count"], 1);
    assert_eq!(view["relation_count"], 0);
    assert_eq!(
        view["entities"],
        json!([{"name": "Acme Corp", "kind": "organisation"}])
    );

    for (body, field) in [
        (
            json!({"entities": [{"name": "Ana", "kind": "person", "chunk_indexes": [chunks]}], "extractor": extractor("3")}),
            "entities",
        ),
        (
            json!({"entities": [{"name": "Ana", "kind": "person"}, {"name": "Ana", "kind": "robot"}], "extractor": extractor("3")}),
            "entities",
        ),
        (
            json!({"entities": [{"name": "Ana", "kind": "person"}], "relations": [{"from": "Ana", "to": "Bob", "kind": "knows"}], "extractor": extractor("3")}),
            "relations",
        ),
        (
            json!({"entities": [], "extractor": {"name": "ner", "version": " "}}),
            "extractor.version",
        ),
    ] {
        let response = app
            .post_json(&format!("{location}/entities"), &token, &body)
            .await;
        problem_with_field(response, 422, "validation_failed", field).await;
    }

    let second = ingest(&app, &token).await;
    let at = position(&second);
    let listed = app.read("/v1/documents?limit=1", &token, at).await;
    assert_eq!(listed["items"][0]["document_id"], second["aggregate_id"]);
    let cursor = listed["next_cursor"].as_str().unwrap();
    let next = app
        .read(&format!("/v1/documents?limit=1&after={cursor}"), &token, at)
        .await;
    assert_eq!(next["items"][0]["document_id"], id.as_str());
    assert!(next["next_cursor"].is_null(), "{next}");
}

async fn documents_stay_with_their_tenant_and_a_retried_chunking_chunks_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.token("tenant-a", &[Role::Admin]);
    let b = app.token("tenant-b", &[Role::Admin]);
    let ingested = ingest(&app, &a).await;
    let id = ingested["aggregate_id"].as_str().unwrap();

    let key = Uuid::new_v4().to_string();
    let body = json!({"max_chars": 400, "overlap": 0});
    let path = format!("/v1/documents/{id}/chunk");
    let first = app.post_json_with_key(&path, &a, &key, &body).await;
    let second = app.post_json_with_key(&path, &a, &key, &body).await;
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let first = accepted(first, 200).await;
    assert_eq!(first, accepted(second, 200).await);
    assert_eq!(first["events_appended"], 1);
    assert_eq!(requested_events(&app, &a).await, 2);

    let at = position(&first);
    problem(
        app.get(&format!("/v1/documents/{id}?min_position={at}"), &b)
            .await,
        404,
        "not_found",
    )
    .await;
    problem(app.post_json(&path, &b, &body).await, 404, "not_found").await;
    let response = app
        .post_json(
            &format!("/v1/documents/{id}/entities"),
            &b,
            &json!({"entities": [], "extractor": extractor("1")}),
        )
        .await;
    problem(response, 404, "not_found").await;
    assert_eq!(app.read("/v1/documents", &b, at).await["items"], json!([]));
    assert_eq!(app.event_count(&b).await, 0);
    assert_eq!(requested_events(&app, &a).await, 2);
}

/// Chunked, and maybe already extracted: the extraction worker follows chunking at once.
fn assert_chunked(view: &Value) {
    assert!(
        view["status"] == "chunked" || view["status"] == "entities_extracted",
        "{view}"
    );
}

/// The tenant's events but the extraction worker's, which arrive in the background.
async fn requested_events(app: &TestApp, token: &str) -> usize {
    app.tenant_events(token)
        .await
        .iter()
        .filter(|e| e["event_type"] != "DocumentEntitiesExtracted")
        .count()
}

async fn bad_document_input_is_refused_with_the_field_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let ingested = ingest(&app, &token).await;
    let id = ingested["aggregate_id"].as_str().unwrap();
    let events = requested_events(&app, &token).await;

    let cases: [(String, Value, &str); 5] = [
        (
            "/v1/documents".into(),
            json!({"title": "t", "source": "s", "text": "x", "author": "ana"}),
            "author",
        ),
        (
            "/v1/documents".into(),
            json!({"title": "t", "source": "s"}),
            "text",
        ),
        (
            format!("/v1/documents/{id}/chunk"),
            json!({"max_chars": "500"}),
            "max_chars",
        ),
        (
            format!("/v1/documents/{id}/chunk"),
            json!({"max_chars": -5}),
            "max_chars",
        ),
        (
            format!("/v1/documents/{id}/entities"),
            json!({"entities": [{"name": "Ana", "kind": "person", "chunk_indexes": ["one"]}], "extractor": extractor("1")}),
            "entities[0].chunk_indexes[0]",
        ),
    ];
    for (path, body, field) in cases {
        let response = app.post_json(&path, &token, &body).await;
        problem_with_field(response, 400, "invalid_body", field).await;
    }
    for (body, field) in [
        (json!({"max_chars": 10}), "max_chars"),
        (json!({"max_chars": 500, "overlap": 300}), "overlap"),
    ] {
        let response = app
            .post_json(&format!("/v1/documents/{id}/chunk"), &token, &body)
            .await;
        problem_with_field(response, 422, "validation_failed", field).await;
    }
    let response = app
        .post_json(
            "/v1/documents",
            &token,
            &json!({"title": "", "source": "s", "text": "x"}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "title").await;
    let response = app.get("/v1/documents?status=chunked", &token).await;
    problem_with_field(response, 400, "invalid_query", "status").await;
    assert_eq!(requested_events(&app, &token).await, events);
}

/// The in-process embedding worker records each chunked document's vectors, once, with the
/// model that made them.
async fn a_chunked_document_is_embedded_by_the_configured_model_once(backend: Backend) {
    let app = spawn_app_with(backend, |layer| {
        layer.research.embedders = Some(vec!["wordllama-l2-supercat-256".to_owned()]);
    })
    .await;
    let token = app.admin();
    let ingested = ingest(&app, &token).await;
    let id = ingested["aggregate_id"].as_str().unwrap().to_owned();
    let response = app
        .post_json(
            &format!("/v1/documents/{id}/chunk"),
            &token,
            &json!({"max_chars": 500, "overlap": 50}),
        )
        .await;
    let chunked = accepted(response, 200).await;
    let view = app
        .read(&format!("/v1/documents/{id}"), &token, position(&chunked))
        .await;
    let chunks = view["chunk_count"].as_u64().unwrap() as usize;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let embedded = loop {
        let events = app.tenant_events(&token).await;
        let embedded: Vec<Value> = events
            .into_iter()
            .filter(|e| e["event_type"] == "DocumentChunksEmbedded")
            .collect();
        if !embedded.is_empty() {
            break embedded;
        }
        assert!(std::time::Instant::now() < deadline, "never embedded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Give a second (wrong) recording time to happen; there must be none.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let again = app
        .tenant_events(&token)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == "DocumentChunksEmbedded")
        .count();
    assert_eq!(again, 1);
    let data = &embedded[0]["payload"]["DocumentChunksEmbedded"];
    assert_eq!(data["model"]["name"], "wordllama-l2-supercat-256");
    assert_eq!(data["model"]["dimension"], 256);
    let vectors = data["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), chunks);
    for (index, chunk) in vectors.iter().enumerate() {
        assert_eq!(chunk["chunk"], index);
        let norm: f64 = chunk["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum();
        assert!((norm - 1.0).abs() < 1e-3, "chunk {index}: norm {norm}");
    }
}

/// By default a document is chunked as it is ingested (so the research pipeline runs by itself);
/// its parameters can be set, and bad ones are refused with the field and write nothing.
async fn a_document_is_chunked_as_it_is_ingested_unless_told_otherwise(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let body = json!({"title": "Field notes", "source": "https://notes.example/2", "text": text()});
    let ingested = accepted(app.post_json("/v1/documents", &token, &body).await, 201).await;
    assert_eq!(ingested["events_appended"], 2);
    let id = ingested["aggregate_id"].as_str().unwrap();
    let view = app
        .read(&format!("/v1/documents/{id}"), &token, position(&ingested))
        .await;
    assert_chunked(&view);
    // About 1,800 characters in chunks of at most 1,000 (the default).
    assert_eq!(view["chunk_count"], 2, "{view}");

    let body = json!({"title": "Field notes", "source": "s", "text": text(), "max_chars": 300, "overlap": 0});
    let ingested = accepted(app.post_json("/v1/documents", &token, &body).await, 201).await;
    let id = ingested["aggregate_id"].as_str().unwrap();
    let view = app
        .read(&format!("/v1/documents/{id}"), &token, position(&ingested))
        .await;
    assert!(view["chunk_count"].as_i64().unwrap() >= 6, "{view}");

    let events = requested_events(&app, &token).await;
    for (body, status, code, field) in [
        (
            json!({"title": "t", "source": "s", "text": text(), "max_chars": 50}),
            422,
            "validation_failed",
            "max_chars",
        ),
        (
            json!({"title": "t", "source": "s", "text": text(), "max_chars": 400, "overlap": 300}),
            422,
            "validation_failed",
            "overlap",
        ),
        (
            json!({"title": "t", "source": "s", "text": text(), "chunk": "yes"}),
            400,
            "invalid_body",
            "chunk",
        ),
    ] {
        let response = app.post_json("/v1/documents", &token, &body).await;
        problem_with_field(response, status, code, field).await;
    }
    assert_eq!(requested_events(&app, &token).await, events);
}

/// A model whose files are missing is not replaced by anything: the gateway serves, documents
/// are ingested and chunked, and no vectors are recorded.
async fn a_model_whose_files_are_missing_records_no_vectors_and_the_gateway_still_serves(
    backend: Backend,
) {
    let empty = plasma_testkit::temp_dir();
    let models_dir = empty.path().to_owned();
    let app = spawn_app_with(backend, move |layer| {
        layer.research.embedders = Some(vec!["all-MiniLM-L6-v2".to_owned()]);
        layer.research.models_dir = Some(models_dir);
    })
    .await;
    let token = app.admin();
    let body = json!({"title": "Field notes", "source": "https://notes.example/3", "text": text()});
    let ingested = accepted(app.post_json("/v1/documents", &token, &body).await, 201).await;
    let id = ingested["aggregate_id"].as_str().unwrap();
    let view = app
        .read(&format!("/v1/documents/{id}"), &token, position(&ingested))
        .await;
    assert_chunked(&view);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let embedded = app
        .tenant_events(&token)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == "DocumentChunksEmbedded")
        .count();
    assert_eq!(embedded, 0);
}

plasma_testkit::on_both_backends!(
    a_model_whose_files_are_missing_records_no_vectors_and_the_gateway_still_serves,
    a_document_is_chunked_as_it_is_ingested_unless_told_otherwise,
    a_chunked_document_is_embedded_by_the_configured_model_once,
    a_document_is_ingested_chunked_and_its_entities_recorded_then_re_recorded,
    documents_stay_with_their_tenant_and_a_retried_chunking_chunks_once,
    bad_document_input_is_refused_with_the_field_and_writes_nothing,
);
