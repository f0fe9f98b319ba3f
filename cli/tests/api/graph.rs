//! The knowledge graph through HTTP, on both stores: the extraction worker finds the entities
//! of every chunked document, the graph links documents through them, its queries answer
//! (search, neighbourhood, path with evidence, top), a removal takes a document's contribution
//! away and the live graph equals a rebuild; communities get reports; local, global and hybrid
//! search and cited answers; nothing of one tenant reaches another.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{accepted, problem, spawn_app_with, Backend, TestApp};
use plasma_gateway::Role;

const MODEL: &str = "wordllama-l2-supercat-256";

/// Three documents: the first two share Charles Babbage and London, the third shares nothing.
const DOCUMENTS: [(&str, &str); 3] = [
    (
        "Lovelace notes",
        "Ada Lovelace worked with Charles Babbage in London on the Analytical Engine. \
         Her notes on the engine include the first published algorithm.",
    ),
    (
        "Difference engine",
        "Charles Babbage designed the Difference Engine. The Science Museum in London built \
         one from his plans in 1991, and it worked.",
    ),
    (
        "Compilers",
        "Grace Hopper wrote one of the first compilers at Remington Rand. She later led work on \
         COBOL.",
    ),
];

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |layer| {
        layer.research.embedders = Some(vec![MODEL.to_owned()]);
    })
    .await
}

