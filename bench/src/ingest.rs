//! `plasma bench ingest`: mention ingest throughput on both stores, next to stock postgres-es
//! and a raw COPY ceiling, all on the same generated data in one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{TimeZone, Utc};
use clap::Args;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::CqrsFramework;
use plasma_adapters::VaderScorer;
use plasma_commands::{CommandContext, CommandHandler, EventStore, MentionInput, StoreConfig};
use plasma_domain::brand::{
    Brand, BrandCommand, IngestMention, Mention, MentionCommand, MentionServices, VoiceGuidelines,
};
use plasma_domain::ids::{BrandId, CommandId};
use plasma_domain::{AggregateId, TenantId};
use plasma_projections::{
    projection_named, ProjectionRunner, ReadStore, ReadStoreConfig, RunnerOptions, Step,
    StoreSubscription,
};
use postgres_es::PostgresEventRepository;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::mentions::{self, MentionGenerator, Tone, Window};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Mentions to ingest on each store.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Mentions per bulk command.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Mentions for the stock postgres-es baseline (one command each; it is slow).
    #[arg(long, default_value_t = 5_000)]
    baseline_events: usize,
    /// Concurrent clients sending commands, for our ingest and the stock baseline alike.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// A PostgreSQL server to measure on: the URL of a database whose user may create
    /// databases (the bench creates fresh ones). Without it, only SQLite is measured.
    #[arg(long, env = "PLASMA_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Where the SQLite files go (a fresh temp dir by default).
    #[arg(long)]
    sqlite_dir: Option<std::path::PathBuf>,
}

struct Measured {
    what: String,
    events: usize,
    elapsed: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn ingest(args: IngestArgs) -> Result<()> {
    if args.batch == 0 || args.events == 0 || args.clients == 0 {
        bail!("--events, --batch and --clients must be positive");
    }
    let mentions = generate_mentions(args.events);
    let avg_text: usize = mentions.iter().map(|m| m.text.len()).sum::<usize>() / mentions.len();
    eprintln!(
        "generated {} mentions (average text {avg_text} bytes); batches of {}; {} concurrent clients",
        mentions.len(),
        args.batch,
        args.clients
    );
    let mentions = Arc::new(mentions);
    let mut results = Vec::new();

    // SQLite (embedded).
    let temp = tempfile::tempdir().context("creating a temp dir")?;
    let sqlite_dir = args
        .sqlite_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    let store = EventStore::open(&StoreConfig::Sqlite {
        path: sqlite_dir.join("bench-events.db"),
    })
    .await?;
    let read = ReadStore::open(&ReadStoreConfig::Sqlite {
        path: sqlite_dir.join("bench-read.db"),
    })
    .await?;
    results.push(
        bulk_ingest(
            "SQLite bulk ingest",
            &store,
            &mentions,
            args.batch,
            args.clients,
        )
        .await?,
    );
    results.push(catch_up_projections("SQLite projection catch-up", &store, &read).await?);

    if let Some(admin_url) = &args.database_url {
        let url = fresh_database(admin_url, "plasma_bench").await?;
        let store = EventStore::open(&StoreConfig::Postgres {
            url: url.clone(),
            max_connections: 8,
        })
        .await?;
        let pool = store
            .postgres_pool()
            .context("opened as PostgreSQL")?
            .clone();
        results.push(
            bulk_ingest(
                "PostgreSQL bulk ingest",
                &store,
                &mentions,
                args.batch,
                args.clients,
            )
            .await?,
        );
        results.push(copy_ceiling(&pool).await?);
        // The same append without VADER (every mention neutral), on a database of its own.
        let unscored = EventStore::open(&StoreConfig::Postgres {
            url: fresh_database(admin_url, "plasma_bench_unscored").await?,
            max_connections: 8,
        })
        .await?;
        results.push(
            bulk_ingest_with(
                "PostgreSQL bulk ingest, no scoring",
                &unscored,
                &mentions,
                args.batch,
                args.clients,
                || MentionServices {
                    scorer: Arc::new(NoScoring),
                },
            )
            .await?,
        );
        let read = ReadStore::open(&ReadStoreConfig::Postgres { pool }).await?;
        results.push(catch_up_projections("PostgreSQL projection catch-up", &store, &read).await?);

        let baseline_url = fresh_database(admin_url, "plasma_bench_baseline").await?;
        let n = args.baseline_events.min(mentions.len());
        results.push(stock_postgres_es(&baseline_url, &mentions[..n], args.clients).await?);
    }

    println!("| measurement | events | seconds | events/s |");
    println!("|---|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {:.2} | {:.0} |",
            r.what,
            r.events,
            r.elapsed.as_secs_f64(),
            r.per_second()
        );
    }
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.what == name)
            .map(Measured::per_second)
    };
    if let (Some(ours), Some(copy), Some(stock)) = (
        rate("PostgreSQL bulk ingest"),
        rate("PostgreSQL COPY ceiling (bare table)"),
        rate("stock postgres-es, one command per mention"),
    ) {
        println!();
        println!(
            "PostgreSQL bulk ingest = {:.0}% of the same-run COPY ceiling, {:.1}x stock postgres-es",
            100.0 * ours / copy,
            ours / stock
        );
    }
    Ok(())
}

