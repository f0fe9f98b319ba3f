//! Server mode end to end, against real parts started by the test: PostgreSQL, a Kafka-API
//! broker (tansu), a schema registry (rivven-schema), and the `plasma` binary's relay and
//! projection workers as child processes.
//!
//! HTTP command → PostgreSQL (events + outbox) → relay → broker → workers → read models → HTTP
//! query; with the faults the platform must survive: relays and workers SIGKILLed mid-stream and
//! the broker unresponsive for a while during ingest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use plasma_cli::settings::{ProjectionsMode, SettingsLayer};
use plasma_cli::{Application, Profile, Settings};
use plasma_commands::{EventStore, StoreConfig};
use plasma_domain::TenantId;
use plasma_gateway::{Role, Secret, TokenIssuer};
use plasma_log::{EventCodec, LogConfig, RegistryAdmin};
use plasma_projections::{
    all_projections, catch_up, ProjectionRunner, ReadStore, ReadStoreConfig, RunnerOptions,
    StoreSubscription,
};
use plasma_testkit::{Broker, Registry, TestPg};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

mod agents;
mod drain;
mod graph;
mod traces;

const SECRET: &str = "log-test-secret-log-test-secret-0123456";
const PARTITIONS: &str = "4";

/// A child process killed when dropped, its output kept in a log file.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
        if std::thread::panicking() {
            eprintln!("----- {} -----\n{}", self.name, self.output());
        }
    }
}

/// Everything server mode runs on, each part throwaway.
struct Stack {
    pg: TestPg,
    broker: Broker,
    registry: Registry,
    logs: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Self {
        let pg = TestPg::start().await;
        let broker = Broker::start().expect("starting tansu");
        let registry = Registry::start().expect("starting rivven-schema");
        let stack = Self {
            pg,
            broker,
            registry,
            logs: tempfile::tempdir().unwrap(),
        };
        stack.run_ok(&["topics", "create", "--partitions", PARTITIONS]);
        stack.run_ok(&["schemas", "register"]);
        stack
    }

