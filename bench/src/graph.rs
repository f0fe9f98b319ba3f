//! `plasma bench graph`: the knowledge graph measured.
//!
//! - `quality` (through HTTP, against a running `plasma`): the labelled Python FAQ set and the
//!   multi-hop set (`data/multihop/`, questions answerable only by joining two documents
//!   through an entity), ingested together; recall@10 and MRR@10 of vector, local, global and
//!   hybrid search; then local and hybrid search latency at a fixed request rate.
//! - `extract` (in process): the rule extractor's throughput over a corpus, the graph read
//!   model's update throughput on SQLite (and PostgreSQL with `--database-url`), and Leiden on
//!   the corpus's graph and on a planted-partition graph, each next to `leidenalg` run on the
//!   same edges (time, and modularity scored by igraph for both partitions).
//!
//! `scripts/bench-graph.sh` starts the servers, installs the peer and runs both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use cqrs_es::DomainEvent as _;
use plasma_commands::RecordedEvent;
use plasma_domain::research::leiden::{leiden, modularity, Graph, LeidenOptions};
use plasma_domain::research::{
    chunk_text, ChunkSpan, DocumentEvent, EntityExtractor, Extraction, Gazetteer, RuleExtractor,
};
use plasma_domain::TenantId;
use plasma_projections::models::graph::{entity_key, npmi, GraphProjection};
use plasma_projections::{create_read_models, Projection, ReadStore, ReadStoreConfig, Tables};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::search::{
    chunk_counts, corpus_documents, hits, ingest, percentile, read_faq, steady_searches,
    wait_indexed, Api, NewDocument, Server,
};

#[derive(Debug, Args)]
pub struct GraphBenchArgs {
    #[command(subcommand)]
    part: Part,
}

#[derive(Debug, Subcommand)]
enum Part {
    /// Retrieval quality of each search mode on the FAQ and multi-hop sets, and latency.
    Quality(QualityArgs),
    /// Extraction and graph-update throughput, and Leiden next to leidenalg.
    Extract(ExtractArgs),
}

#[derive(Debug, Args)]
struct QualityArgs {
    #[command(flatten)]
    server: Server,
    #[arg(long, default_value = "data/python-faq/faq.json")]
    faq: PathBuf,
    #[arg(long, default_value = "data/multihop")]
    multihop: PathBuf,
    /// The embedding model the server runs.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    model: String,
    /// A name for the server's store in the output (sqlite, postgres).
    #[arg(long, default_value = "server")]
    label: String,
    /// Search requests per second for the latency part (0: skip it).
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Seconds of requests per mode.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
}

