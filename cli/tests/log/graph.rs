//! The knowledge graph in server mode: `plasma extract` fed by the research topic, the graph
//! read model maintained by `plasma project`, and `plasma communities` following it, each
//! SIGKILLed while documents arrive. Every document is extracted exactly once, the graph equals
//! a rebuild, the communities catch up with the graph, and `plasma graph export` writes it.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{assert_these_read_models_equal_a_rebuild, head, Stack};

/// Documents before the kills, and in all.
const FIRST: usize = 150;
const DOCUMENTS: usize = 180;

const PEOPLE: [&str; 8] = [
    "Ada Lovelace",
    "Charles Babbage",
    "Grace Hopper",
    "Alan Turing",
    "Margaret Hamilton",
    "John von Neumann",
    "Barbara Liskov",
    "Edsger Dijkstra",
];
const PLACES: [&str; 4] = ["London", "Princeton", "Cambridge", "Boston"];

fn text(i: usize) -> String {
    let (a, b) = (PEOPLE[i % PEOPLE.len()], PEOPLE[(i * 3 + 1) % PEOPLE.len()]);
    let place = PLACES[i % PLACES.len()];
    format!(
        "Report {i}. {a} met {b} in {place} to discuss the Difference Engine and the \
         Analytical Engine. Later that year {a} visited the Science Museum.\n\n\
         Notes: the meeting in {place} was recorded by the Royal Society. {b} wrote to {a} \
         about machine number {i}."
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_mode_workers_extract_once_and_the_graph_survives_sigkill() {
    let started = Instant::now();
    let stack = Stack::start().await;
    // As the chart's hook does: every read model's tables, the brands' too (the extraction
    // worker's gazetteer), before any worker starts.
    stack.run_ok(&["migrate"]);
    let gateway = stack.gateway().await;
    let pool = stack.pool().await;
    let _relay = stack.spawn("relay", &["relay", "--batch", "200"]);
    let mut workers = Vec::new();
    for model in ["documents", "chunks", "graph"] {
        workers.push(stack.spawn(
            &format!("project-{model}"),
            &["project", "--read-model", model, "--batch", "200"],
        ));
    }
    let mut extract = stack.spawn("extract", &["extract"]);
    let communities_args = ["communities", "--model", "none", "--interval", "300ms"];
    let mut communities = stack.spawn("communities", &communities_args);

    let ingest = |range: std::ops::Range<usize>| {
        let gateway = gateway.clone();
        async move {
            for i in range {
                gateway
                    .post(
                        "/documents",
                        json!({"title": format!("Report {i}"),
                               "source": format!("https://example.org/{i}"),
                               "text": text(i), "max_chars": 200, "overlap": 0}),
                    )
                    .await;
            }
        }
    };
    ingest(0..FIRST).await;
    eprintln!("graph test: ingested in {:?}", started.elapsed());
    // SIGKILL the extraction worker in the middle of the documents.
    let at_kill = wait_for_extractions(&pool, 1, &extract).await;
    extract.sigkill();
    let killed_at = extracted(&pool).await;
    assert!(
        killed_at.len() < FIRST,
        "the worker was done before the kill ({at_kill:?})"
    );
    let restarted = stack.spawn("extract-2", &["extract"]);
    // SIGKILL the communities worker once it has computed, while the graph changes.
    wait_for_community_run(&pool, &communities).await;
    ingest(FIRST..DOCUMENTS).await;
    communities.sigkill();
    let communities = stack.spawn("communities-2", &communities_args);

    // Every document extracted exactly once, whatever the kill interrupted.
    wait_for_extractions(&pool, DOCUMENTS, &restarted).await;
    eprintln!(
        "graph test: killed with {} of {FIRST} extracted; all {DOCUMENTS} extracted once after {:?}",
        killed_at.len(),
        started.elapsed()
    );

    // The graph read model reaches the head and equals a rebuild from the store.
    let target = head(&pool).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'graph'")
                .fetch_optional(&pool)
                .await
                .unwrap();
        if position.unwrap_or(0) >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "graph at {position:?} of {target}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_these_read_models_equal_a_rebuild(&stack, &["graph"]).await;

    // The communities catch up with the graph after the kill.
    let graph_position: i64 =
        sqlx::query_scalar("SELECT MAX(position) FROM rm_graph_documents WHERE tenant_id = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let computed: Option<i64> = sqlx::query_scalar(
            "SELECT graph_position FROM rm_graph_community_runs WHERE tenant_id = 'acme'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if computed == Some(graph_position) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "communities at {computed:?}, graph at {graph_position}\n{}",
            communities.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "graph test: extracted, rebuilt and communities caught up in {:?}",
        started.elapsed()
    );
    let answer = gateway.get("/research/communities").await;
    assert!(
        !answer["communities"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    let entities = gateway.get("/research/entities?limit=500").await;
    let babbage = entities["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Charles Babbage")
        .unwrap_or_else(|| panic!("{entities}"));
    assert!(babbage["documents"].as_u64().unwrap() >= 10, "{babbage}");

    // The export holds every entity and edge.
    let graphml = stack.run_ok(&["graph", "export", "--tenant", "acme", "--format", "graphml"]);
    let nodes = graphml.matches("<node ").count() as u64;
    let edges = graphml.matches("<edge ").count() as u64;
    assert_eq!(nodes, entities["total"].as_u64().unwrap());
    assert_eq!(edges, entities["edges"].as_u64().unwrap());
    let cypher = stack.run_ok(&["graph", "export", "--tenant", "acme", "--format", "cypher"]);
    assert_eq!(cypher.matches("MERGE (e:Entity").count() as u64, nodes);
    drop(workers);
}

/// The number of extractions per document recorded so far; fails if any has two.
async fn extracted(pool: &sqlx::PgPool) -> Vec<i64> {
    let counts: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE event_type = 'DocumentEntitiesExtracted' \
         GROUP BY aggregate_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        counts.iter().all(|n| *n == 1),
        "a document was extracted twice: {counts:?}"
    );
    counts
}

/// Waits until at least `documents` documents are extracted.
async fn wait_for_extractions(
    pool: &sqlx::PgPool,
    documents: usize,
    worker: &super::Proc,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = extracted(pool).await.len();
        if done >= documents {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {documents} documents extracted\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_community_run(pool: &sqlx::PgPool, worker: &super::Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rm_graph_community_runs")
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        if runs > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no community run\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
