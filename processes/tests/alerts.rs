//! The alert detector and the delivery worker, on both stores, with a real webhook receiver:
//! killed with SIGKILL while raising and delivering and started again, they lose no alert, raise
//! none twice, and never send a notification of an old alert under a new delivery id; a replay
//! of the whole log by a detector that forgot everything raises nothing new.
//!
//! The SIGKILL test re-executes this test binary as the child (`PLASMA_ALERTS_CHILD` set), which
//! runs both workers until killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use plasma_adapters::webhook::{HttpWebhookSender, WebhookKey};
use plasma_adapters::VaderScorer;
use plasma_commands::{CommandContext, CommandHandler, EventStore, MentionInput};
use plasma_domain::brand::{
    AlertEvent, AlertRules, Brand, BrandCommand, DeliveryEvent, MentionServices, WebhookChannel,
};
use plasma_domain::ids::{BrandId, CommandId};
use plasma_domain::{AggregateId, TenantId};
use plasma_processes::alerts::AlertDetector;
use plasma_processes::delivery::{DeliveryOptions, DeliveryWorker};
use plasma_processes::{Process, ProcessOptions, ProcessRunner};
use plasma_projections::{
    AlertsProjection, Projection, ProjectionRunner, ReadModels, ReadStore, RunnerOptions,
    StoreSubscription,
};
use tokio::sync::watch;
use uuid::Uuid;

use common::{fixture, open, Fixture, Location};