/// Ingests the documents under fixed idempotency keys (so their ids are the same in every
/// app) and returns their ids.
async fn ingest_all(app: &TestApp, token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, (title, text)) in DOCUMENTS.iter().enumerate() {
        let body =
            json!({"title": title, "source": format!("https://example.org/{i}"), "text": text});
        let key = uuid::Uuid::from_u128(0x6a70_0000 + i as u128).to_string();
        let response = app
            .post_json_with_key("/v1/documents", token, &key, &body)
            .await;
        let ingested = accepted(response, 201).await;
        ids.push(ingested["aggregate_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Polls `path` until `done` holds for its answer.
async fn wait_until(
    app: &TestApp,
    token: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = accepted(app.get(path, token).await, 200).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn entity<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Waits until the graph holds every document's extraction: Babbage in two documents, Hopper
/// in one.
async fn extracted_graph(app: &TestApp, token: &str) -> Value {
    wait_until(app, token, "/v1/research/entities?limit=500", |list| {
        let names: Vec<&Value> = list["entities"].as_array().unwrap().iter().collect();
        names
            .iter()
            .any(|e| e["name"] == "Charles Babbage" && e["documents"] == 2)
            && names.iter().any(|e| e["name"] == "Grace Hopper")
    })
    .await
}

async fn the_graph_links_documents_through_shared_entities_and_answers_its_queries(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let token = app.admin();
    ingest_all(&app, &token).await;
    let graph = extracted_graph(&app, &token).await;
    let babbage = entity(&graph, "Charles Babbage");
    assert_eq!(babbage["kind"], "name");
    assert_eq!(babbage["chunks"], 2);
    let london = entity(&graph, "London");
    assert_eq!(london["documents"], 2);
    let id = |name: &str| {
        entity(&graph, name)["entity_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Search by part of a name, any case.
    let found = accepted(app.get("/v1/research/entities?q=babb", &token).await, 200).await;
    assert_eq!(found["entities"][0]["name"], "Charles Babbage", "{found}");

    // The neighbourhood: one hop reaches both documents' entities, not the third's.
    let path = format!("/v1/research/entities/{}?depth=1", id("Charles Babbage"));
    let detail = accepted(app.get(&path, &token).await, 200).await;
    let neighbours: Vec<&str> = detail["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["entity"]["name"].as_str().unwrap())
        .collect();
    for name in [
        "Ada Lovelace",
        "Analytical Engine",
        "Science Museum",
        "London",
    ] {
        assert!(neighbours.contains(&name), "{name} not in {neighbours:?}");
    }
    assert!(!neighbours.contains(&"Grace Hopper"));
    assert!(detail["edges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| (-1.0..=1.0).contains(&e["weight"].as_f64().unwrap())));

    // A path from one document to the other, through an entity both mention, with evidence.
    let path = format!(
        "/v1/research/paths?from={}&to={}",
        id("Ada Lovelace"),
        id("Science Museum")
    );
    let found = accepted(app.get(&path, &token).await, 200).await;
    let hops: Vec<&str> = found["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(hops.len(), 3, "{found}");
    assert_eq!(hops[0], "Ada Lovelace");
    assert_eq!(hops[2], "Science Museum");
    assert!(["Charles Babbage", "London"].contains(&hops[1]), "{hops:?}");
    for step in found["steps"].as_array().unwrap() {
        let evidence = step["evidence"].as_array().unwrap();
        assert!(!evidence.is_empty(), "{step}");
        assert!(evidence.iter().all(|c| c["snippet"].is_string()));
    }
    // Not connected: 404; malformed and out-of-range input: 400.
    let path = format!(
        "/v1/research/paths?from={}&to={}",
        id("Ada Lovelace"),
        id("Grace Hopper")
    );
    problem(app.get(&path, &token).await, 404, "not_found").await;
    let unknown = uuid::Uuid::now_v7();
    problem(
        app.get(&format!("/v1/research/entities/{unknown}"), &token)
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get("/v1/research/entities/not-an-id", &token).await,
        400,
        "invalid_id",
    )
    .await;
    let path = format!("/v1/research/entities/{}?depth=4", id("London"));
    problem(app.get(&path, &token).await, 400, "invalid_query").await;
    problem(
        app.get("/v1/research/entities?limit=0", &token).await,
        400,
        "invalid_query",
    )
    .await;

    // The most connected first.
    let top = accepted(
        app.get("/v1/research/entities?ranking=degree&limit=3", &token)
            .await,
        200,
    )
    .await;
    let degrees: Vec<u64> = top["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["degree"].as_u64().unwrap())
        .collect();
    assert!(degrees.windows(2).all(|w| w[0] >= w[1]), "{degrees:?}");
}

/// The graph's answer to everything a test compares: every entity and the edge count.
async fn graph_state(app: &TestApp, token: &str) -> Value {
    let mut state = accepted(
        app.get("/v1/research/entities?ranking=chunks&limit=500", token)
            .await,
        200,
    )
    .await;
    let entities = state["entities"].as_array_mut().unwrap();
    entities.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    state
}

async fn a_removed_document_leaves_the_graph_and_the_live_graph_equals_a_rebuild(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.admin();
    let ids = ingest_all(&app, &token).await;
    extracted_graph(&app, &token).await;

    let removed = accepted(
        app.delete(&format!("/v1/documents/{}", ids[1]), &token)
            .await,
        200,
    )
    .await;
    assert_eq!(removed["events_appended"], 1);
    let at = removed["position"].as_i64().unwrap();
    let graph = app
        .read("/v1/research/entities?limit=500", &token, at)
        .await;
    assert_eq!(entity(&graph, "Charles Babbage")["documents"], 1);
    assert!(
        !graph["entities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "Science Museum"),
        "{graph}"
    );
    // The document says so, search forgets it, and removing again changes nothing.
    let view = app
        .read(&format!("/v1/documents/{}", ids[1]), &token, at)
        .await;
    assert_eq!(view["status"], "removed");
    let search = json!({"query": "Difference Engine Science Museum", "mode": "lexical",
        "min_position": at});
    let found = accepted(
        app.post_json("/v1/research/search", &token, &search).await,
        200,
    )
    .await;
    assert!(found["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["document_id"] != ids[1].as_str()));
    let again = accepted(
        app.delete(&format!("/v1/documents/{}", ids[1]), &token)
            .await,
        200,
    )
    .await;
    assert_eq!(again["events_appended"], 0);
    let response = app
        .post_json(
            &format!("/v1/documents/{}/chunk", ids[1]),
            &token,
            &json!({"max_chars": 400}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;

    let live = graph_state(&app, &token).await;
    let started = accepted(
        app.post_json(
            "/v1/admin/read-models/graph/rebuild",
            &token,
            &json!({"source": "store"}),
        )
        .await,
        202,
    )
    .await;
    assert_eq!(started["read_model"], "graph");
    let status = wait_until(&app, &token, "/v1/admin/read-models/graph/rebuild", |s| {
        s["state"] != "running"
    })
    .await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(graph_state(&app, &token).await, live);
}

/// The communities worker reports on the graph; global and hybrid search use the reports,
/// and every sentence of an answer cites a chunk the answer retrieved.
async fn communities_get_reports_and_answers_cite_only_retrieved_chunks(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.admin();
    ingest_all(&app, &token).await;
    extracted_graph(&app, &token).await;
    let communities = wait_until(&app, &token, "/v1/research/communities", |c| {
        c["run"].is_object() && !c["communities"].as_array().unwrap().is_empty()
    })
    .await;
    let first = &communities["communities"][0];
    assert!(first["size"].as_i64().unwrap() >= 2, "{first}");
    let report = &first["report"];
    assert!(!report["summary"].as_str().unwrap().is_empty());
    assert!(
        !report["citations"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let level = first["level"].as_i64().unwrap();
    let number = first["community"].as_i64().unwrap();
    let one = accepted(
        app.get(
            &format!("/v1/research/communities/{level}/{number}"),
            &token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(&one, first);
    problem(
        app.get("/v1/research/communities/0/99999", &token).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get("/v1/research/communities/x/1", &token).await,
        400,
        "invalid_id",
    )
    .await;

    for mode in ["local", "global", "hybrid"] {
        let body = json!({"query": "Who worked with Babbage in London?", "mode": mode, "k": 3});
        let found = accepted(
            app.post_json("/v1/research/search", &token, &body).await,
            200,
        )
        .await;
        assert_eq!(found["mode"], mode);
        assert!(!found["results"].as_array().unwrap().is_empty(), "{found}");
        if mode != "local" {
            assert!(
                !found["communities"].as_array().unwrap().is_empty(),
                "{found}"
            );
        }
        if mode != "global" {
            let seeds: Vec<&str> = found["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            assert!(seeds.contains(&"London"), "{seeds:?}");
        }
    }

    let body = json!({"question": "Who worked with Charles Babbage on the Analytical Engine?"});
    let answer = accepted(
        app.post_json("/v1/research/answer", &token, &body).await,
        200,
    )
    .await;
    assert_eq!(answer["method"], "extractive");
    assert_eq!(answer["mode"], "hybrid");
    let citations = answer["citations"].as_array().unwrap();
    let sentences = answer["sentences"].as_array().unwrap();
    assert!(!sentences.is_empty(), "{answer}");
    assert!(
        answer["answer"].as_str().unwrap().contains("Ada Lovelace"),
        "{answer}"
    );
    for sentence in sentences {
        let cited = sentence["citations"].as_array().unwrap();
        assert!(!cited.is_empty(), "{sentence}");
        for n in cited {
            let n = n.as_u64().unwrap() as usize;
            assert!((1..=citations.len()).contains(&n), "{sentence} cites {n}");
            assert_eq!(citations[n - 1]["n"], n);
        }
    }
    let bad = json!({"question": "   "});
    crate::helpers::problem_with_field(
        app.post_json("/v1/research/answer", &token, &bad).await,
        422,
        "validation_failed",
        "question",
    )
    .await;
}

/// The same documents in two stores give the same communities, report for report.
async fn the_same_graph_gives_the_same_communities(backend: Backend) {
    let mut answers = Vec::new();
    for _ in 0..2 {
        let app = spawn(backend).await;
        let token = app.admin();
        ingest_all(&app, &token).await;
        extracted_graph(&app, &token).await;
        let mut found = wait_until(&app, &token, "/v1/research/communities?limit=500", |c| {
            c["run"]["graph_position"] == c["graph_position"]
        })
        .await;
        // Positions depend on when the embedding worker's events land; the rest must not.
        found["run"].take();
        found["graph_position"].take();
        answers.push(found);
    }
    assert_eq!(answers[0], answers[1]);
}

async fn another_tenant_sees_nothing_of_the_graph(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.admin();
    ingest_all(&app, &token).await;
    let graph = extracted_graph(&app, &token).await;
    wait_until(&app, &token, "/v1/research/communities", |c| {
        c["run"].is_object()
    })
    .await;
    let other = app.token("other", &[Role::Admin]);
    let theirs = accepted(app.get("/v1/research/entities", &other).await, 200).await;
    assert_eq!(theirs["total"], 0, "{theirs}");
    let babbage = entity(&graph, "Charles Babbage")["entity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let london = entity(&graph, "London")["entity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    problem(
        app.get(&format!("/v1/research/entities/{babbage}"), &other)
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get(
            &format!("/v1/research/paths?from={babbage}&to={london}"),
            &other,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let communities = accepted(app.get("/v1/research/communities", &other).await, 200).await;
    assert_eq!(
        communities,
        json!({"run": null, "graph_position": 0, "communities": []})
    );
    problem(
        app.get("/v1/research/communities/0/0", &other).await,
        404,
        "not_found",
    )
    .await;
    for mode in ["local", "global", "hybrid"] {
        let body = json!({"query": "Charles Babbage London", "mode": mode});
        let found = accepted(
            app.post_json("/v1/research/search", &other, &body).await,
            200,
        )
        .await;
        assert_eq!(found["results"], json!([]), "{mode}: {found}");
        assert_eq!(found["entities"], json!([]), "{mode}: {found}");
        assert_eq!(found["communities"], json!([]), "{mode}: {found}");
    }
    let body = json!({"question": "Who worked with Charles Babbage?"});
    let answer = accepted(
        app.post_json("/v1/research/answer", &other, &body).await,
        200,
    )
    .await;
    assert_eq!(answer["citations"], json!([]));
    assert_eq!(answer["answer"], "");
}

plasma_testkit::on_both_backends!(
    the_graph_links_documents_through_shared_entities_and_answers_its_queries,
    a_removed_document_leaves_the_graph_and_the_live_graph_equals_a_rebuild,
    communities_get_reports_and_answers_cite_only_retrieved_chunks,
    the_same_graph_gives_the_same_communities,
    another_tenant_sees_nothing_of_the_graph,
);