/// The benchmark's mentions: the shared generator's, five sentences each (about the length of
/// a short post), spread over October 2026, the same in every run.
pub(crate) fn generate_mentions(n: usize) -> Vec<MentionInput> {
    let end = Utc
        .with_ymd_and_hms(2026, 10, 31, 0, 0, 0)
        .single()
        .unwrap_or_default();
    MentionGenerator::new(0x9E37_79B9_7F4A_7C15).generate(&mentions::Batch {
        brand: mentions::ACME,
        tone: Tone::Mixed,
        window: Window::Before { end, days: 30 },
        count: n,
        prefix: "m",
        sentences: 5,
    })
}

pub(crate) fn services() -> MentionServices {
    MentionServices {
        scorer: Arc::new(VaderScorer::new()),
    }
}

fn tenant() -> Result<TenantId> {
    Ok(TenantId::parse("bench")?)
}

pub(crate) fn context() -> Result<CommandContext> {
    Ok(CommandContext::new(
        tenant()?,
        CommandId::from_uuid(Uuid::now_v7()),
        None,
    ))
}

pub(crate) fn register_brand() -> BrandCommand {
    BrandCommand::Register {
        name: "Acme".into(),
        keywords: vec!["acme".into()],
        competitors: vec!["Globex".into(), "Initech".into()],
        voice: VoiceGuidelines::default(),
        at: Utc::now(),
    }
}

/// A scorer that does no work: every mention neutral. Only to measure the append without
/// VADER, next to peers that store events as given.
#[derive(Debug)]
struct NoScoring;

impl plasma_domain::brand::SentimentScorer for NoScoring {
    fn score_millis(&self, _text: &str) -> i16 {
        0
    }

    fn info(&self) -> plasma_domain::brand::ScorerInfo {
        plasma_domain::brand::ScorerInfo {
            name: "none".into(),
            version: "0".into(),
        }
    }
}

async fn bulk_ingest(
    what: &str,
    store: &EventStore,
    mentions: &Arc<Vec<MentionInput>>,
    batch: usize,
    clients: usize,
) -> Result<Measured> {
    bulk_ingest_with(what, store, mentions, batch, clients, services).await
}

async fn bulk_ingest_with(
    what: &str,
    store: &EventStore,
    mentions: &Arc<Vec<MentionInput>>,
    batch: usize,
    clients: usize,
    services: fn() -> MentionServices,
) -> Result<Measured> {
    let handler = CommandHandler::new(store.clone());
    let brand = BrandId::from_uuid(Uuid::now_v7());
    handler
        .execute::<Brand>(&context()?, brand.as_uuid(), register_brand(), &())
        .await?;
    let batches = mentions.len().div_ceil(batch);
    let started = Instant::now();
    // Client c sends batches c, c + clients, ...: each a separate bulk command.
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let handler = handler.clone();
            let mentions = mentions.clone();
            tokio::spawn(async move {
                let services = services();
                let mut ingested = 0usize;
                for b in (client..batches).step_by(clients) {
                    let chunk = &mentions[b * batch..((b + 1) * batch).min(mentions.len())];
                    let receipt = handler
                        .ingest_mentions(&context()?, brand, chunk.to_vec(), Utc::now(), &services)
                        .await?;
                    ingested += receipt.ingested as usize;
                }
                Ok::<_, anyhow::Error>(ingested)
            })
        })
        .collect();
    let mut ingested = 0;
    for task in tasks {
        ingested += task.await??;
    }
    let elapsed = started.elapsed();
    if ingested != mentions.len() {
        bail!("{what}: ingested {ingested} of {}", mentions.len());
    }
    eprintln!("{what}: {ingested} events in {elapsed:.2?}");
    Ok(Measured {
        what: what.to_owned(),
        events: ingested,
        elapsed,
    })
}

