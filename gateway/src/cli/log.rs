//! The server-mode log processes: `relay`, `project`, `replay`, `tail`, `schemas`, `topics`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use plasma_commands::log::{
    relay, Catalog, Context, EventCodec, LogConfig, RegistryAdmin, Relay, RelayOptions,
};
use plasma_commands::{EventStore, StoreConfig};
use plasma_gateway::settings::{LogLayer, SettingsLayer, StoreLayer, StoreSettings};
use plasma_gateway::{Profile, Secret, Settings};
use plasma_projections::{
    projection_named, rebuild, replay_from_log, LogWorker, ReadStore, ReadStoreConfig,
    RunnerOptions, WorkerOptions,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::ConfigArgs;

/// Where the log, the registry and the database are; every log command takes these.
#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// PostgreSQL URL. Prefer PLASMA_DATABASE_URL: flags show up in `ps`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Bootstrap brokers, host:port[,host:port] (PLASMA_KAFKA_BROKERS).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Schema registry URL (PLASMA_SCHEMA_REGISTRY_URL).
    #[arg(long)]
    pub registry_url: Option<String>,
    /// Topic prefix: topics are PREFIX.CONTEXT.events [default: plasma] (PLASMA_TOPIC_PREFIX).
    #[arg(long)]
    pub topic_prefix: Option<String>,
}

impl LogArgs {
    fn settings(&self) -> Result<Settings> {
        let flags = SettingsLayer {
            store: StoreLayer {
                database_url: self.database_url.clone().map(Secret::new),
                ..StoreLayer::default()
            },
            log: LogLayer {
                brokers: self.brokers.clone(),
                registry_url: self.registry_url.clone(),
                topic_prefix: self.topic_prefix.clone(),
            },
            ..SettingsLayer::default()
        };
        Ok(Settings::load(
            Profile::LogTool,
            self.config.config.as_deref(),
            |name| std::env::var(name).ok(),
            flags,
        )?)
    }
}

fn log_config(settings: &Settings) -> Result<LogConfig> {
    settings.log.clone().ok_or_else(|| {
        anyhow!("no log configured: set PLASMA_KAFKA_BROKERS and PLASMA_SCHEMA_REGISTRY_URL (or --brokers and --registry-url)")
    })
}

async fn open_store(settings: &Settings) -> Result<(EventStore, ReadStore)> {
    let StoreSettings::Server {
        database_url,
        max_connections,
    } = &settings.store
    else {
        bail!(
            "this command needs the PostgreSQL store: set PLASMA_DATABASE_URL (or --database-url)"
        );
    };
    let store = EventStore::open(&StoreConfig::Postgres {
        url: database_url.expose().to_owned(),
        max_connections: *max_connections,
    })
    .await
    .context("opening the event store")?;
    let EventStore::Postgres(pg) = &store else {
        bail!("a PostgreSQL URL opened another kind of store");
    };
    let read = ReadStore::open(&ReadStoreConfig::Postgres {
        pool: pg.pool().clone(),
    })
    .await
    .context("opening the read store")?;
    Ok((store, read))
}

/// Serves `GET /metrics` and `GET /health` for a headless process.
async fn serve_metrics(listen: SocketAddr) -> Result<()> {
    use axum::routing::get;
    let handle = plasma_gateway::metrics::recorder();
    let app = axum::Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/health", get(|| std::future::ready("ok")));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener on {listen}"))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener failed");
        }
    });
    Ok(())
}

fn stop_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve /metrics and /health here, e.g. 0.0.0.0:9464.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Events per produced batch.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
}

/// `plasma relay`: publishes the outbox to the topics until SIGTERM.
pub async fn relay(args: RelayArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let (store, _read) = open_store(&settings).await?;
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen).await?;
    }
    relay::describe_metrics();
    let relay = Relay::new(
        &store,
        config,
        RelayOptions {
            batch_events: args.batch.max(1),
            ..RelayOptions::default()
        },
    )?;
    eprintln!("plasma relay: publishing the outbox (leader election by advisory lock)");
    relay.run(stop_on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The read model to maintain: brands, mentions, brand_stats, drafts, agent_runs, documents.
    #[arg(long)]
    pub read_model: String,
    /// Serve /metrics and /health here.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Records per transaction.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
}

