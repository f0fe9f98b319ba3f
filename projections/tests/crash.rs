//! Kill a process mid-ingest with SIGKILL; afterwards every acknowledged event is there, the
//! log has no holes, and every read model equals a fresh rebuild.
//!
//! The test binary re-executes itself as the child (`PLASMA_CRASH_CHILD` set): the child runs
//! the projections in-process like `plasma dev` does and bulk-ingests until killed, printing a
//! line per acknowledged command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use plasma_adapters::VaderScorer;
use plasma_commands::{CommandContext, CommandHandler, EventStore, MentionInput, StoreConfig};
use plasma_domain::brand::{Brand, BrandCommand, MentionServices, VoiceGuidelines};
use plasma_domain::ids::{BrandId, CommandId};
use plasma_domain::{AggregateId, TenantId};
use plasma_projections::{
    all_projections, catch_up, rebuild, ProjectionRunner, ReadStore, ReadStoreConfig,
    RunnerOptions, StoreSubscription,
};
use sqlx::Row;
use uuid::Uuid;

const CHILD_ENV: &str = "PLASMA_CRASH_CHILD";
const ACKS_BEFORE_KILL: usize = 25;

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

async fn open(backend: &Backend) -> (EventStore, ReadStore) {
    match backend {
        Backend::Sqlite(dir) => {
            let store = EventStore::open(&StoreConfig::Sqlite {
                path: dir.join("events.db"),
            })
            .await
            .unwrap();
            let read = ReadStore::open(&ReadStoreConfig::Sqlite {
                path: dir.join("read.db"),
            })
            .await
            .unwrap();
            (store, read)
        }
        Backend::Postgres(url) => {
            let store = EventStore::open(&StoreConfig::Postgres {
                url: url.clone(),
                max_connections: 8,
            })
            .await
            .unwrap();
            let EventStore::Postgres(pg) = &store else {
                unreachable!()
            };
            let read = ReadStore::open(&ReadStoreConfig::Postgres {
                pool: pg.pool().clone(),
            })
            .await
            .unwrap();
            (store, read)
        }
    }
}

/// The child: projections running in the background, bulk ingest in a loop, one line per ack.
async fn child(backend: Backend) {
    let (store, read) = open(&backend).await;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    for projection in all_projections() {
        let runner = ProjectionRunner::start(
            read.clone(),
            projection,
            StoreSubscription::new(store.clone()),
            RunnerOptions {
                batch_size: 300,
                idle_wait: Duration::from_millis(5),
                ..RunnerOptions::default()
            },
        )
        .await
        .unwrap();
        tokio::spawn(runner.run(shutdown.clone()));
    }
    let tenant = TenantId::parse("crash").unwrap();
    let handler = CommandHandler::new(store);
    let brand = BrandId::from_uuid(Uuid::now_v7());
    handler
        .execute::<Brand>(
            &CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::now_v7()), None),
            brand.as_uuid(),
            BrandCommand::Register {
                name: "Acme".into(),
                keywords: vec!["acme".into()],
                competitors: vec!["Globex".into()],
                voice: VoiceGuidelines::default(),
                at: Utc::now(),
            },
            &(),
        )
        .await
        .unwrap();
    let services = MentionServices {
        scorer: Arc::new(VaderScorer::new()),
    };
    let mut stdout = std::io::stdout();
    for batch in 0u64.. {
        let mentions: Vec<MentionInput> = (0..250)
            .map(|i| MentionInput {
                source: if i % 2 == 0 { "twitter" } else { "news" }.into(),
                external_id: format!("{batch}-{i}"),
                author: format!("@a{i}"),
                text: format!(
                    "Acme {} than Globex, batch {batch} item {i}",
                    if i % 3 == 0 {
                        "is much better"
                    } else {
                        "is worse"
                    }
                ),
                url: None,
                published_at: Utc::now() - chrono::Duration::hours(i64::from(i % 72)),
                language: Some("en".into()),
            })
            .collect();
        let ctx = CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::now_v7()), None);
        let receipt = handler
            .ingest_mentions(&ctx, brand, mentions, Utc::now(), &services)
            .await
            .unwrap();
        writeln!(
            stdout,
            "ACK {} {} {}",
            ctx.command_id,
            receipt.first_position.unwrap_or(0),
            receipt.last_position.unwrap_or(0)
        )
        .unwrap();
        stdout.flush().unwrap();
    }
}

