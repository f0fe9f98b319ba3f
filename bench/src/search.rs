//! `plasma bench search`: research search measured through a running `plasma` over HTTP.
//!
//! - `quality`: the labelled Python FAQ set (`data/python-faq/`, 174 questions, each with the
//!   chunks of its own answer as the relevant ones): recall@10 and MRR@10 of lexical search,
//!   vector search with each model, and vector and lexical fused with each model.
//! - `scale`: a corpus of at least 100,000 chunks (real text: Debian's Python and Perl
//!   documentation), ingested through the API and embedded and indexed by the platform's own
//!   pipeline; then recall@10 of the HNSW index against exact search, over a range of
//!   `hnsw.ef_search` values, straight on PostgreSQL; then search latency through HTTP at a
//!   fixed request rate (open loop: each latency counts from the request's scheduled time).
//!
//! `scripts/bench-search.sh` starts the servers, installs the corpus and runs both.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use futures::{stream, StreamExt, TryStreamExt};
use plasma_adapters::embedding::default_models_dir;
use plasma_adapters::KnownModel;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct SearchBenchArgs {
    #[command(subcommand)]
    part: Part,
}

#[derive(Debug, Subcommand)]
enum Part {
    /// Retrieval quality on the labelled Python FAQ set.
    Quality(QualityArgs),
    /// HNSW recall against exact search and HTTP latency over ≥ 100,000 chunks.
    Scale(ScaleArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Server {
    /// The running plasma's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// A token of the tenant to load and search (`plasma token --tenant T --role admin`).
    #[arg(long, env = "PLASMA_BENCH_TOKEN")]
    pub(crate) token: String,
}

#[derive(Debug, Args)]
struct QualityArgs {
    #[command(flatten)]
    server: Server,
    /// The labelled set.
    #[arg(long, default_value = "data/python-faq/faq.json")]
    faq: PathBuf,
    /// The embedding models the server runs (each is measured alone and fused with lexical).
    #[arg(long, value_delimiter = ',', default_values_t = [
        "all-MiniLM-L6-v2".to_owned(), "wordllama-l2-supercat-256".to_owned()])]
    models: Vec<String>,
    /// A name for the server's store in the output (sqlite, postgres).
    #[arg(long, default_value = "server")]
    label: String,
}

#[derive(Debug, Args)]
struct ScaleArgs {
    #[command(flatten)]
    server: Server,
    /// The server's PostgreSQL (read models), for recall against exact search.
    #[arg(long, env = "PLASMA_DATABASE_URL")]
    database_url: String,
    /// Directories of text files (.txt, .rst, .pod) to ingest, one document per file.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// The questions searched for (the labelled set's).
    #[arg(long, default_value = "data/python-faq/faq.json")]
    faq: PathBuf,
    /// The model the server embeds with.
    #[arg(long, default_value = "wordllama-l2-supercat-256")]
    model: String,
    /// The models dir, for embedding the questions here (`scripts/install-models.sh`).
    #[arg(long, env = "PLASMA_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Chunking of the corpus.
    #[arg(long, default_value_t = 200)]
    max_chars: usize,
    #[arg(long, default_value_t = 0)]
    overlap: usize,
    /// At least this many chunks, or the run fails.
    #[arg(long, default_value_t = 100_000)]
    min_chunks: u64,
    /// Search requests per second through HTTP.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Seconds of requests per search mode.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
}

pub async fn search(args: SearchBenchArgs) -> Result<()> {
    match args.part {
        Part::Quality(args) => quality(args).await,
        Part::Scale(args) => scale(args).await,
    }
}

#[derive(Debug, Deserialize)]
struct FaqFile {
    entries: Vec<FaqEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FaqEntry {
    pub(crate) page: String,
    pub(crate) question: String,
    pub(crate) answer: String,
}

pub(crate) fn read_faq(path: &Path) -> Result<Vec<FaqEntry>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let file: FaqFile = serde_json::from_str(&text).with_context(|| format!("parsing {path:?}"))?;
    Ok(file.entries)
}

/// The running plasma, over HTTP.
pub(crate) struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    pub(crate) fn new(server: &Server) -> Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(64)
                .build()?,
            url: server.url.trim_end_matches('/').to_owned(),
            token: server.token.clone(),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.bearer_auth(&self.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{status}: {body}");
        }
        Ok(body)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.client.post(format!("{}{path}", self.url)).json(body))
            .await
            .with_context(|| format!("POST {path}"))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
            .with_context(|| format!("GET {path}"))
    }

    async fn text(&self, path: &str) -> Result<String> {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(response.error_for_status()?.text().await?)
    }
}