/// `plasma project`: one consumer-group worker of one read model, restarted on failure.
pub async fn project(args: ProjectArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let projection = projection_named(&args.read_model)?;
    let (_store, read) = open_store(&settings).await?;
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen).await?;
    }
    let shutdown = stop_on_signal();
    let options = WorkerOptions {
        batch_size: args.batch.max(1),
        ..WorkerOptions::default()
    };
    eprintln!(
        "plasma project: maintaining `{}` from the log (group {})",
        projection.name(),
        plasma_projections::log::group_id(projection.name())
    );
    let mut failures = 0u32;
    loop {
        let outcome = match LogWorker::start(
            read.clone(),
            projection.clone(),
            &config,
            options.clone(),
        )
        .await
        {
            Ok(worker) => worker.run(shutdown.clone()).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(error) => {
                failures += 1;
                tracing::error!(
                    error = format!("{:#}", anyhow::Error::from(error)),
                    failures,
                    "worker failed; restarting"
                );
                let backoff = Duration::from_millis(200u64 << failures.min(4));
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ok(ExitCode::SUCCESS),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReplaySource {
    /// From the beginning of the read model's topics.
    Log,
    /// From the event store, position 0.
    Store,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[arg(long)]
    pub read_model: String,
    /// Where to replay from.
    #[arg(long, value_enum, default_value = "log")]
    pub source: ReplaySource,
}

/// `plasma replay`: rebuilds a read model into shadow tables and swaps it in.
pub async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let projection = projection_named(&args.read_model)?;
    let (store, read) = open_store(&settings).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let progress = match args.source {
        ReplaySource::Log => {
            let config = log_config(&settings)?;
            bar.set_message(format!("{} from the log (records)", projection.name()));
            replay_from_log(&read, projection.clone(), &config, 2000, |p| {
                bar.set_length(p.target.max(0) as u64);
                bar.set_position(p.position.max(0) as u64);
            })
            .await?
        }
        ReplaySource::Store => {
            bar.set_message(format!(
                "{} from the event store (positions)",
                projection.name()
            ));
            rebuild(
                &read,
                &store,
                projection.clone(),
                RunnerOptions::default(),
                |p| {
                    bar.set_length(p.target.max(0) as u64);
                    bar.set_position(p.position.max(0) as u64);
                },
            )
            .await?
        }
    };
    bar.finish();
    eprintln!(
        "replayed `{}`: {} events applied in {:.1}s, swapped in",
        projection.name(),
        progress.applied,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The topic, e.g. plasma.brand.events (or just the context: brand).
    #[arg(long)]
    pub topic: String,
    /// Start at the beginning of the topic instead of its end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Only this aggregate's events (its id is the record key).
    #[arg(long)]
    pub aggregate: Option<uuid::Uuid>,
    /// Stop after printing this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Stop once every partition's end (as of the start) is reached, instead of following.
    #[arg(long)]
    pub exit_at_end: bool,
}

/// `plasma tail`: prints decoded events as JSON lines — the reference consumer.
pub async fn tail(args: TailArgs) -> Result<ExitCode> {
    use std::io::Write as _;
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let topic = match Context::ALL.iter().find(|c| c.as_str() == args.topic) {
        Some(context) => context.topic(&config.topic_prefix),
        None => args.topic.clone(),
    };
    let codec = EventCodec::new(&config.registry_url, &config.topic_prefix)?;
    let consumer: StreamConsumer = config.consumer(None).create()?;
    let consumer = Arc::new(consumer);
    let partitions =
        plasma_projections::log::partitions_of(consumer.clone(), std::slice::from_ref(&topic))
            .await?;
    let ends: std::collections::HashMap<(String, i32), i64> =
        plasma_projections::log::partition_ends(consumer.clone(), &partitions)
            .await?
            .into_iter()
            .map(|(key, (_, high))| (key, high))
            .collect();
    let mut assignment = TopicPartitionList::new();
    for (t, p) in &partitions {
        let start = if args.from_beginning {
            Offset::Offset(plasma_projections::log::FIRST_OFFSET)
        } else {
            Offset::End
        };
        assignment.add_partition_offset(t, *p, start)?;
    }
    consumer.assign(&assignment)?;
    let key_filter = args.aggregate.map(|id| id.to_string());
    let mut done: std::collections::HashSet<(String, i32)> = ends
        .iter()
        .filter(|(_, high)| **high == 0 || !args.from_beginning)
        .map(|(k, _)| k.clone())
        .collect();
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    let mut stop = stop_on_signal();
    loop {
        if args.exit_at_end && done.len() == partitions.len() {
            break;
        }
        if args.limit.is_some_and(|limit| printed >= limit) {
            break;
        }
        let message = tokio::select! {
            message = consumer.recv() => message?,
            _ = stop.changed() => break,
        };
        let key = (message.topic().to_owned(), message.partition());
        if ends
            .get(&key)
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            done.insert(key);
        }
        if let Some(wanted) = &key_filter {
            if message.key() != Some(wanted.as_bytes()) {
                continue;
            }
        }
        let Some(payload) = message.payload() else {
            continue;
        };
        let mut json = codec.decode_json(payload).await?;
        if let serde_json::Value::Object(fields) = &mut json {
            let mut headers = serde_json::Map::new();
            if let Some(h) = message.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    headers.insert(header.key.to_owned(), value.into_owned().into());
                }
            }
            let log = serde_json::json!({
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "key": message.key().map(String::from_utf8_lossy),
                "headers": headers,
            });
            fields.insert("_log".into(), log);
        }
        writeln!(stdout, "{json}")?;
        stdout.flush()?;
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Register every event schema (TopicRecordNameStrategy) and set BACKWARD_TRANSITIVE.
    Register(LogArgs),
    /// Print docs/events.md, the event catalog generated from the schemas.
    Docs {
        /// Topic prefix used in the catalog.
        #[arg(long, default_value = "plasma")]
        topic_prefix: String,
    },
    /// Ask the registry whether each schema could be registered as the next version.
    Check(LogArgs),
}

pub async fn schemas(command: SchemasCommand) -> Result<ExitCode> {
    match command {
        SchemasCommand::Docs { topic_prefix } => {
            print!("{}", Catalog::get()?.markdown(&topic_prefix));
            Ok(ExitCode::SUCCESS)
        }
        SchemasCommand::Register(args) => {
            let settings = args.settings()?;
            let config = log_config(&settings)?;
            let admin = RegistryAdmin::new(&config.registry_url)?;
            let registered = admin.register_all(&config.topic_prefix).await?;
            for r in &registered {
                println!("{}\tid {}", r.subject, r.id);
            }
            eprintln!(
                "registered {} schemas with {} compatibility",
                registered.len(),
                plasma_commands::log::registry::COMPATIBILITY
            );
            Ok(ExitCode::SUCCESS)
        }
        SchemasCommand::Check(args) => {
            let settings = args.settings()?;
            let config = log_config(&settings)?;
            let admin = RegistryAdmin::new(&config.registry_url)?;
            let mut incompatible = 0;
            for schema in Catalog::get()?.schemas() {
                let subject = schema.subject(&config.topic_prefix);
                let ok = admin.is_compatible(&subject, schema.source).await?;
                println!(
                    "{subject}\t{}",
                    if ok { "compatible" } else { "INCOMPATIBLE" }
                );
                if !ok {
                    incompatible += 1;
                }
            }
            Ok(if incompatible == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the event topics that do not exist yet (unlimited retention, delete policy).
    Create {
        #[command(flatten)]
        log: LogArgs,
        /// Partitions per topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
}

pub async fn topics(command: TopicsCommand) -> Result<ExitCode> {
    let TopicsCommand::Create {
        log,
        partitions,
        replication,
    } = command;
    let settings = log.settings()?;
    let config = log_config(&settings)?;
    let admin: AdminClient<DefaultClientContext> = config.consumer(None).create()?;
    let names = config.topics();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "delete")
                .set("retention.ms", "-1")
                .set("retention.bytes", "-1")
        })
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .context("creating topics")?;
    let mut failed = false;
    for result in results {
        match result {
            Ok(topic) => println!("{topic}\tcreated"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("{topic}\texists")
            }
            Err((topic, code)) => {
                eprintln!("{topic}\t{code}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