/// The mentions and brand-stats read models, fed concurrently from position 0 to the head.
async fn catch_up_projections(
    what: &str,
    store: &EventStore,
    read: &ReadStore,
) -> Result<Measured> {
    let head = store.head().await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for name in ["mentions", "brand_stats"] {
        let mut runner = ProjectionRunner::start(
            read.clone(),
            projection_named(name)?,
            StoreSubscription::new(store.clone()),
            RunnerOptions {
                batch_size: 5000,
                ..RunnerOptions::default()
            },
        )
        .await?;
        tasks.push(tokio::spawn(async move {
            while runner.step().await? != Step::CaughtUp {}
            Ok::<_, plasma_projections::ProjectionError>(runner.checkpoint().position)
        }));
    }
    for task in tasks {
        let position = task.await??;
        if position != head {
            bail!("{what}: stopped at {position}, head is {head}");
        }
    }
    let elapsed = started.elapsed();
    eprintln!("{what}: {head} events in {elapsed:.2?}");
    Ok(Measured {
        what: what.to_owned(),
        events: usize::try_from(head)?,
        elapsed,
    })
}

/// The same events, copied raw into a bare copy of the events table (no indexes, no outbox,
/// no scoring): the most this server could possibly append.
async fn copy_ceiling(pool: &sqlx::PgPool) -> Result<Measured> {
    let mut conn = pool.acquire().await?;
    sqlx::query("CREATE TABLE events_copy_ceiling (LIKE events INCLUDING DEFAULTS)")
        .execute(&mut *conn)
        .await?;
    let mut data = Vec::new();
    {
        use futures::TryStreamExt;
        let mut out = conn
            .copy_out_raw("COPY (SELECT * FROM events WHERE aggregate_type = 'Mention' ORDER BY position) TO STDOUT")
            .await?;
        while let Some(chunk) = out.try_next().await? {
            data.extend_from_slice(&chunk);
        }
    }
    let events = data.iter().filter(|&&b| b == b'\n').count();
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let mut copy = tx
        .copy_in_raw("COPY events_copy_ceiling FROM STDIN")
        .await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    tx.commit().await?;
    let elapsed = started.elapsed();
    eprintln!("COPY ceiling: {events} events in {elapsed:.2?}");
    Ok(Measured {
        what: "PostgreSQL COPY ceiling (bare table)".into(),
        events,
        elapsed,
    })
}

/// Stock postgres-es: one CqrsFramework command (one transaction) per mention, from the same
/// number of concurrent clients as our ingest.
async fn stock_postgres_es(
    url: &str,
    mentions: &[MentionInput],
    clients: usize,
) -> Result<Measured> {
    let pool = sqlx::PgPool::connect(url).await?;
    for ddl in [
        "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
         sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, \
         event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
         PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
        "CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
         last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, current_snapshot bigint \
         CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL, \
         PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
    ] {
        sqlx::query(ddl).execute(&pool).await?;
    }
    let framework = Arc::new(CqrsFramework::<Mention, _>::new(
        PersistedEventStore::new_event_store(PostgresEventRepository::new(pool)),
        vec![],
        services(),
    ));
    let tenant = tenant()?;
    let brand = BrandId::from_uuid(Uuid::now_v7());
    let commands: Vec<(String, MentionCommand)> = mentions
        .iter()
        .map(|m| {
            let ingest = IngestMention {
                brand_id: brand,
                mention: m.clone(),
                competitors: vec!["Globex".into(), "Initech".into()],
                at: Utc::now(),
            };
            (
                ingest.mention_id(&tenant).to_string(),
                MentionCommand::Ingest(ingest),
            )
        })
        .collect();
    let commands = Arc::new(commands);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let framework = framework.clone();
            let commands = commands.clone();
            tokio::spawn(async move {
                for (id, command) in commands.iter().skip(client).step_by(clients) {
                    framework
                        .execute(id, command.clone())
                        .await
                        .map_err(|err| anyhow::anyhow!("postgres-es: {err}"))?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "stock postgres-es: {} events in {elapsed:.2?}",
        mentions.len()
    );
    Ok(Measured {
        what: "stock postgres-es, one command per mention".into(),
        events: mentions.len(),
        elapsed,
    })
}

/// Creates a new database next to `admin_url`'s and returns its URL.
pub(crate) async fn fresh_database(admin_url: &str, prefix: &str) -> Result<String> {
    let name = format!("{prefix}_{}", Utc::now().timestamp_micros());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the benchmark server")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("the database URL has no database name")?;
    Ok(format!("{base}/{name}"))
}