#[derive(Debug, Args)]
struct ExtractArgs {
    /// Directories of text files (.txt, .rst, .pod), one document per file.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Chunking of the corpus.
    #[arg(long, default_value_t = 1000)]
    max_chars: usize,
    #[arg(long, default_value_t = 100)]
    overlap: usize,
    /// A PostgreSQL database to measure the graph update on too (a throwaway one: the graph's
    /// tables are created and filled there).
    #[arg(long)]
    database_url: Option<String>,
    /// The Python with leidenalg and igraph (`scripts/install-leiden-peer.sh`); no peer run
    /// without it.
    #[arg(long)]
    peer_python: Option<PathBuf>,
    /// Nodes and edges of the planted-partition graph.
    #[arg(long, default_value_t = 20_000)]
    nodes: usize,
    #[arg(long, default_value_t = 120_000)]
    edges: usize,
    /// Where the edge lists and memberships for the peer are written (a temporary dir if
    /// left out).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

pub async fn graph(args: GraphBenchArgs) -> Result<()> {
    match args.part {
        Part::Quality(args) => quality(args).await,
        Part::Extract(args) => extract(args).await,
    }
}

// Quality.

#[derive(Debug, Deserialize)]
struct MultihopDocuments {
    documents: Vec<MultihopDocument>,
}

#[derive(Debug, Deserialize)]
struct MultihopDocument {
    title: String,
    source: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct MultihopQuestions {
    questions: Vec<MultihopQuestion>,
}

#[derive(Debug, Deserialize)]
struct MultihopQuestion {
    id: String,
    question: String,
    hops: Vec<Hop>,
}

#[derive(Debug, Deserialize)]
struct Hop {
    document: String,
    quote: String,
}

/// A labelled question: the chunks that answer it, grouped by hop (one group for the FAQ).
struct Labelled {
    question: String,
    hops: Vec<HashSet<(Uuid, i64)>>,
}

/// The chunks (default chunking, as the server cuts) of `text` that hold `quote`.
fn chunks_holding(text: &str, quote: &str) -> Vec<i64> {
    let text = text.trim();
    let chunking = plasma_domain::research::Chunking::DEFAULT;
    chunk_text(text, chunking.max_chars, chunking.overlap)
        .iter()
        .filter(|span| span.slice(text).contains(quote))
        .map(|span| span.index as i64)
        .collect()
}

#[derive(Default)]
struct Scores {
    recall: f64,
    reciprocal_rank: f64,
    /// Questions with a chunk of every hop in the top 10.
    all_hops: f64,
    /// Questions with a chunk of the last hop (the answer) in the top 10.
    answer_hop: f64,
    queries: usize,
    latencies: Vec<f64>,
}

impl Scores {
    fn add(&mut self, labelled: &Labelled, found: &[(Uuid, i64)]) {
        let relevant: HashSet<&(Uuid, i64)> = labelled.hops.iter().flatten().collect();
        let top: Vec<&(Uuid, i64)> = found.iter().take(10).collect();
        let hit = top.iter().filter(|h| relevant.contains(*h)).count();
        self.recall += hit as f64 / relevant.len().clamp(1, 10) as f64;
        if let Some(rank) = top.iter().position(|h| relevant.contains(*h)) {
            self.reciprocal_rank += 1.0 / (rank as f64 + 1.0);
        }
        let has = |hop: &HashSet<(Uuid, i64)>| top.iter().any(|h| hop.contains(*h));
        if labelled.hops.iter().all(has) {
            self.all_hops += 1.0;
        }
        if labelled.hops.last().is_some_and(has) {
            self.answer_hop += 1.0;
        }
        self.queries += 1;
    }

    fn mean(&self, total: f64) -> f64 {
        total / self.queries.max(1) as f64
    }
}

async fn quality(args: QualityArgs) -> Result<()> {
    let api = Api::new(&args.server)?;
    let faq = read_faq(&args.faq)?;
    let read = |name: &str| -> Result<String> {
        let path = args.multihop.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))
    };
    let added: MultihopDocuments = serde_json::from_str(&read("documents.json")?)?;
    let questions: MultihopQuestions = serde_json::from_str(&read("questions.json")?)?;
    let mut documents: Vec<NewDocument> = faq
        .iter()
        .map(|e| NewDocument {
            title: e.question.clone(),
            source: format!("https://docs.python.org/3.11/faq/{}.html", e.page),
            text: e.answer.clone(),
        })
        .collect();
    documents.extend(added.documents.iter().map(|d| NewDocument {
        title: d.title.clone(),
        source: d.source.clone(),
        text: d.text.clone(),
    }));
    let texts: Vec<(String, String)> = documents
        .iter()
        .map(|d| (d.title.clone(), d.text.clone()))
        .collect();
    let started = Instant::now();
    let (ids, position) = ingest(&api, documents, None).await?;
    let counts = chunk_counts(&api, position).await?;
    let chunks: u64 = ids
        .iter()
        .map(|id| counts.get(id).copied().unwrap_or(0))
        .sum();
    let embedded = wait_indexed(&api, std::slice::from_ref(&args.model), chunks).await?;
    let graphed = wait_graphed(&api, &ids).await?;
    eprintln!(
        "{}: {} documents, {chunks} chunks; embedded in {:.1} s, graph and communities ready \
         {:.1} s after ingest began",
        args.label,
        ids.len(),
        embedded.as_secs_f64(),
        graphed.duration_since(started).as_secs_f64()
    );
    let entities = api.get("/v1/research/entities?limit=1").await?;
    let communities = api.get("/v1/research/communities?limit=1").await?;
    println!(
        "{}: graph of {} entities and {} edges; {} communities at {} levels, modularity {:.3}, \
         computed in {} ms",
        args.label,
        entities["total"],
        entities["edges"],
        communities["run"]["communities"],
        communities["run"]["levels"],
        communities["run"]["modularity"]
            .as_f64()
            .unwrap_or(f64::NAN),
        communities["run"]["millis"]
    );