const CHILD_ENV: &str = "PLASMA_ALERTS_CHILD";
const HOOK_ENV: &str = "PLASMA_ALERTS_HOOK";
const DAYS: i64 = 20;
/// A spike of 60 mentions every 30 hours from the third day: 13 of them.
fn spike_hours() -> Vec<i64> {
    (0..)
        .map(|j| 48 + 30 * j)
        .take_while(|h| *h < DAYS * 24 - 2)
        .collect()
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn context() -> CommandContext {
    CommandContext::new(tenant(), CommandId::from_uuid(Uuid::now_v7()), None)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap()
}

/// A brand notifying `hook`, and twenty days of mentions with the spikes, in publication order.
async fn seed(store: &EventStore, hook: &str) -> BrandId {
    let handler = CommandHandler::new(store.clone());
    let brand = BrandId::from_uuid(Uuid::now_v7());
    let at = start();
    for command in [
        BrandCommand::Register {
            name: "Acme".into(),
            keywords: vec!["acme".into()],
            competitors: vec![],
            voice: Default::default(),
            at,
        },
        BrandCommand::SetAlertRules {
            rules: AlertRules {
                channels: vec![WebhookChannel {
                    id: "ops".into(),
                    url: hook.into(),
                    format: Default::default(),
                }],
                ..AlertRules::default()
            },
            at,
        },
    ] {
        handler
            .execute::<Brand>(&context(), brand.as_uuid(), command, &())
            .await
            .unwrap();
    }
    let spikes: BTreeSet<i64> = spike_hours().into_iter().collect();
    let mut mentions = Vec::new();
    for hour in 0..DAYS * 24 {
        let volume = if spikes.contains(&hour) {
            60
        } else {
            8 + hour % 5
        };
        for i in 0..volume {
            let text = if i % 10 == 0 {
                "Acme is terrible, awful service"
            } else {
                "Acme shipped a new rocket model today"
            };
            mentions.push(MentionInput {
                source: "news".into(),
                external_id: format!("{hour}-{i}"),
                author: format!("@a{}", i % 5),
                text: text.into(),
                url: None,
                published_at: start()
                    + chrono::Duration::hours(hour)
                    + chrono::Duration::seconds(i * 3599 / volume),
                language: None,
            });
        }
    }
    let services = MentionServices {
        scorer: Arc::new(VaderScorer::new()),
    };
    for chunk in mentions.chunks(1000) {
        handler
            .ingest_mentions(&context(), brand, chunk.to_vec(), at, &services)
            .await
            .unwrap();
    }
    brand
}

/// Per alert: its window start and how many times it was raised; per delivery: its alert and
/// how many times it was scheduled; the deliveries delivered.
#[derive(Debug, Default)]
struct Recorded {
    raised: BTreeMap<Uuid, (DateTime<Utc>, usize)>,
    resolved: BTreeSet<Uuid>,
    scheduled: BTreeMap<Uuid, usize>,
    delivered: BTreeSet<Uuid>,
}

async fn recorded(store: &EventStore) -> Recorded {
    let mut out = Recorded::default();
    let mut after = 0;
    record_new(store, &mut after, &mut out).await;
    out
}

/// Adds what was recorded after position `after` to `out`, and moves `after` on.
async fn record_new(store: &EventStore, after: &mut i64, out: &mut Recorded) {
    let events = store.read_all(*after, 100_000).await.unwrap();
    if let Some(last) = events.last() {
        *after = last.position;
    }
    for event in events {
        match event.aggregate_type.as_str() {
            "Alert" => match event.decode::<AlertEvent>().unwrap() {
                AlertEvent::AlertRaised(raised) => {
                    out.raised
                        .entry(event.aggregate_id)
                        .or_insert((raised.evidence.window_start, 0))
                        .1 += 1;
                }
                AlertEvent::AlertResolved { .. } => {
                    out.resolved.insert(event.aggregate_id);
                }
                _ => {}
            },
            "Delivery" => match event.decode::<DeliveryEvent>().unwrap() {
                DeliveryEvent::DeliveryScheduled(_) => {
                    *out.scheduled.entry(event.aggregate_id).or_default() += 1;
                }
                DeliveryEvent::DeliveryAttempted(attempt) if attempt.succeeded() => {
                    out.delivered.insert(event.aggregate_id);
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// A receiver that takes 250 ms per request, so deliveries are in flight when the child dies.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let id = headers
                    .get("plasma-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(id);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn delivery_worker(store: &EventStore) -> Arc<DeliveryWorker> {
    // The receiver is on loopback: private targets allowed.
    let sender = HttpWebhookSender::new(
        WebhookKey::new(b"test-key".to_vec()),
        Duration::from_secs(5),
        true,
    )
    .unwrap();
    Arc::new(DeliveryWorker::new(
        CommandHandler::new(store.clone()),
        Arc::new(sender),
        DeliveryOptions {
            base_backoff: Duration::from_millis(50),
            rescan: Duration::from_millis(100),
            ..DeliveryOptions::default()
        },
    ))
}

async fn process_runner(
    store: &EventStore,
    read: &ReadStore,
    process: Arc<dyn Process>,
    batch_size: usize,
) -> ProcessRunner<StoreSubscription> {
    ProcessRunner::start(
        read.clone(),
        process,
        StoreSubscription::new(store.clone()),
        ProcessOptions {
            batch_size,
            ..ProcessOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Runs the detector, the delivery worker with its dispatcher and the alerts read model (the
/// dispatcher's rescan reads it) until `stop`.
async fn run_all(
    store: EventStore,
    read: ReadStore,
    batch_size: usize,
    stop: watch::Receiver<bool>,
) {
    let detector = process_runner(
        &store,
        &read,
        Arc::new(AlertDetector::new(CommandHandler::new(store.clone()))),
        batch_size,
    )
    .await;
    let worker = delivery_worker(&store);
    let deliveries = process_runner(&store, &read, worker.clone(), batch_size).await;
    let projection: Arc<dyn Projection> = Arc::new(AlertsProjection);
    let alerts = ProjectionRunner::start(
        read.clone(),
        projection,
        StoreSubscription::new(store.clone()),
        RunnerOptions::default(),
    )
    .await
    .unwrap();
    let dispatcher = worker.dispatch(ReadModels::new(read.clone()), stop.clone());
    let _ = tokio::join!(
        detector.run(stop.clone()),
        deliveries.run(stop.clone()),
        alerts.run(stop.clone()),
        dispatcher
    );
}

plasma_testkit::on_both_backends!(
    fixture;
    workers_killed_while_raising_and_delivering_lose_nothing_and_double_nothing,
);

async fn workers_killed_while_raising_and_delivering_lose_nothing_and_double_nothing(
    fixture: Fixture,
) {
    let (store, read) = open(&fixture.location).await;
    let (hook, hits) = receiver().await;
    seed(&store, &hook).await;
    let expected: BTreeSet<DateTime<Utc>> = spike_hours()
        .into_iter()
        .map(|h| start() + chrono::Duration::hours(h))
        .collect();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_runs_the_alert_workers_until_killed",
            "--nocapture",
        ])
        .env(CHILD_ENV, fixture.location.to_env())
        .env(HOOK_ENV, &hook)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut after, mut now) = (0, Recorded::default());
    loop {
        record_new(&store, &mut after, &mut now).await;
        if now.raised.len() >= 3 && !now.delivered.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the child got nowhere: {now:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = recorded(&store).await;
    assert!(
        at_kill.delivered.len() < 2 * expected.len(),
        "the kill came after everything was delivered"
    );

    // Started again in this process, until every notification is delivered.
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(run_all(store.clone(), read.clone(), 500, stop));
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let now = recorded(&store).await;
        if now.delivered.len() >= 2 * expected.len() {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after the restart: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop_tx.send(true).unwrap();
    running.await.unwrap();

    let windows: BTreeSet<DateTime<Utc>> = done.raised.values().map(|(w, _)| *w).collect();
    assert_eq!(windows, expected, "one alert per injected spike, none lost");
    assert!(
        done.raised.values().all(|(_, n)| *n == 1),
        "no alert raised twice"
    );
    assert_eq!(
        done.resolved.len(),
        expected.len(),
        "each resolved once back to baseline"
    );
    assert_eq!(
        done.scheduled.len(),
        2 * expected.len(),
        "raised and resolved, one channel"
    );
    assert!(
        done.scheduled.values().all(|n| *n == 1),
        "no delivery scheduled twice"
    );
    let sent: BTreeSet<Uuid> = hits
        .lock()
        .unwrap()
        .iter()
        .map(|id| Uuid::parse_str(id).unwrap())
        .collect();
    let scheduled: BTreeSet<Uuid> = done.scheduled.keys().copied().collect();
    assert_eq!(
        sent, scheduled,
        "every notification arrived, none under a new id"
    );

    // A detector that forgot everything replays the whole log: nothing new is recorded.
    let head = store.head().await.unwrap();
    read_reset(&read).await;
    let mut replay = process_runner(
        &store,
        &read,
        Arc::new(AlertDetector::new(CommandHandler::new(store.clone()))),
        500,
    )
    .await;
    replay.catch_up().await.unwrap();
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "a replay raises nothing new"
    );
}

/// Drops the detector's state and checkpoint, as a fresh deployment would start.
async fn read_reset(read: &ReadStore) {
    let mut tx = read.begin().await.unwrap();
    for table in [
        "px_alert_brands",
        "px_alert_series",
        "px_alert_mentions",
        "px_alert_windows",
        "px_alert_snoozes",
    ] {
        tx.execute(&format!("DELETE FROM {table}"), "resetting")
            .await
            .unwrap();
    }
    tx.execute(
        "DELETE FROM projection_checkpoints WHERE name = 'alert_detector'",
        "resetting",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Not a test of its own: the child process of the SIGKILL test (does nothing unless
/// `PLASMA_ALERTS_CHILD` is set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_runs_the_alert_workers_until_killed() {
    let Ok(raw) = std::env::var(CHILD_ENV) else {
        return;
    };
    let location = Location::from_env(&raw);
    let (store, read) = open(&location).await;
    let (_stop_tx, stop) = watch::channel(false);
    // Small batches: many checkpoints to die between.
    run_all(store, read, 40, stop).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
}