/// A document to ingest.
pub(crate) struct NewDocument {
    pub(crate) title: String,
    pub(crate) source: String,
    pub(crate) text: String,
}

/// Ingests `documents` (8 requests in flight) and answers their ids, in order, and the
/// position of the last event.
pub(crate) async fn ingest(
    api: &Api,
    documents: Vec<NewDocument>,
    chunking: Option<(usize, usize)>,
) -> Result<(Vec<Uuid>, i64)> {
    let answers: Vec<(Uuid, i64)> = stream::iter(documents.into_iter().map(|doc| {
        let mut body = json!({"title": doc.title, "source": doc.source, "text": doc.text});
        if let Some((max_chars, overlap)) = chunking {
            body["max_chars"] = json!(max_chars);
            body["overlap"] = json!(overlap);
        }
        async move {
            let answer = api.post("/v1/documents", &body).await?;
            let id = answer["aggregate_id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
                .ok_or_else(|| anyhow!("no aggregate_id in {answer}"))?;
            Ok::<_, anyhow::Error>((id, answer["position"].as_i64().unwrap_or(0)))
        }
    }))
    .buffered(8)
    .try_collect()
    .await?;
    let last = answers.iter().map(|(_, p)| *p).max().unwrap_or(0);
    Ok((answers.into_iter().map(|(id, _)| id).collect(), last))
}

/// Every document's chunk count, once the documents read model has reached `position`.
pub(crate) async fn chunk_counts(api: &Api, position: i64) -> Result<HashMap<Uuid, u64>> {
    let mut counts = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/documents?limit=500&min_position={position}");
        if let Some(cursor) = &after {
            path.push_str(&format!("&after={cursor}"));
        }
        let page = api.get(&path).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let id = item["document_id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
                .ok_or_else(|| anyhow!("no document_id in {item}"))?;
            counts.insert(id, item["chunk_count"].as_u64().unwrap_or(0));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => return Ok(counts),
        }
    }
}

/// Chunks each model's embedding worker has recorded, from the server's metrics.
async fn embedded_chunks(api: &Api) -> Result<HashMap<String, u64>> {
    let text = api.text("/metrics").await?;
    let mut counts = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("plasma_embedding_chunks_total{model=\"") else {
            continue;
        };
        let Some((key, value)) = rest.split_once("\"}") else {
            continue;
        };
        let name = key.split('@').next().unwrap_or(key).to_owned();
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *counts.entry(name).or_insert(0) += value as u64;
    }
    Ok(counts)
}

/// Waits until every model's worker has embedded `chunks` chunks and the chunks index has
/// applied everything stored; answers how long that took.
pub(crate) async fn wait_indexed(api: &Api, models: &[String], chunks: u64) -> Result<Duration> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(3600);
    let mut last_report = Instant::now();
    loop {
        let embedded = embedded_chunks(api).await?;
        let done = models
            .iter()
            .all(|m| embedded.get(m).copied().unwrap_or(0) >= chunks);
        if done {
            let ready = api
                .client
                .get(format!("{}/ready", api.url))
                .send()
                .await?
                .json::<Value>()
                .await?;
            let lag = ready["projections"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "chunks")
                .and_then(|p| p["lag"].as_i64());
            if lag == Some(0) {
                return Ok(start.elapsed());
            }
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!("  waiting for the index: embedded {embedded:?} of {chunks}");
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            bail!("not indexed within an hour: {embedded:?} of {chunks}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What one search answered: (document, chunk index) pairs, best first.
pub(crate) fn hits(answer: &Value) -> Vec<(Uuid, i64)> {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                Uuid::parse_str(r["document_id"].as_str()?).ok()?,
                r["chunk_index"].as_i64()?,
            ))
        })
        .collect()
}

/// Recall@10 and MRR@10 of one configuration over the labelled queries.
#[derive(Debug, Default)]
struct Quality {
    recall: f64,
    reciprocal_rank: f64,
    queries: usize,
    latencies: Vec<f64>,
}