    // The labelled sets: the FAQ (a question's own answer) and the multi-hop questions.
    let faq_set: Vec<Labelled> = faq
        .iter()
        .zip(&ids)
        .map(|(entry, id)| {
            let n = counts.get(id).copied().unwrap_or(1).max(1) as i64;
            Labelled {
                question: entry.question.clone(),
                hops: vec![(0..n).map(|c| (*id, c)).collect()],
            }
        })
        .collect();
    // Hops name documents by title; the FAQ's duplicate titles are never a hop's.
    let by_title: HashMap<&str, (Uuid, &str)> = texts
        .iter()
        .zip(&ids)
        .map(|((title, text), id)| (title.as_str(), (*id, text.as_str())))
        .collect();
    let mut multihop_set = Vec::new();
    for question in &questions.questions {
        let mut hops = Vec::new();
        for hop in &question.hops {
            let (id, text) = by_title
                .get(hop.document.as_str())
                .ok_or_else(|| anyhow!("{}: no document titled {:?}", question.id, hop.document))?;
            let chunks: HashSet<(Uuid, i64)> = chunks_holding(text, &hop.quote)
                .into_iter()
                .map(|c| (*id, c))
                .collect();
            if chunks.is_empty() {
                bail!(
                    "{}: no chunk of {:?} holds its quote",
                    question.id,
                    hop.document
                );
            }
            hops.push(chunks);
        }
        multihop_set.push(Labelled {
            question: question.question.clone(),
            hops,
        });
    }

