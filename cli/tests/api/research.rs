//! Research search through HTTP with a real model: documents are chunked and embedded as they
//! arrive, and a question finds the chunk that answers it, with its citation; bad input is
//! refused with the field; another tenant's chunks are never found.

use serde_json::{json, Value};

use crate::helpers::{accepted, position, problem_with_field, spawn_app_with, Backend, TestApp};
use plasma_gateway::Role;

const MODEL: &str = "wordllama-l2-supercat-256";

const DOCUMENTS: [(&str, &str); 3] = [
    (
        "Harbour dredging report",
        "The harbour authority dredged the shipping channel to twelve metres. Sediment from the \
         river delta had narrowed the channel, and container ships waited offshore for the tide.",
    ),
    (
        "Bakery opening",
        "A new bakery opened on the high street, selling sourdough bread, croissants and \
         cinnamon buns. Queues formed before dawn for the first loaves of rye.",
    ),
    (
        "Battery recall",
        "The manufacturer recalled forty thousand phone batteries after reports of overheating \
         and swelling. Owners can exchange the battery at any service centre for free.",
    ),
];

/// The gateway with the embedding model the tests search with.
async fn spawn_app_with_model(backend: Backend) -> TestApp {
    spawn_app_with(backend, |layer| {
        layer.research.embedders = Some(vec![MODEL.to_owned()]);
    })
    .await
}

async fn ingest(app: &TestApp, token: &str, title: &str, text: &str) -> Value {
    let body = json!({"title": title, "source": format!("https://example.org/{}", title.len()), "text": text});
    accepted(app.post_json("/v1/documents", token, &body).await, 201).await
}