async fn quality(args: QualityArgs) -> Result<()> {
    let api = Api::new(&args.server)?;
    let entries = read_faq(&args.faq)?;
    let documents = entries
        .iter()
        .map(|e| NewDocument {
            title: e.question.clone(),
            source: format!("https://docs.python.org/3.11/faq/{}.html", e.page),
            text: e.answer.clone(),
        })
        .collect();
    let (ids, position) = ingest(&api, documents, None).await?;
    let counts = chunk_counts(&api, position).await?;
    let chunks: u64 = ids
        .iter()
        .map(|id| counts.get(id).copied().unwrap_or(0))
        .sum();
    let waited = wait_indexed(&api, &args.models, chunks).await?;
    eprintln!(
        "{}: {} documents, {chunks} chunks, embedded and indexed in {:.1} s",
        args.label,
        ids.len(),
        waited.as_secs_f64()
    );

    let mut configurations: Vec<(String, Value)> =
        vec![("lexical".into(), json!({"mode": "lexical"}))];
    for model in &args.models {
        configurations.push((
            format!("vector {model}"),
            json!({"mode": "vector", "model": model}),
        ));
    }
    for model in &args.models {
        configurations.push((
            format!("vector+lexical {model}"),
            json!({"mode": "vector_lexical", "model": model}),
        ));
    }
    println!("| {} | recall@10 | MRR@10 | p50 ms |", args.label);
    println!("|---|---|---|---|");
    for (name, config) in configurations {
        let mut measured = Quality::default();
        for (entry, id) in entries.iter().zip(&ids) {
            let mut body = config.clone();
            body["query"] = json!(entry.question);
            body["k"] = json!(10);
            let start = Instant::now();
            let answer = api.post("/v1/research/search", &body).await?;
            measured.latencies.push(start.elapsed().as_secs_f64() * 1e3);
            let relevant = counts.get(id).copied().unwrap_or(1).max(1);
            let found = hits(&answer);
            let matching: Vec<usize> = found
                .iter()
                .enumerate()
                .filter(|(_, (doc, _))| doc == id)
                .map(|(rank, _)| rank)
                .collect();
            measured.recall += matching.len() as f64 / relevant.min(10) as f64;
            if let Some(first) = matching.first() {
                measured.reciprocal_rank += 1.0 / (*first as f64 + 1.0);
            }
            measured.queries += 1;
        }
        let n = measured.queries.max(1) as f64;
        println!(
            "| {name} | {:.3} | {:.3} | {:.1} |",
            measured.recall / n,
            measured.reciprocal_rank / n,
            percentile(&mut measured.latencies, 0.50)
        );
    }
    Ok(())
}

/// The `p` quantile (0..=1) of `values`, nearest rank.
pub(crate) fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Every text file under `dirs`, as documents of at most `MAX_TEXT` characters (longer files
/// in parts).
pub(crate) fn corpus_documents(dirs: &[PathBuf]) -> Result<Vec<NewDocument>> {
    const MAX_TEXT: usize = 900_000;
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(dir, &mut files)?;
    }
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not UTF-8
        };
        let chars: Vec<char> = text.chars().collect();
        for (part, piece) in chars.chunks(MAX_TEXT).enumerate() {
            let text: String = piece.iter().collect();
            if text.trim().len() < 20 {
                continue;
            }
            let name = file.to_string_lossy().into_owned();
            documents.push(NewDocument {
                title: format!(
                    "{} ({})",
                    file.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    part + 1
                ),
                source: name,
                text,
            });
        }
    }
    Ok(documents)
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {dir:?}"))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "txt" || e == "rst" || e == "pod")
        {
            files.push(path);
        }
    }
    Ok(())
}