    let modes = ["vector", "local", "global", "hybrid"];
    for (set, labelled) in [("FAQ", &faq_set), ("multi-hop", &multihop_set)] {
        println!();
        println!(
            "| {} {set} ({} questions) | recall@10 | MRR@10 | every hop in top 10 | answer hop in top 10 | p50 ms |",
            args.label,
            labelled.len()
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for mode in modes {
            let mut scores = Scores::default();
            for item in labelled.iter() {
                let body =
                    json!({"query": item.question, "mode": mode, "model": args.model, "k": 10});
                let start = Instant::now();
                let answer = api.post("/v1/research/search", &body).await?;
                scores.latencies.push(start.elapsed().as_secs_f64() * 1e3);
                scores.add(item, &hits(&answer));
            }
            println!(
                "| {mode} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
                scores.mean(scores.recall),
                scores.mean(scores.reciprocal_rank),
                scores.mean(scores.all_hops),
                scores.mean(scores.answer_hop),
                percentile(&mut scores.latencies, 0.5)
            );
        }
    }

    if args.rate > 0 {
        let mut all: Vec<String> = faq_set.iter().map(|l| l.question.clone()).collect();
        all.extend(multihop_set.iter().map(|l| l.question.clone()));
        println!();
        println!(
            "| {} at {}/s for {} s | requests | errors | p50 ms | p99 ms | max ms |",
            args.label, args.rate, args.seconds
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for mode in ["vector", "local", "hybrid"] {
            let (mut latencies, errors) =
                steady_searches(&api, &all, mode, &args.model, args.rate, args.seconds).await;
            println!(
                "| {mode} | {} | {errors} | {:.1} | {:.1} | {:.1} |",
                latencies.len() + errors,
                percentile(&mut latencies, 0.5),
                percentile(&mut latencies, 0.99),
                percentile(&mut latencies, 1.0)
            );
        }
    }
    Ok(())
}

/// Waits until every document is extracted and the communities were computed from the graph
/// as it stands after the last extraction; answers when.
async fn wait_graphed(api: &Api, ids: &[Uuid]) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let wanted: HashSet<Uuid> = ids.iter().copied().collect();
    loop {
        let mut extracted = 0;
        let mut after: Option<String> = None;
        loop {
            let mut path = "/v1/documents?limit=500".to_owned();
            if let Some(cursor) = &after {
                path.push_str(&format!("&after={cursor}"));
            }
            let page = api.get(&path).await?;
            for item in page["items"].as_array().into_iter().flatten() {
                let id = item["document_id"]
                    .as_str()
                    .and_then(|i| Uuid::parse_str(i).ok());
                if id.is_some_and(|id| wanted.contains(&id))
                    && item["status"] == "entities_extracted"
                {
                    extracted += 1;
                }
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => after = Some(cursor.to_owned()),
                None => break,
            }
        }
        if extracted == wanted.len() {
            let run = api.get("/v1/research/communities?limit=1").await?;
            let graph = run["graph_position"].as_i64().unwrap_or(0);
            if graph > 0 && run["run"]["graph_position"].as_i64() == Some(graph) {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            bail!("the graph was not ready within an hour ({extracted} extracted)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// Extraction, graph update, Leiden.

async fn extract(args: ExtractArgs) -> Result<()> {
    let documents = corpus_documents(&args.corpus)?;
    let chunked: Vec<(String, Vec<String>)> = documents
        .iter()
        .map(|d| {
            let text = d.text.trim();
            let chunks = chunk_text(text, args.max_chars, args.overlap)
                .iter()
                .map(|span| span.slice(text).to_owned())
                .collect();
            (d.title.clone(), chunks)
        })
        .collect();
    let chunks: usize = chunked.iter().map(|(_, c)| c.len()).sum();
    let characters: usize = documents.iter().map(|d| d.text.chars().count()).sum();
    println!(
        "corpus: {} documents, {chunks} chunks of ≤ {} characters ({:.1} M characters)",
        documents.len(),
        args.max_chars,
        characters as f64 / 1e6
    );

    // The extractor, one document at a time (as the worker runs it), on one core.
    let extractor = RuleExtractor;
    let gazetteer = Gazetteer::default();
    let start = Instant::now();
    let extractions: Vec<Extraction> = chunked
        .iter()
        .map(|(_, chunks)| {
            let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
            extractor.extract(&refs, &gazetteer)
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let entities: usize = extractions.iter().map(|e| e.entities.len()).sum();
    let relations: usize = extractions.iter().map(|e| e.relations.len()).sum();
    println!();
    println!("| step | chunks | seconds | chunks/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| rule extraction (one core; {entities} entities, {relations} relations recorded) | {chunks} | {seconds:.2} | {:.0} |",
        chunks as f64 / seconds
    );

    // The graph read model applying the extractions, as its runner does (batches of 100
    // documents per transaction).
    let events = graph_events(&chunked, &extractions)?;
    let temp = tempfile::tempdir()?;
    let mut stores = vec![(
        "SQLite",
        ReadStore::open(&ReadStoreConfig::Sqlite {
            path: temp.path().join("read.db"),
        })
        .await?,
    )];
    if let Some(url) = &args.database_url {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .context("connecting to --database-url")?;
        stores.push((
            "PostgreSQL",
            ReadStore::open(&ReadStoreConfig::Postgres { pool }).await?,
        ));
    }
    let projection: Arc<dyn Projection> = Arc::new(GraphProjection);
    for (name, store) in stores {
        create_read_models(&store, std::slice::from_ref(&projection)).await?;
        let start = Instant::now();
        for batch in events.chunks(200) {
            let mut tx = store.begin().await?;
            projection.apply(&mut tx, &Tables::LIVE, batch).await?;
            tx.commit().await?;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "| graph read model update, {name} | {chunks} | {seconds:.2} | {:.0} |",
            chunks as f64 / seconds
        );
    }

    // Leiden on the corpus's graph (NPMI-weighted co-occurrences, positive only), then on a
    // planted-partition graph, each next to leidenalg on the same edges.
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => temp.path().to_owned(),
    };
    println!();
    println!("| graph | nodes | edges | Plasma s | Plasma modularity | leidenalg s | leidenalg modularity | time ratio | modularity ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (nodes, edges) = corpus_graph(&extractions);
    compare_leiden(
        "corpus co-occurrence",
        nodes,
        &edges,
        &work,
        args.peer_python.as_ref(),
    )?;
    let (nodes, edges) = planted_partition(args.nodes, args.edges, 42);
    compare_leiden(
        "planted partition",
        nodes,
        &edges,
        &work,
        args.peer_python.as_ref(),
    )?;
    Ok(())
}

/// A `DocumentChunked` and a `DocumentEntitiesExtracted` event per document, as the store
/// would record them.
fn graph_events(
    chunked: &[(String, Vec<String>)],
    extractions: &[Extraction],
) -> Result<Vec<RecordedEvent>> {
    let tenant = TenantId::parse("bench").map_err(|e| anyhow!("{e}"))?;
    let mut events = Vec::with_capacity(chunked.len() * 2);
    let at = chrono::Utc::now();
    for (i, ((_, chunks), extraction)) in chunked.iter().zip(extractions).enumerate() {
        let document = Uuid::from_u128(i as u128 + 1);
        // Only the count matters to the graph.
        let spans = (0..chunks.len())
            .map(|index| ChunkSpan {
                index,
                start: index * 1000,
                end: (index + 1) * 1000,
            })
            .collect();
        let pair = [
            DocumentEvent::DocumentChunked {
                max_chars: 1000,
                overlap: 0,
                chunks: spans,
                at,
            },
            DocumentEvent::DocumentEntitiesExtracted {
                entities: extraction.entities.clone(),
                relations: extraction.relations.clone(),
                extractor: RuleExtractor.info(),
                at,
            },
        ];
        for (n, event) in pair.into_iter().enumerate() {
            let position = events.len() as i64 + 1;
            events.push(RecordedEvent {
                position,
                event_id: Uuid::from_u128(position as u128),
                tenant: tenant.clone(),
                aggregate_type: "Document".to_owned(),
                aggregate_id: document,
                sequence: n as i64 + 2,
                event_type: event.event_type(),
                event_version: 1,
                payload: serde_json::to_string(&event)?,
                correlation_id: document,
                causation_id: document,
                command_id: document,
                recorded_at: at,
                trace_parent: None,
            });
        }
    }
    Ok(events)
}

/// The corpus's graph as the read model weighs it: entities by key, co-occurrence over all
/// chunks, NPMI weights, positive ones only.
fn corpus_graph(extractions: &[Extraction]) -> (usize, Vec<(usize, usize, f64)>) {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut chunks_of: Vec<u64> = Vec::new();
    let mut shared: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut total = 0u64;
    for extraction in extractions {
        let mut by_chunk: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut local: HashMap<&str, usize> = HashMap::new();
        for entity in &extraction.entities {
            let next = ids.len();
            let node = *ids.entry(entity_key(&entity.name)).or_insert(next);
            if node == chunks_of.len() {
                chunks_of.push(0);
            }
            chunks_of[node] += entity.chunk_indexes.len() as u64;
            local.insert(entity.name.as_str(), node);
            for &chunk in &entity.chunk_indexes {
                by_chunk.entry(chunk).or_default().push(node);
            }
        }
        total += by_chunk.keys().last().map_or(0, |&c| c as u64 + 1);
        for relation in &extraction.relations {
            let (Some(&a), Some(&b)) = (
                local.get(relation.from.as_str()),
                local.get(relation.to.as_str()),
            ) else {
                continue;
            };
            let count = by_chunk
                .values()
                .filter(|nodes| nodes.contains(&a) && nodes.contains(&b))
                .count() as u64;
            *shared.entry((a.min(b), a.max(b))).or_default() += count.max(1);
        }
    }
    let edges = shared
        .into_iter()
        .map(|((a, b), n)| {
            (
                a,
                b,
                npmi(n, chunks_of[a].max(1), chunks_of[b].max(1), total.max(n)),
            )
        })
        .filter(|(_, _, w)| *w > 0.0)
        .collect();
    (ids.len(), edges)
}

/// A graph of `nodes` in communities of 50, `edges` edges, 80 % of them inside a community.
fn planted_partition(nodes: usize, edges: usize, seed: u64) -> (usize, Vec<(usize, usize, f64)>) {
    let mut state = seed;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let size = 50usize;
    let groups = (nodes / size).max(1);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(edges);
    while out.len() < edges {
        let a = (next() as usize) % nodes;
        let b = if next() % 10 < 8 {
            let group = (a / size).min(groups - 1);
            (group * size + (next() as usize) % size).min(nodes - 1)
        } else {
            (next() as usize) % nodes
        };
        if a != b && seen.insert((a.min(b), a.max(b))) {
            out.push((a.min(b), a.max(b), 1.0));
        }
    }
    (nodes, out)
}

#[derive(Debug, Deserialize)]
struct PeerAnswer {
    modularity: f64,
    seconds: f64,
    their_modularity: Option<f64>,
}

fn compare_leiden(
    name: &str,
    nodes: usize,
    edges: &[(usize, usize, f64)],
    work: &std::path::Path,
    peer: Option<&PathBuf>,
) -> Result<()> {
    let graph = Graph::from_edges(nodes, edges);
    let options = LeidenOptions::default();
    let start = Instant::now();
    let membership = leiden(&graph, &options);
    let ours_seconds = start.elapsed().as_secs_f64();
    let ours = modularity(&graph, &membership, options.resolution);
    let Some(peer) = peer else {
        println!(
            "| {name} | {nodes} | {} | {ours_seconds:.2} | {ours:.4} | – | – | – | – |",
            edges.len()
        );
        return Ok(());
    };
    let slug: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let edges_path = work.join(format!("{slug}.tsv"));
    let membership_path = work.join(format!("{slug}.membership"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&edges_path)?);
    writeln!(file, "# nodes {nodes}")?;
    for (a, b, w) in edges {
        writeln!(file, "{a}\t{b}\t{w}")?;
    }
    file.flush()?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&membership_path)?);
    for community in &membership {
        writeln!(file, "{community}")?;
    }
    file.flush()?;
    let output = std::process::Command::new(peer)
        .arg("scripts/leiden-compare.py")
        .arg(&edges_path)
        .arg("--membership")
        .arg(&membership_path)
        .output()
        .context("running scripts/leiden-compare.py")?;
    if !output.status.success() {
        bail!(
            "leiden-compare.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let answer: PeerAnswer = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parsing {}", String::from_utf8_lossy(&output.stdout)))?;
    // Both partitions scored by igraph's formula.
    let ours_scored = answer.their_modularity.unwrap_or(ours);
    println!(
        "| {name} | {nodes} | {} | {ours_seconds:.2} | {ours_scored:.4} | {:.2} | {:.4} | {:.1}× faster | {:.4} |",
        edges.len(),
        answer.seconds,
        answer.modularity,
        answer.seconds / ours_seconds.max(1e-9),
        ours_scored / answer.modularity
    );
    Ok(())
}