/// Every row of a table as text, in a stable order, for comparing read models.
async fn dump(read: &ReadStore, table: &str) -> Vec<String> {
    match read {
        ReadStore::Sqlite { reader, .. } => {
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
                .fetch_all(reader)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
            let row = columns
                .iter()
                .map(|c| format!("quote({c})"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            sqlx::query_scalar(&format!("SELECT {row} FROM {table} ORDER BY 1"))
                .fetch_all(reader)
                .await
                .unwrap()
        }
        ReadStore::Postgres { pool } => {
            sqlx::query_scalar(&format!("SELECT x::text FROM {table} x ORDER BY 1"))
                .fetch_all(pool)
                .await
                .unwrap()
        }
    }
}

fn spawn_child_and_kill_it(test_name: &str, backend_env: (&str, &str)) -> Vec<(Uuid, i64, i64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env(backend_env.0, backend_env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acks = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        acks.push((
            Uuid::parse_str(parts[0]).unwrap(),
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
        ));
        if acks.len() >= ACKS_BEFORE_KILL {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "child too slow"
        );
    }
    // SIGKILL, while the child is in the middle of its next bulk ingest and projection batches.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have been killed, got {status}"
    );
    assert!(
        acks.len() >= ACKS_BEFORE_KILL,
        "child died before acknowledging enough commands"
    );
    acks
}

async fn verify_after_crash(backend: Backend, acks: Vec<(Uuid, i64, i64)>) {
    let (store, read) = open(&backend).await;

    // Every acknowledged event is there, with the command that wrote it.
    let head = store.head().await.unwrap();
    let all = store.read_all(0, head + 1).await.unwrap();
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "the log has a hole"
    );
    for (command, first, last) in &acks {
        assert!(
            *last <= head,
            "acknowledged position {last} lost (head {head})"
        );
        for event in &all[(*first - 1) as usize..*last as usize] {
            assert_eq!(event.command_id, *command);
        }
    }

    // The child's projections had made progress before the kill (else this proves little).
    let at_kill = read.positions().await.unwrap();
    assert!(
        at_kill.iter().any(|(name, p)| name == "mentions" && *p > 0),
        "projections never ran in the child: {at_kill:?}"
    );
    eprintln!("head {head}, projection positions at kill: {at_kill:?}");

    // Projections resume from their checkpoints and catch up...
    for projection in all_projections() {
        let mut runner = ProjectionRunner::start(
            read.clone(),
            projection,
            StoreSubscription::new(store.clone()),
            RunnerOptions::default(),
        )
        .await
        .unwrap();
        catch_up(&mut runner).await.unwrap();
    }
    // ...and then equal a fresh rebuild from position 0, table by table.
    for projection in all_projections() {
        let before: Vec<Vec<String>> = {
            let mut tables = Vec::new();
            for table in projection.tables() {
                tables.push(dump(&read, table).await);
            }
            tables
        };
        rebuild(
            &read,
            &store,
            projection.clone(),
            RunnerOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
        for (table, before) in projection.tables().iter().zip(before) {
            let after = dump(&read, table).await;
            assert!(!after.is_empty() || projection.name() != "mentions");
            assert_eq!(before, after, "{table} differs from a fresh rebuild");
        }
    }
    let mentions = read.positions().await.unwrap();
    assert!(
        mentions.iter().all(|(_, p)| *p == head),
        "{mentions:?} vs head {head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_after_sigkill_mid_ingest_nothing_acknowledged_is_lost_and_read_models_equal_a_rebuild(
) {
    if let Ok(dir) = std::env::var("PLASMA_CRASH_SQLITE_DIR") {
        if std::env::var_os(CHILD_ENV).is_some() {
            return child(Backend::Sqlite(dir.into())).await;
        }
    }
    let dir = plasma_testkit::temp_dir();
    let path = dir.path().to_string_lossy().into_owned();
    let acks = spawn_child_and_kill_it(
        "sqlite_after_sigkill_mid_ingest_nothing_acknowledged_is_lost_and_read_models_equal_a_rebuild",
        ("PLASMA_CRASH_SQLITE_DIR", &path),
    );
    verify_after_crash(Backend::Sqlite(dir.path().to_owned()), acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_after_sigkill_mid_ingest_nothing_acknowledged_is_lost_and_read_models_equal_a_rebuild(
) {
    if let Ok(url) = std::env::var("PLASMA_CRASH_PG_URL") {
        if std::env::var_os(CHILD_ENV).is_some() {
            return child(Backend::Postgres(url)).await;
        }
    }
    let pg = plasma_testkit::TestPg::start().await;
    let acks = spawn_child_and_kill_it(
        "postgres_after_sigkill_mid_ingest_nothing_acknowledged_is_lost_and_read_models_equal_a_rebuild",
        ("PLASMA_CRASH_PG_URL", pg.url()),
    );
    verify_after_crash(Backend::Postgres(pg.url().to_owned()), acks).await;
}