async fn scale(args: ScaleArgs) -> Result<()> {
    let api = Api::new(&args.server)?;
    let models_dir = args.models_dir.clone().unwrap_or_else(default_models_dir);
    let model =
        KnownModel::parse(&args.model).ok_or_else(|| anyhow!("unknown model {}", args.model))?;
    let table = match model {
        KnownModel::MiniLm => "rm_chunk_vectors_minilm",
        KnownModel::WordLlama => "rm_chunk_vectors_wordllama",
    };
    let embedder = model.load(&models_dir)?;

    let documents = corpus_documents(&args.corpus)?;
    let characters: usize = documents.iter().map(|d| d.text.len()).sum();
    eprintln!("corpus: {} documents, {characters} bytes", documents.len());
    let started = Instant::now();
    let (ids, position) = ingest(&api, documents, Some((args.max_chars, args.overlap))).await?;
    let ingested = started.elapsed();
    let counts = chunk_counts(&api, position).await?;
    let chunks: u64 = ids
        .iter()
        .map(|id| counts.get(id).copied().unwrap_or(0))
        .sum();
    eprintln!(
        "ingested and chunked {} documents ({chunks} chunks) in {:.1} s",
        ids.len(),
        ingested.as_secs_f64()
    );
    if chunks < args.min_chunks {
        bail!("{chunks} chunks, fewer than {}", args.min_chunks);
    }
    let waited = wait_indexed(&api, std::slice::from_ref(&args.model), chunks).await?;
    let pipeline = started.elapsed();
    println!(
        "pipeline: {} documents, {chunks} chunks ingested, chunked, embedded ({}) and indexed \
         (pgvector HNSW) in {:.1} s = {:.0} chunks/s (index catch-up after the last ingest: {:.1} s)",
        ids.len(),
        args.model,
        pipeline.as_secs_f64(),
        chunks as f64 / pipeline.as_secs_f64(),
        waited.as_secs_f64()
    );

    let questions: Vec<String> = read_faq(&args.faq)?
        .into_iter()
        .map(|e| e.question)
        .collect();
    let refs: Vec<&str> = questions.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&pool)
        .await?;
    println!(
        "recall@10 of HNSW against exact search, {} questions over {total} vectors:",
        questions.len()
    );
    println!("| hnsw.ef_search | recall@10 | SQL p50 ms | SQL p99 ms |");
    println!("|---|---|---|---|");
    let mut exact = Vec::new();
    let mut exact_ms = Vec::new();
    for vector in &vectors {
        let start = Instant::now();
        exact.push(top_ten(&pool, table, vector, None).await?);
        exact_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    for ef in [40, 64, 100, 200, 400] {
        let mut recall = 0.0;
        let mut ms = Vec::new();
        for (vector, truth) in vectors.iter().zip(&exact) {
            let start = Instant::now();
            let found = top_ten(&pool, table, vector, Some(ef)).await?;
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            let truth: HashSet<&(Uuid, i64)> = truth.iter().collect();
            recall += found.iter().filter(|hit| truth.contains(hit)).count() as f64
                / truth.len().max(1) as f64;
        }
        println!(
            "| {ef} | {:.3} | {:.2} | {:.2} |",
            recall / vectors.len().max(1) as f64,
            percentile(&mut ms, 0.50),
            percentile(&mut ms, 0.99)
        );
    }
    println!(
        "| exact | 1.000 | {:.2} | {:.2} |",
        percentile(&mut exact_ms, 0.50),
        percentile(&mut exact_ms, 0.99)
    );

    println!(
        "through HTTP at {} requests/s for {} s each (open loop):",
        args.rate, args.seconds
    );
    println!("| mode | requests | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for mode in ["vector", "vector_lexical", "lexical"] {
        let (mut latencies, errors) =
            steady_searches(&api, &questions, mode, &args.model, args.rate, args.seconds).await;
        let n = latencies.len();
        println!(
            "| {mode} | {} | {errors} | {:.1} | {:.1} | {:.1} |",
            n + errors,
            percentile(&mut latencies, 0.50),
            percentile(&mut latencies, 0.99),
            percentile(&mut latencies, 1.0)
        );
    }
    Ok(())
}

/// The ten nearest (document, chunk) pairs: by the HNSW index with `ef_search` candidates, or
/// exactly (every vector compared) without.
async fn top_ten(
    pool: &sqlx::PgPool,
    table: &str,
    vector: &[f32],
    ef_search: Option<i64>,
) -> Result<Vec<(Uuid, i64)>> {
    let text = format!(
        "[{}]",
        vector
            .iter()
            .map(f32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let order = if ef_search.is_some() {
        "embedding <=> $1::vector"
    } else {
        "(embedding <=> $1::vector) + 0"
    };
    let mut tx = pool.begin().await?;
    if let Some(ef) = ef_search {
        sqlx::query(&format!("SET LOCAL hnsw.ef_search = {ef}"))
            .execute(&mut *tx)
            .await?;
    }
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT document_id, chunk_index FROM {table} ORDER BY {order} LIMIT 10"
    ))
    .bind(&text)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Searches at `args.rate` per second for `args.seconds`, each request sent at its scheduled
/// time whatever the earlier ones are doing; answers the latencies (ms, from the scheduled
/// time) of the successful ones and how many failed.
pub(crate) async fn steady_searches(
    api: &Api,
    questions: &[String],
    mode: &str,
    model: &str,
    rate: u32,
    seconds: u32,
) -> (Vec<f64>, usize) {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let requests = (0..total).map(|i| {
        let scheduled = start + interval * i as u32;
        let question = &questions[i % questions.len().max(1)];
        let body = json!({"query": question, "mode": mode, "model": model, "k": 10});
        async move {
            tokio::time::sleep_until(scheduled).await;
            let result = api.post("/v1/research/search", &body).await;
            (result.is_ok(), scheduled.elapsed().as_secs_f64() * 1e3)
        }
    });
    // Every request in flight at once if need be: the schedule, not the answers, paces them.
    let results: Vec<(bool, f64)> = stream::iter(requests)
        .buffer_unordered(total.max(1))
        .collect()
        .await;
    let errors = results.iter().filter(|(ok, _)| !ok).count();
    let latencies = results
        .into_iter()
        .filter(|(ok, _)| *ok)
        .map(|(_, ms)| ms)
        .collect();
    (latencies, errors)
}
