//! The embedding worker on both stores with a real model: every chunked document gets exactly
//! one set of vectors per model, handling the same events again records nothing, and a worker
//! killed with SIGKILL mid-batch and started again loses nothing and doubles nothing.
//!
//! The SIGKILL test re-executes this test binary as the child (`PLASMA_EMBED_CHILD` set), which
//! runs the worker until killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use plasma_adapters::KnownModel;
use plasma_commands::{CommandContext, CommandHandler, EventStore};
use plasma_domain::ids::{CommandId, DocumentId};
use plasma_domain::research::{Document, DocumentCommand, DocumentEvent, Embedder};
use plasma_domain::{AggregateId, TenantId};
use plasma_processes::embedding::EmbeddingWorker;
use plasma_processes::{Process, ProcessOptions, ProcessRunner};
use plasma_projections::checkpoint::{self, Checkpoint};
use plasma_projections::{ReadStore, StoreSubscription};
use uuid::Uuid;

use common::{fixture, open, Fixture, Location};

const CHILD_ENV: &str = "PLASMA_EMBED_CHILD";
const DOCUMENTS: usize = 120;

fn models_dir() -> PathBuf {
    std::env::var_os("PLASMA_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/plasma/models")))
        .unwrap()
}

fn embedder(model: KnownModel) -> Arc<dyn Embedder> {
    match model.load(&models_dir()) {
        Ok(embedder) => Arc::from(embedder),
        Err(err) => panic!("{err} (run scripts/install-models.sh)"),
    }
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn context() -> CommandContext {
    CommandContext::new(tenant(), CommandId::from_uuid(Uuid::now_v7()), None)
}

/// `count` documents, ingested and chunked (three to five chunks each).
async fn seed(store: &EventStore, count: usize) -> Vec<DocumentId> {
    let handler = CommandHandler::new(store.clone());
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap();
    let mut ids = Vec::new();
    for i in 0..count {
        let id = DocumentId::from_uuid(Uuid::now_v7());
        let paragraphs: Vec<String> = (0..3 + i % 3)
            .map(|p| {
                format!(
                    "Report {i}, part {p}: the river delta gained sediment while the harbour \
                     authority dredged the channel. Fishermen reported record catches near \
                     the mouth, and the council debated a new flood barrier for the town."
                )
            })
            .collect();
        let commands = [
            DocumentCommand::Ingest {
                title: format!("Report {i}"),
                source: format!("https://example.org/reports/{i}"),
                text: paragraphs.join("\n\n"),
                chunking: None,
                at,
            },
            DocumentCommand::Chunk {
                max_chars: 250,
                overlap: 0,
                at,
            },
        ];
        for command in commands {
            handler
                .execute::<Document>(&context(), id.as_uuid(), command, &())
                .await
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

/// How many vector sets each document has for `model`, and whether each covers every chunk.
async fn embeddings_per_document(
    store: &EventStore,
    ids: &[DocumentId],
    model: &str,
) -> Vec<usize> {
    let mut counts = Vec::new();
    for id in ids {
        let stream = store
            .load_stream(&tenant(), "Document", id.as_uuid())
            .await
            .unwrap();
        let mut chunks = 0;
        let mut sets = 0;
        for event in &stream.events {
            match event.decode::<DocumentEvent>().unwrap() {
                DocumentEvent::DocumentChunked { chunks: spans, .. } => chunks = spans.len(),
                DocumentEvent::DocumentChunksEmbedded {
                    model: m, vectors, ..
                } if m.name == model => {
                    assert_eq!(vectors.len(), chunks, "a vector per chunk of {id}");
                    sets += 1;
                }
                _ => {}
            }
        }
        counts.push(sets);
    }
    counts
}

async fn runner(
    store: &EventStore,
    read: &ReadStore,
    embedder: Arc<dyn Embedder>,
) -> ProcessRunner<StoreSubscription> {
    let worker: Arc<dyn Process> = Arc::new(EmbeddingWorker::new(
        CommandHandler::new(store.clone()),
        embedder,
    ));
    ProcessRunner::start(
        read.clone(),
        worker,
        StoreSubscription::new(store.clone()),
        ProcessOptions::default(),
    )
    .await
    .unwrap()
}

plasma_testkit::on_both_backends!(
    fixture;
    every_chunked_document_gets_one_set_of_vectors_and_a_second_pass_records_nothing,
    a_worker_killed_mid_batch_and_started_again_loses_and_doubles_nothing,
    a_request_re_embeds_vectors_of_an_older_version_and_the_index_holds_only_the_new,
);

async fn every_chunked_document_gets_one_set_of_vectors_and_a_second_pass_records_nothing(
    fixture: Fixture,
) {
    let (store, read) = open(&fixture.location).await;
    let ids = seed(&store, 6).await;
    let embedder = embedder(KnownModel::MiniLm);
    let model = embedder.model().clone();
    let mut first = runner(&store, &read, embedder.clone()).await;
    first.catch_up().await.unwrap();
    assert_eq!(
        embeddings_per_document(&store, &ids, &model.name).await,
        vec![1; ids.len()]
    );
    let head = store.head().await.unwrap();

    // As if the worker had died before saving its checkpoint: it handles everything again.
    let name = EmbeddingWorker::new(CommandHandler::new(store.clone()), embedder.clone())
        .name()
        .to_owned();
    let mut tx = read.begin().await.unwrap();
    checkpoint::save(&mut tx, &name, &Checkpoint { position: 0 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut again = runner(&store, &read, embedder).await;
    again.catch_up().await.unwrap();
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "nothing new was recorded"
    );
    assert_eq!(
        embeddings_per_document(&store, &ids, &model.name).await,
        vec![1; ids.len()]
    );

    // The vectors are the model's: a chunk's recorded vector equals embedding it now.
    let document = CommandHandler::new(store.clone())
        .load::<Document>(&context(), ids[0].as_uuid())
        .await
        .unwrap()
        .0;
    let stream = store
        .load_stream(&tenant(), "Document", ids[0].as_uuid())
        .await
        .unwrap();
    let recorded = stream
        .events
        .iter()
        .find_map(|e| match e.decode::<DocumentEvent>().unwrap() {
            DocumentEvent::DocumentChunksEmbedded { vectors, .. } => Some(vectors),
            _ => None,
        })
        .unwrap();
    let text = document.chunks[1].slice(&document.text);
    let now = load_and_embed(KnownModel::MiniLm, text);
    let similarity = plasma_domain::research::cosine(&recorded[1].vector, &now);
    assert!(similarity > 0.9999, "{similarity}");
}

fn load_and_embed(model: KnownModel, text: &str) -> Vec<f32> {
    embedder(model).embed(&[text]).unwrap().remove(0)
}

async fn a_worker_killed_mid_batch_and_started_again_loses_and_doubles_nothing(fixture: Fixture) {
    let (store, read) = open(&fixture.location).await;
    let ids = seed(&store, DOCUMENTS).await;
    let model = KnownModel::WordLlama;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_runs_the_embedding_worker_until_killed",
            "--nocapture",
        ])
        .env(CHILD_ENV, fixture.location.to_env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some documents are embedded, before it could save the batch's checkpoint.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: usize = embeddings_per_document(&store, &ids, model.name())
            .await
            .iter()
            .sum();
        if done >= DOCUMENTS / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child embedded {done} documents"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let counts = embeddings_per_document(&store, &ids, model.name()).await;
    let before_restart: usize = counts.iter().sum();
    assert!(
        before_restart < DOCUMENTS,
        "the kill came too late to land mid-batch"
    );

    let mut restarted = runner(&store, &read, embedder(model)).await;
    restarted.catch_up().await.unwrap();
    assert_eq!(
        embeddings_per_document(&store, &ids, model.name()).await,
        vec![1; DOCUMENTS],
        "every document has exactly one set of vectors after the restart"
    );
}

/// Not a test of its own: the child process of the SIGKILL test (does nothing unless
/// `PLASMA_EMBED_CHILD` is set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_runs_the_embedding_worker_until_killed() {
    let Ok(raw) = std::env::var(CHILD_ENV) else {
        return;
    };
    let location = Location::from_env(&raw);
    let (store, read) = open(&location).await;
    let mut runner = runner(&store, &read, embedder(KnownModel::WordLlama)).await;
    runner.catch_up().await.unwrap();
    // Finished before the kill: wait for it.
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// A worker that already passed the documents (they carry vectors of an older version of its
/// model) re-embeds one when asked to, once, and the chunks index replaces the old vectors
/// rather than adding to them. A request naming another model is not this worker's.
async fn a_request_re_embeds_vectors_of_an_older_version_and_the_index_holds_only_the_new(
    fixture: Fixture,
) {
    let (store, read) = open(&fixture.location).await;
    let ids = seed(&store, 2).await;
    let embedder = embedder(KnownModel::WordLlama);
    let model = embedder.model().clone();
    let old = plasma_domain::research::EmbeddingModel {
        version: "0.0.1-old".into(),
        ..model.clone()
    };
    let handler = CommandHandler::new(store.clone());
    let at = Utc
        .with_ymd_and_hms(2026, 11, 1, 10, 0, 0)
        .single()
        .unwrap();
    for id in &ids {
        let document = handler
            .load::<Document>(&context(), id.as_uuid())
            .await
            .unwrap()
            .0;
        // Stand-ins for the old version's vectors: unit vectors along one axis.
        let vectors = (0..document.chunks.len())
            .map(|chunk| plasma_domain::research::ChunkVector {
                chunk,
                vector: {
                    let mut v = vec![0.0; model.dimension as usize];
                    v[0] = 1.0;
                    v
                },
            })
            .collect();
        let record = DocumentCommand::RecordEmbeddings {
            model: old.clone(),
            vectors,
            at,
        };
        handler
            .execute::<Document>(&context(), id.as_uuid(), record, &())
            .await
            .unwrap();
    }
    let chunks = plasma_projections::ChunksProjection;
    let mut index = plasma_projections::ProjectionRunner::start(
        read.clone(),
        Arc::new(chunks),
        StoreSubscription::new(store.clone()),
        plasma_projections::RunnerOptions::default(),
    )
    .await
    .unwrap();
    plasma_projections::catch_up(&mut index).await.unwrap();

    // The worker has passed everything before the requests.
    let name = EmbeddingWorker::new(handler.clone(), embedder.clone())
        .name()
        .to_owned();
    let mut tx = read.begin().await.unwrap();
    checkpoint::save(
        &mut tx,
        &name,
        &Checkpoint {
            position: store.head().await.unwrap(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let request = |model: &str| DocumentCommand::RequestEmbedding {
        model: model.to_owned(),
        at,
    };
    for (id, asked) in [(ids[0], model.name.as_str()), (ids[1], "all-MiniLM-L6-v2")] {
        handler
            .execute::<Document>(&context(), id.as_uuid(), request(asked), &())
            .await
            .unwrap();
    }
    let mut worker = runner(&store, &read, embedder.clone()).await;
    worker.catch_up().await.unwrap();
    assert_eq!(
        embeddings_per_document(&store, &ids, &model.name).await,
        vec![2, 1],
        "the old set and the new one for the document asked for; nothing for the other"
    );

    // Asked again: its current version is recorded already, so nothing happens.
    handler
        .execute::<Document>(&context(), ids[0].as_uuid(), request(&model.name), &())
        .await
        .unwrap();
    worker.catch_up().await.unwrap();
    assert_eq!(
        embeddings_per_document(&store, &ids, &model.name).await,
        vec![2, 1]
    );

    plasma_projections::catch_up(&mut index).await.unwrap();
    let reads = plasma_projections::ReadModels::new(read.clone());
    let document = handler
        .load::<Document>(&context(), ids[0].as_uuid())
        .await
        .unwrap()
        .0;
    let indexed = reads
        .chunk_vectors(&tenant(), &model.name, model.dimension, ids[0], None)
        .await
        .unwrap();
    assert_eq!(indexed.len(), document.chunks.len(), "one vector per chunk");
    for (chunk, vector) in document.chunks.iter().zip(&indexed) {
        let now = embedder.embed(&[chunk.slice(&document.text)]).unwrap();
        let similarity = plasma_domain::research::cosine(vector, &now[0]);
        assert!(similarity > 0.999, "the new version's vector: {similarity}");
    }
    let untouched = reads
        .chunk_vectors(&tenant(), &model.name, model.dimension, ids[1], None)
        .await
        .unwrap();
    assert!(
        untouched.iter().all(|v| v[0] == 1.0),
        "the old vectors stay"
    );
}