    fn config(&self) -> LogConfig {
        LogConfig {
            brokers: self.broker.bootstrap(),
            registry_url: self.registry.url(),
            topic_prefix: "plasma".into(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plasma"));
        command
            .args(args)
            .env("PLASMA_DATABASE_URL", self.pg.url())
            .env("PLASMA_DATABASE_MAX_CONNECTIONS", "4")
            .env("PLASMA_KAFKA_BROKERS", self.broker.bootstrap())
            .env("PLASMA_SCHEMA_REGISTRY_URL", self.registry.url())
            .env("PLASMA_LOG", "info,sqlx=warn,rdkafka=warn")
            // The gateway's: `plasma alerts` derives the webhook key the gateway shows from it.
            .env("PLASMA_JWT_SECRET", SECRET)
            // The tests' webhook receivers listen on loopback.
            .env("PLASMA_WEBHOOK_ALLOW_PRIVATE", "true")
            .env_remove("PLASMA_CONFIG")
            .stdin(Stdio::null());
        command
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "plasma {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn_with(name, args, &[])
    }

    /// [`Stack::spawn`] with more environment variables.
    fn spawn_with(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = self.logs.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = self.command(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// An admin token of tenant `acme`, signed with the stack's secret.
    fn admin_token(&self) -> String {
        TokenIssuer::new(&plasma_cli::settings::JwtKey::Hs256(Secret::new(SECRET)))
            .unwrap()
            .issue(
                "log-test",
                &TenantId::parse("acme").unwrap(),
                &[Role::Admin],
                Duration::from_secs(3600),
                Utc::now(),
            )
            .unwrap()
    }

    async fn pool(&self) -> PgPool {
        PgPool::connect(self.pg.url()).await.unwrap()
    }

    /// The gateway in this process, reading what the external workers write.
    async fn gateway(&self) -> Gateway {
        let mut layer = SettingsLayer::default();
        layer.http.listen = Some("127.0.0.1:0".parse().unwrap());
        layer.auth.jwt_secret = Some(Secret::new(SECRET));
        layer.rate_limit.per_second = Some(0);
        layer.store.database_url = Some(Secret::new(self.pg.url()));
        layer.store.max_connections = Some(8);
        layer.projections.mode = Some(ProjectionsMode::External);
        layer.consistency.min_position_wait = Some(Duration::from_secs(20));
        layer.agent.provider = Some("template".into());
        let settings = Settings::from_layer(layer, Profile::Serve).unwrap();
        let token = self.admin_token();
        let app = Application::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}/v1", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        Gateway {
            base,
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }
}

#[derive(Clone)]
struct Gateway {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Gateway {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

async fn wait_for_log(proc: &Proc, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proc.output().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{} never logged {needle:?}:\n{}",
            proc.name,
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until every read model's position reached the store's head.
async fn wait_until_projected(pool: &PgPool, timeout: Duration) {
    let target = head(pool).await;
    let deadline = Instant::now() + timeout;
    loop {
        let positions: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, position FROM projection_checkpoints ORDER BY name")
                .fetch_all(pool)
                .await
                .unwrap();
        // Read models only: processes (the embedding worker) keep checkpoints here too.
        let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
        let positions: Vec<(String, i64)> = positions
            .into_iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .collect();
        let behind: Vec<_> = positions.iter().filter(|(_, p)| *p < target).collect();
        if positions.len() == all_projections().len() && behind.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let offsets: Vec<(String, String, i32, i64, i64, i64)> = sqlx::query_as(
                "SELECT projection, topic, partition_id, next_offset, max_position, safe_position \
                 FROM projection_offsets ORDER BY 1, 2, 3",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let relay: Vec<(String, i32, i64)> = sqlx::query_as(
                "SELECT topic, partition_id, last_offset FROM relay_partitions ORDER BY 1, 2",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            panic!(
                "read models did not reach position {target}: {positions:?}\noffsets: {offsets:#?}\nrelay: {relay:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dump(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT x::text FROM {table} x ORDER BY 1"))
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Every read model equals one rebuilt from the event store into a fresh database.
async fn assert_read_models_equal_a_rebuild(stack: &Stack) {
    let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
    assert_these_read_models_equal_a_rebuild(stack, &names).await;
}

/// The read models named equal ones rebuilt from the event store into a fresh database.
async fn assert_these_read_models_equal_a_rebuild(stack: &Stack, names: &[&str]) {
    let live = stack.pool().await;
    let store = EventStore::open(&StoreConfig::Postgres {
        url: stack.pg.url().to_owned(),
        max_connections: 4,
    })
    .await
    .unwrap();
    let fresh = TestPg::start().await;
    let fresh_pool = PgPool::connect(fresh.url()).await.unwrap();
    let read = ReadStore::open(&ReadStoreConfig::Postgres {
        pool: fresh_pool.clone(),
    })
    .await
    .unwrap();
    for projection in all_projections()
        .into_iter()
        .filter(|p| names.contains(&p.name()))
    {
        let mut runner = ProjectionRunner::start(
            read.clone(),
            projection.clone(),
            StoreSubscription::new(store.clone()),
            RunnerOptions::default(),
        )
        .await
        .unwrap();
        catch_up(&mut runner).await.unwrap();
        for table in projection.tables() {
            let expected = dump(&fresh_pool, table).await;
            let actual = dump(&live, table).await;
            assert_eq!(
                actual.len(),
                expected.len(),
                "{table}: {} rows from the log, {} from a rebuild",
                actual.len(),
                expected.len()
            );
            assert!(actual == expected, "{table} differs from a rebuild");
        }
    }
}

/// Reads every topic from the beginning to its end through the registry and checks that every
/// event of the store was seen at least once, each aggregate's events in order. Returns how
/// many records were redeliveries (a relay killed mid-batch republishes; a drained one never).
async fn assert_topics_hold_every_event_in_order(stack: &Stack) -> u64 {
    let config = stack.config();
    let codec = EventCodec::new(&config.registry_url, &config.topic_prefix).unwrap();
    let consumer: StreamConsumer = config.consumer(None).create().unwrap();
    let consumer = Arc::new(consumer);
    let partitions = plasma_log::admin::partitions_of(consumer.clone(), &config.topics())
        .await
        .unwrap();
    let ends: HashMap<(String, i32), i64> =
        plasma_log::admin::partition_ends(consumer.clone(), &partitions)
            .await
            .unwrap()
            .into_iter()
            .map(|(key, (_, high))| (key, high))
            .collect();
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in &partitions {
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let total: i64 = ends.values().sum();
    let mut seen_positions = HashSet::new();
    // Per aggregate: the sequences in the order they arrived (duplicates included).
    let mut arrivals: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    let mut duplicates = 0;
    let mut records = 0;
    let mut headerless = 0;
    let mut remaining: HashSet<(String, i32)> = ends
        .iter()
        .filter(|(_, high)| **high > 0)
        .map(|(k, _)| k.clone())
        .collect();
    // Offsets may have gaps (the broker skips some after a restart): read each partition up to
    // its end rather than counting records.
    while !remaining.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("partitions {remaining:?} stopped short of their ends"))
            .unwrap();
        let partition = (message.topic().to_owned(), message.partition());
        if message.offset() + 1 >= ends[&partition] {
            remaining.remove(&partition);
        }
        records += 1;
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let event = codec.decode(message.payload().unwrap()).await.unwrap();
        assert_eq!(
            key,
            Some(event.aggregate_id.to_string()),
            "key = aggregate id"
        );
        let headers = message.headers().map(|h| {
            use rdkafka::message::Headers;
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect::<HashMap<_, _>>()
        });
        let Some(headers) = headers else {
            eprintln!(
                "NO HEADERS: {}/{} offset {} position {} {}",
                message.topic(),
                message.partition(),
                message.offset(),
                event.position,
                event.event_type
            );
            headerless += 1;
            continue;
        };
        assert_eq!(headers["event_id"], Some(event.event_id.to_string()));
        assert_eq!(headers["event_type"], Some(event.event_type.clone()));
        assert_eq!(headers["tenant_id"], Some(event.tenant.to_string()));
        assert_eq!(
            headers["correlation_id"],
            Some(event.correlation_id.to_string())
        );
        // No tracing pipeline in this test: no span context to name.
        assert!(!headers.contains_key("traceparent"));
        if !seen_positions.insert(event.position) {
            duplicates += 1;
        }
        arrivals
            .entry(event.aggregate_id)
            .or_default()
            .push(event.sequence);
    }
    let pool = stack.pool().await;
    let head = head(&pool).await;
    let missing: Vec<i64> = (1..=head).filter(|p| !seen_positions.contains(p)).collect();
    assert!(missing.is_empty(), "positions never published: {missing:?}");
    for (aggregate, sequences) in &arrivals {
        // First arrivals are 1, 2, 3, … in order; a redelivery only repeats an earlier one.
        let mut next = 1;
        for s in sequences {
            assert!(
                *s <= next,
                "aggregate {aggregate}: sequence {s} before {next}: {sequences:?}"
            );
            if *s == next {
                next += 1;
            }
        }
    }
    assert_eq!(headerless, 0, "records without headers");
    eprintln!(
        "topics: {records} records (offset span {total}), {head} events, {duplicates} redelivered"
    );
    duplicates
}

fn mentions_body(batch: usize, size: usize) -> Value {
    let texts = [
        "I love the new Acme rocket skates, amazing!",
        "Acme support was terrible and slow, Globex is better",
        "Acme released a statement today",
        "Worst purchase ever, Acme broke after a day",
        "Initech and Acme both launch products",
    ];
    let mentions: Vec<Value> = (0..size)
        .map(|i| {
            json!({
                "source": if i % 2 == 0 { "twitter" } else { "news" },
                "external_id": format!("b{batch}-{i}"),
                "author": format!("@user{i}"),
                "text": texts[(batch + i) % texts.len()],
                "published_at": format!("2026-11-{:02}T10:00:00Z", 1 + (batch + i) % 28),
            })
        })
        .collect();
    json!({ "mentions": mentions })
}

/// Commands on every aggregate type, so every read model and topic has traffic.
async fn other_commands(gateway: &Gateway, brand: &str, round: usize) {
    let draft = gateway
        .post(
            "/drafts",
            json!({"brand_id": brand, "brief": format!("Launch post {round}"), "channel": "blog"}),
        )
        .await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    gateway
        .post(
            &format!("/drafts/{draft}/generated"),
            json!({"text": format!("Acme rocket skates, round {round}."), "generator": {"name": "test", "version": "1"}}),
        )
        .await;
    let run = gateway
        .post(
            "/agent-runs",
            json!({"workflow": "research", "input": {"round": round}}),
        )
        .await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    gateway
        .post(
            &format!("/agent-runs/{run}/steps/0/start"),
            json!({"name": "search"}),
        )
        .await;
    gateway
        .post(
            "/documents",
            json!({"title": format!("Report {round}"), "source": "test", "text": "Acme makes rocket skates. Globex competes with Acme in Europe."}),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_reach_every_read_model_through_the_log_despite_crashes_and_a_broker_outage() {
    let mut stack = Stack::start().await;
    let gateway = stack.gateway().await;
    let pool = stack.pool().await;

    let mut relay_a = stack.spawn("relay-a", &["relay", "--batch", "500"]);
    wait_for_log(&relay_a, "relay is the leader").await;
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let _relay_b = stack.spawn(
        "relay-b",
        &[
            "relay",
            "--batch",
            "500",
            "--metrics-listen",
            &metrics_listen,
        ],
    );
    let worker_metrics_listen = format!("127.0.0.1:{}", free_port());
    let mut workers: Vec<Proc> = Vec::new();
    for model in all_projections().iter().map(|p| p.name()) {
        let mut args = vec!["project", "--read-model", model, "--batch", "500"];
        if model == "brands" {
            args.extend(["--metrics-listen", worker_metrics_listen.as_str()]);
        }
        workers.push(stack.spawn(&format!("project-{model}"), &args));
    }
    let mut mentions_b = stack.spawn(
        "project-mentions-b",
        &["project", "--read-model", "mentions", "--batch", "500"],
    );
    // The research pipeline's worker, fed by the research topic like the read models.
    let _embed = stack.spawn("embed", &["embed", "--model", "wordllama-l2-supercat-256"]);

    let brand = gateway
        .post(
            "/brands",
            json!({"name": "Acme", "keywords": ["acme", "rocket skates"], "competitors": ["Globex", "Initech"]}),
        )
        .await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A document, chunked as it is ingested, for the embedding worker.
    let document = gateway
        .post(
            "/documents",
            json!({"title": "Delta report", "source": "https://example.org/delta", "text": "The river delta gained sediment while the harbour authority dredged the channel. ".repeat(40)}),
        )
        .await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The whole flow once before any fault: visible in a query through min_position.
    let first = gateway
        .post(&format!("/brands/{brand}/mentions"), mentions_body(0, 50))
        .await;
    let position = first["last_position"].as_i64().unwrap();
    let page = gateway
        .get(&format!(
            "/brands/{brand}/mentions?limit=100&min_position={position}"
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50);

    // Ingest in the background while the faults happen.
    let ingest = {
        let gateway = gateway.clone();
        let brand = brand.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for batch in 1..=40 {
                let body = gateway
                    .post(
                        &format!("/brands/{brand}/mentions"),
                        mentions_body(batch, 250),
                    )
                    .await;
                acked.push((Instant::now(), body["last_position"].as_i64()));
                other_commands(&gateway, &brand, batch).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            acked
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay_a.sigkill(); // the leader, mid-stream: the standby takes over
    tokio::time::sleep(Duration::from_millis(1000)).await;
    mentions_b.sigkill(); // one of two workers of a read model: its partitions move
    let brand_stats = all_projections()
        .iter()
        .position(|p| p.name() == "brand_stats")
        .unwrap();
    workers[brand_stats].sigkill(); // the only brand_stats worker…
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _brand_stats_again = stack.spawn(
        "project-brand_stats-2",
        &["project", "--read-model", "brand_stats", "--batch", "500"],
    ); // …restarted
    stack.broker.freeze().unwrap();
    let outage_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let outage_ended = Instant::now();
    stack.broker.resume().unwrap();
    let _relay_a_again = stack.spawn("relay-a-2", &["relay", "--batch", "500"]);

    let acked = ingest.await.unwrap();
    let during_outage = acked
        .iter()
        .filter(|(at, _)| *at > outage_started && *at < outage_ended)
        .count();
    assert!(
        during_outage > 0,
        "commands kept succeeding while the broker was down"
    );

    wait_until_projected(&pool, Duration::from_secs(120)).await;
    // relay-b took over when relay-a was killed: its metrics tell what it published.
    let metrics = reqwest::get(format!("http://{metrics_listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "plasma_relay_leader 1",
        "plasma_relay_outbox_depth",
        "plasma_relay_published_events_total",
        "plasma_relay_publish_seconds",
        "plasma_relay_commit_to_ack_seconds",
    ] {
        assert!(
            metrics.contains(series),
            "`{series}` missing from:\n{metrics}"
        );
    }
    // `plasma embed` recorded the document's vectors, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let embedded: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE aggregate_id = $1::uuid \
             AND event_type = 'DocumentChunksEmbedded'",
        )
        .bind(&document)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            embedded <= 1,
            "the document's vectors were recorded {embedded} times"
        );
        if embedded == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plasma embed never recorded the vectors"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each `plasma project` process reports its own read model's position and lag.
    let metrics = reqwest::get(format!("http://{worker_metrics_listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "plasma_projection_position{projection=\"brands\"}",
        "plasma_projection_lag_events{projection=\"brands\"}",
        "plasma_worker_applied_events_total{projection=\"brands\"}",
    ] {
        assert!(
            metrics.contains(series),
            "`{series}` missing from:\n{metrics}"
        );
    }
    assert_topics_hold_every_event_in_order(&stack).await;
    assert_read_models_equal_a_rebuild(&stack).await;

    // A replay from the topics, then one from the store, each swapped in while queries are
    // served; the live workers carry on from the handed-over offsets.
    let queries = {
        let gateway = gateway.clone();
        let brand = brand.clone();
        tokio::spawn(async move {
            let mut answered = 0;
            let stop = Instant::now() + Duration::from_secs(4);
            while Instant::now() < stop {
                let (status, _) = gateway
                    .send(
                        reqwest::Method::GET,
                        &format!("/brands/{brand}/mentions?limit=10"),
                        None,
                    )
                    .await;
                assert_eq!(status, 200);
                answered += 1;
            }
            answered
        })
    };
    stack.run_ok(&["replay", "--read-model", "mentions"]);
    stack.run_ok(&["replay", "--read-model", "brand_stats", "--source", "store"]);
    assert!(queries.await.unwrap() > 0);
    let after = gateway
        .post(&format!("/brands/{brand}/mentions"), mentions_body(99, 30))
        .await;
    let position = after["last_position"].as_i64().unwrap();
    gateway
        .get(&format!(
            "/brands/{brand}/stats?from=2026-11-01&to=2026-11-30&min_position={position}"
        ))
        .await;
    wait_until_projected(&pool, Duration::from_secs(60)).await;
    assert_read_models_equal_a_rebuild(&stack).await;

    // The reference consumer prints one aggregate's events, decoded.
    let out = stack.run_ok(&[
        "tail",
        "--topic",
        "brand",
        "--from-beginning",
        "--exit-at-end",
        "--aggregate",
        &brand,
    ]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["aggregate_id"] == brand.as_str()));
    assert_eq!(lines[0]["event_type"], "BrandRegistered");
    assert_eq!(lines[0]["data"]["name"], "Acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_register_once_per_subject_with_backward_transitive_compatibility() {
    let registry = Registry::start().unwrap();
    let admin = RegistryAdmin::new(&registry.url()).unwrap();
    let first = admin.register_all("plasma").await.unwrap();
    assert_eq!(first.len(), 44);
    let ids: HashSet<u32> = first.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 44, "one schema id per event type");
    // Registering again (every deploy does) changes nothing: same subjects, same ids.
    let again = admin.register_all("plasma").await.unwrap();
    assert_eq!(first, again);
    let mut subjects = admin.subjects().await.unwrap();
    subjects.sort();
    let mut expected: Vec<String> = first.iter().map(|r| r.subject.clone()).collect();
    expected.sort();
    assert_eq!(subjects, expected);
    assert!(subjects.contains(&"plasma.brand.events-io.plasma.brand.MentionIngested".to_owned()));
    for subject in &subjects {
        assert_eq!(
            admin.compatibility(subject).await.unwrap(),
            "BACKWARD_TRANSITIVE"
        );
    }
    // What the registry serves decodes what the relay writes: encode with one codec, decode
    // with another that only knows the registry's URL.
    let codec = EventCodec::new(&registry.url(), "plasma").unwrap();
    let catalog = plasma_log::Catalog::get().unwrap();
    let event = plasma_commands::RecordedEvent {
        position: 7,
        event_id: Uuid::now_v7(),
        tenant: "acme".parse().unwrap(),
        aggregate_type: "Mention".into(),
        aggregate_id: Uuid::new_v4(),
        sequence: 2,
        event_type: "MentionFlagged".into(),
        event_version: 1,
        payload: json!({"MentionFlagged": {"reason": "spam", "at": "2026-11-20T10:00:00Z"}})
            .to_string(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        command_id: Uuid::new_v4(),
        recorded_at: Utc::now(),
        trace_parent: None,
    };
    let record = codec.encode(&event).await.unwrap();
    assert_eq!(record.topic, "plasma.brand.events");
    assert_eq!(record.key, event.aggregate_id.to_string());
    assert_eq!(record.value[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(record.value[1..5].try_into().unwrap());
    let subject = catalog.schema("MentionFlagged").unwrap().subject("plasma");
    assert_eq!(
        Some(id),
        first.iter().find(|r| r.subject == subject).map(|r| r.id)
    );
    let other = EventCodec::new(&registry.url(), "plasma").unwrap();
    let decoded = other.decode(&record.value).await.unwrap();
    assert_eq!(decoded.event_id, event.event_id);
    assert_eq!(
        decoded
            .decode::<plasma_domain::brand::MentionEvent>()
            .unwrap(),
        event.decode().unwrap()
    );
}

/// A free loopback port, for a process to listen on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Server mode: `plasma alerts` follows the brand topic, raises the injected spike's alert and
/// delivers its webhook, signed with the secret the gateway shows; the alerts read model comes
/// from its own `plasma project` worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_injected_spike_is_alerted_and_delivered_by_the_server_mode_workers() {
    let stack = Stack::start().await;
    let gateway = stack.gateway().await;
    let hits: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let seen = hits.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let signature = headers
                    .get("plasma-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push((signature, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let _relay = stack.spawn("relay", &["relay", "--batch", "500"]);
    let _alerts_model = stack.spawn("project-alerts", &["project", "--read-model", "alerts"]);
    let _alerts = stack.spawn("alerts", &["alerts"]);

    let brand = gateway
        .post(
            "/brands",
            json!({"name": "Acme", "keywords": ["acme"], "competitors": []}),
        )
        .await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = gateway
        .send(
            reqwest::Method::PUT,
            &format!("/brands/{brand}/alert-rules"),
            Some(json!({"channels": [{"id": "ops", "url": hook_url}]})),
        )
        .await;
    assert_eq!(status, 200);
    // Eight quiet days (8-12 mentions an hour), a spike of 80 in hour 180, then quiet again.
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let mut mentions = Vec::new();
    for hour in 0..190i64 {
        let volume = if hour == 180 { 80 } else { 8 + hour % 5 };
        for i in 0..volume {
            let at = start
                + chrono::Duration::hours(hour)
                + chrono::Duration::seconds(i * 3599 / volume);
            mentions.push(json!({
                "source": "news",
                "external_id": format!("{hour}-{i}"),
                "text": "Acme shipped a new rocket model today",
                "published_at": at.to_rfc3339(),
            }));
        }
    }
    let mut last = 0;
    for chunk in mentions.chunks(1000) {
        last = gateway
            .post(
                &format!("/brands/{brand}/mentions"),
                json!({ "mentions": chunk }),
            )
            .await["last_position"]
            .as_i64()
            .unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let alert = loop {
        // Once the alerts read model has seen the mentions (its worker created its tables).
        let page = gateway
            .get(&format!("/alerts?brand_id={brand}&min_position={last}"))
            .await;
        if let Some(alert) = page["items"].as_array().unwrap().first() {
            break alert.clone();
        }
        assert!(Instant::now() < deadline, "no alert in server mode");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert["kind"], "volume_spike");
    let all = gateway.get(&format!("/alerts?brand_id={brand}")).await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        1,
        "exactly the injected spike: {all}"
    );
    assert_eq!(
        alert["window_start"],
        (start + chrono::Duration::hours(180)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    let (signature, body) = loop {
        if let Some(hit) = hits.lock().unwrap().first().cloned() {
            break hit;
        }
        assert!(Instant::now() < deadline, "no webhook in server mode");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rules = gateway.get(&format!("/brands/{brand}/alert-rules")).await;
    let secret = rules["signing_secrets"]["ops"].as_str().unwrap();
    let (t, v1) = signature
        .split_once(",v1=")
        .map(|(t, v)| (t.trim_start_matches("t="), v))
        .unwrap();
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(
        hex::encode(mac.finalize().into_bytes()),
        v1,
        "signed with the gateway's secret"
    );
}