/// Searches until the index holds every chunk of the tenant's documents (the embedding worker
/// runs in the background), then answers the search.
async fn search_when_indexed(app: &TestApp, token: &str, body: Value, documents: usize) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let response = app.post_json("/v1/research/search", token, &body).await;
        let answer = accepted(response, 200).await;
        let found: std::collections::HashSet<&str> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["document_id"].as_str().unwrap())
            .collect();
        if found.len() >= documents {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never indexed: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn a_question_finds_the_chunk_that_answers_it_with_its_citation(backend: Backend) {
    let app = spawn_app_with_model(backend).await;
    let token = app.admin();
    let mut ids = Vec::new();
    let mut last = 0;
    for (title, text) in DOCUMENTS {
        let ingested = ingest(&app, &token, title, text).await;
        last = position(&ingested);
        ids.push(ingested["aggregate_id"].as_str().unwrap().to_owned());
    }
    let body = json!({"query": "phone battery overheating recall", "k": 3, "min_position": last});
    let answer = search_when_indexed(&app, &token, body, DOCUMENTS.len()).await;
    assert_eq!(answer["model"]["name"], MODEL);
    assert_eq!(answer["model"]["dimension"], 256);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let best = &results[0];
    assert_eq!(best["document_id"], ids[2].as_str(), "{answer}");
    assert_eq!(best["title"], "Battery recall");
    assert_eq!(best["chunk_index"], 0);
    assert_eq!(best["start_char"], 0);
    assert!(best["end_char"].as_i64().unwrap() > 100);
    assert!(best["snippet"]
        .as_str()
        .unwrap()
        .starts_with("The manufacturer recalled"));
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    assert!(scores[0] > scores[1] + 0.05, "{scores:?}");

    // A rebuild of the index (from the events, no model run) answers the same.
    let started = app
        .post_json("/v1/admin/read-models/chunks/rebuild", &token, &json!({}))
        .await;
    accepted(started, 202).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = accepted(
            app.get("/v1/admin/read-models/chunks/rebuild", &token)
                .await,
            200,
        )
        .await;
        if status["state"] != "running" {
            assert_eq!(status["state"], "succeeded", "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body = json!({"query": "phone battery overheating recall", "k": 3});
    let rebuilt = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(rebuilt["results"], answer["results"]);

    // Another question, another document first; a filter keeps to one document.
    let body = json!({"query": "fresh sourdough bread at the bakery", "k": 1});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(
        answer["results"][0]["document_id"],
        ids[1].as_str(),
        "{answer}"
    );
    let body = json!({"query": "fresh sourdough bread", "document_id": ids[0]});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    let results = answer["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|r| r["document_id"] == ids[0].as_str()),
        "{answer}"
    );

    // By words: the chunk with the words comes first, stemmed ("croissant" finds
    // "croissants"); words found nowhere find nothing; no model is involved.
    let body = json!({"query": "croissant sourdough", "mode": "lexical", "k": 3});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(answer["mode"], "lexical");
    assert_eq!(answer["model"], Value::Null);
    assert_eq!(
        answer["results"][0]["document_id"],
        ids[1].as_str(),
        "{answer}"
    );
    assert_eq!(answer["results"].as_array().unwrap().len(), 1, "{answer}");
    let body = json!({"query": "zeppelin", "mode": "lexical"});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(answer["results"], json!([]));
    // Query syntax is inert: quotes, operators and colons are just not words.
    let body = json!({"query": "\"bread\" AND title:* OR (NEAR", "mode": "lexical"});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(
        answer["results"][0]["document_id"],
        ids[1].as_str(),
        "{answer}"
    );

    // Both, fused by rank: the document both lists put first comes first.
    let body = json!({"query": "phone battery overheating recall", "mode": "hybrid", "k": 2});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(answer["mode"], "hybrid");
    assert_eq!(answer["model"]["name"], MODEL);
    assert_eq!(
        answer["results"][0]["document_id"],
        ids[2].as_str(),
        "{answer}"
    );
    assert!(answer["results"].as_array().unwrap().len() <= 2);

    // Another tenant finds nothing of these.
    let other = app.token("globex", &[Role::Admin]);
    let body = json!({"query": "phone battery overheating recall"});
    let answer = accepted(
        app.post_json("/v1/research/search", &other, &body).await,
        200,
    )
    .await;
    assert_eq!(answer["results"], json!([]));
}

async fn bad_searches_are_refused_with_the_field(backend: Backend) {
    let app = spawn_app_with_model(backend).await;
    let token = app.admin();
    for (body, field) in [
        (json!({"query": "   "}), "query"),
        (json!({"query": "x".repeat(2001)}), "query"),
        (json!({"query": "bread", "k": 0}), "k"),
        (json!({"query": "bread", "k": 101}), "k"),
        (json!({"query": "bread", "model": "gpt-embed"}), "model"),
    ] {
        let response = app.post_json("/v1/research/search", &token, &body).await;
        problem_with_field(response, 422, "validation_failed", field).await;
    }
    let response = app
        .post_json(
            "/v1/research/search",
            &token,
            &json!({"query": "bread", "rank": 1}),
        )
        .await;
    problem_with_field(response, 400, "invalid_body", "rank").await;
}

async fn more_like_a_document_finds_the_closest_other_document_and_not_itself(backend: Backend) {
    let app = spawn_app_with_model(backend).await;
    let token = app.admin();
    let mut ids = Vec::new();
    for (title, text) in DOCUMENTS {
        let ingested = ingest(&app, &token, title, text).await;
        ids.push(ingested["aggregate_id"].as_str().unwrap().to_owned());
    }
    let twin = ingest(
        &app,
        &token,
        "Battery exchange",
        "Phone owners queued to exchange swollen batteries after the overheating recall; the \
         service centres replaced each battery for free.",
    )
    .await;
    let twin = twin["aggregate_id"].as_str().unwrap().to_owned();
    search_when_indexed(&app, &token, json!({"query": "battery", "k": 10}), 4).await;

    let body = json!({"document_id": ids[2], "k": 2});
    let answer = accepted(
        app.post_json("/v1/research/similar", &token, &body).await,
        200,
    )
    .await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["document_id"], twin.as_str(), "{answer}");
    assert!(
        results.iter().all(|r| r["document_id"] != ids[2].as_str()),
        "{answer}"
    );

    let body = json!({"document_id": ids[2], "chunk_index": 0, "k": 1});
    let answer = accepted(
        app.post_json("/v1/research/similar", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(
        answer["results"][0]["document_id"],
        twin.as_str(),
        "{answer}"
    );

    let missing = uuid::Uuid::now_v7();
    let response = app
        .post_json(
            "/v1/research/similar",
            &token,
            &json!({"document_id": missing}),
        )
        .await;
    crate::helpers::problem(response, 404, "not_found").await;
    // Another tenant's document is not there for this one.
    let other = app.token("globex", &[Role::Admin]);
    let response = app
        .post_json(
            "/v1/research/similar",
            &other,
            &json!({"document_id": ids[2]}),
        )
        .await;
    crate::helpers::problem(response, 404, "not_found").await;
}

plasma_testkit::on_both_backends!(
    more_like_a_document_finds_the_closest_other_document_and_not_itself,
    a_question_finds_the_chunk_that_answers_it_with_its_citation,
    bad_searches_are_refused_with_the_field,
    re_embedding_is_asked_for_per_document_or_for_all_and_bad_requests_change_nothing,
    a_narrow_filter_finds_its_chunk_when_other_chunks_fill_the_index_around_the_query,
);

/// `POST /documents/{id}/embeddings` and `POST /research/embeddings` record one
/// `DocumentEmbeddingRequested` per chunked document (the worker, whose model version already
/// embedded them, then records nothing); an unknown model or an unchunked document is refused
/// and records nothing.
async fn re_embedding_is_asked_for_per_document_or_for_all_and_bad_requests_change_nothing(
    backend: Backend,
) {
    let app = spawn_app_with_model(backend).await;
    let token = app.admin();
    let mut ids = Vec::new();
    for (title, text) in DOCUMENTS {
        ids.push(
            ingest(&app, &token, title, text).await["aggregate_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let unchunked =
        json!({"title": "Draft", "source": "x", "text": "Not chunked yet.", "chunk": false});
    let unchunked = accepted(
        app.post_json("/v1/documents", &token, &unchunked).await,
        201,
    )
    .await;
    let unchunked_id = unchunked["aggregate_id"].as_str().unwrap();
    // The worker is embedding the documents meanwhile: count only what a request records.
    let requests = || async {
        app.tenant_events(&token)
            .await
            .iter()
            .filter(|e| e["event_type"] == "DocumentEmbeddingRequested")
            .count()
    };

    let bad = json!({"model": "gpt-embed"});
    let response = app
        .post_json(
            &format!("/v1/documents/{}/embeddings", ids[0]),
            &token,
            &bad,
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "model").await;
    let response = app.post_json("/v1/research/embeddings", &token, &bad).await;
    problem_with_field(response, 422, "validation_failed", "model").await;
    let model = json!({"model": MODEL});
    let response = app
        .post_json(
            &format!("/v1/documents/{unchunked_id}/embeddings"),
            &token,
            &model,
        )
        .await;
    crate::helpers::problem(response, 409, "illegal_transition").await;
    assert_eq!(requests().await, 0, "nothing recorded");

    let one = app
        .post_json(
            &format!("/v1/documents/{}/embeddings", ids[0]),
            &token,
            &model,
        )
        .await;
    let one = accepted(one, 200).await;
    assert_eq!(one["events_appended"], 1);
    // Every chunked document once; listed from the documents read model.
    let position = one["position"].as_i64().unwrap();
    app.read("/v1/documents", &token, position).await;
    let all = app
        .post_json("/v1/research/embeddings", &token, &model)
        .await;
    let all = accepted(all, 202).await;
    assert_eq!(all["requested"], 3, "{all}");
    assert_eq!(all["not_chunked"], 1, "{all}");
    let requested = requests().await;
    assert_eq!(requested, 4);
}

/// The HNSW graph (PostgreSQL) is filtered after the scan: a search restricted to a
/// one-chunk document, for what another document of the tenant has ~2,000 chunks about, would
/// get nothing from the index alone. The search then compares with the vectors that pass the
/// filter. (Another tenant's chunks are filtered the same way.)
async fn a_narrow_filter_finds_its_chunk_when_other_chunks_fill_the_index_around_the_query(
    backend: Backend,
) {
    let app = spawn_app_with_model(backend).await;
    let token = app.admin();
    // Enough chunks that PostgreSQL's planner takes the index over a sort of every row.
    let text: String = (0..4000)
        .map(|i| format!("Fresh sourdough bread batch {i}, croissants and cinnamon buns. "))
        .collect();
    let body = json!({
        "title": "Bakery notes", "source": "https://example.org/bakery",
        "text": text, "max_chars": 200, "overlap": 0,
    });
    let bakery = accepted(app.post_json("/v1/documents", &token, &body).await, 201).await;
    let (title, text) = DOCUMENTS[0];
    let own = ingest(&app, &token, title, text).await;
    let own = own["aggregate_id"].as_str().unwrap();
    // Both indexed: each found by its own words.
    let bakery = json!({"query": "sourdough", "k": 1, "document_id": bakery["aggregate_id"]});
    search_when_indexed(&app, &token, bakery, 1).await;
    let harbour = json!({"query": "harbour authority dredged the shipping channel", "k": 1});
    search_when_indexed(&app, &token, harbour, 1).await;
    let narrow = json!({"query": "sourdough bread and croissants", "k": 1, "document_id": own});
    let answer = search_when_indexed(&app, &token, narrow, 1).await;
    assert_eq!(answer["results"][0]["document_id"], own, "{answer}");
    // Lexical search too: the other document's chunks match more of the words.
    let words = json!({"query": "channel bread batch croissants", "mode": "lexical", "k": 1,
        "document_id": own});
    let answer = accepted(
        app.post_json("/v1/research/search", &token, &words).await,
        200,
    )
    .await;
    assert_eq!(answer["results"][0]["document_id"], own, "{answer}");
}
