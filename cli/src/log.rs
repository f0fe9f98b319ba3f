//! The server-mode processes and tools: `relay`, `project`, `embed`, `alerts`, `replay`,
//! `tail`, `schemas`, `topics`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use plasma_adapters::KnownModel;
use plasma_commands::{CommandHandler, EventStore, StoreConfig};
use plasma_domain::research::{Embedder, RuleExtractor};
use plasma_gateway::Secret;
use plasma_log::admin::{create_topics, TopicCreated};
use plasma_log::subscription::group_id;
use plasma_log::tail::TailOptions;
use plasma_log::{
    Catalog, KafkaReplay, LogConfig, LogSubscription, RegistryAdmin, Relay, RelayOptions,
    SubscriptionOptions,
};
use plasma_processes::alerts::AlertDetector;
use plasma_processes::communities::{CommunityOptions, CommunityWorker};
use plasma_processes::embedding::EmbeddingWorker;
use plasma_processes::extraction::ExtractionWorker;
use plasma_processes::{Process, ProcessOptions, ProcessRunner};
use plasma_projections::{
    projection_named, ProjectionRunner, ReadModels, ReadStore, ReadStoreConfig, RebuildSource,
    Rebuilder, RunnerOptions, StoreSubscription,
};

use crate::app::REPLAY_BATCH;
use crate::args::ConfigArgs;
use crate::settings::{LogLayer, Profile, Settings, SettingsLayer, StoreLayer, StoreSettings};
use crate::supervisor::{stop_on_signal, supervise};

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
    let read = ReadStore::open(&ReadStoreConfig::beside(&store, Default::default()))
        .await
        .context("opening the read store")?;
    Ok((store, read))
}

/// Runs `process` fed by its contexts' topics, as a member of its consumer group, restarted
/// on failure until `shutdown`.
async fn follow_topics(
    process: Arc<dyn Process>,
    read: &ReadStore,
    store: &EventStore,
    config: &LogConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> crate::supervisor::Exit {
    supervise(
        format!("process {}", process.name()),
        shutdown,
        |_, stop| {
            let (read, store, process, config) =
                (read.clone(), store.clone(), process.clone(), config.clone());
            async move {
                let subscription = LogSubscription::start(
                    read.clone(),
                    store,
                    process.name(),
                    process.contexts(),
                    &config,
                    SubscriptionOptions::default(),
                )
                .await?;
                ProcessRunner::start(read, process, subscription, ProcessOptions::default())
                    .await?
                    .run(stop)
                    .await
            }
        },
    )
    .await
}

/// What a headless process's `/ready` checks: its own dependencies — the database, and the
/// broker and schema registry when it uses the log — and whether it is shutting down. A
/// projection's lag is reported but never makes it unready: a lagging worker is the one that
/// must keep running, and failing readiness would only stall a rolling update.
#[derive(Clone)]
struct Readiness {
    store: EventStore,
    log: Option<Arc<plasma_log::admin::LogProbe>>,
    /// The projection a `plasma project` worker maintains, for its lag.
    projection: Option<(ReadStore, &'static str)>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Readiness {
    fn new(
        store: &EventStore,
        config: Option<&LogConfig>,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self> {
        let log = config
            .map(plasma_log::admin::LogProbe::new)
            .transpose()
            .context("creating the readiness probe")?
            .map(Arc::new);
        Ok(Self {
            store: store.clone(),
            log,
            projection: None,
            shutdown: shutdown.clone(),
        })
    }

    async fn check(&self) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
        let mut problems = Vec::new();
        if *self.shutdown.borrow() {
            problems.push("shutting down".to_owned());
        }
        let head = match tokio::time::timeout(Duration::from_secs(3), self.store.head()).await {
            Ok(Ok(head)) => Some(head),
            Ok(Err(e)) => {
                problems.push(format!("the database does not answer: {e}"));
                None
            }
            Err(_) => {
                problems.push("the database did not answer in time".to_owned());
                None
            }
        };
        if let Some(log) = &self.log {
            let (broker, registry) = tokio::join!(log.broker(), log.registry());
            problems.extend(broker.err());
            problems.extend(registry.err());
        }
        let mut lag = None;
        if let (Some((read, name)), Some(head)) = (&self.projection, head) {
            if let Ok(positions) = read.positions().await {
                let position = positions
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, p)| *p);
                lag = Some((head - position).max(0));
            }
        }
        let status = if problems.is_empty() {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        };
        let body = serde_json::json!({
            "status": if problems.is_empty() { "ready" } else { "not_ready" },
            "head": head,
            "lag": lag,
            "problems": problems,
        });
        (status, axum::Json(body))
    }
}

/// Serves `GET /metrics`, `GET /health` (the process answers) and `GET /ready` (its
/// dependencies answer and it is not shutting down) for a headless process.
async fn serve_metrics(listen: SocketAddr, readiness: Readiness) -> Result<()> {
    use axum::routing::get;
    let handle = plasma_gateway::metrics::recorder();
    plasma_log::metrics::describe();
    plasma_processes::embedding::describe_metrics();
    let app = axum::Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/health", get(|| std::future::ready("ok")))
        .route(
            "/ready",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.check().await }
            }),
        );
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

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub log: LogArgs,
}

/// `plasma migrate`: brings the PostgreSQL schema up to this release (the event store's
/// migrations, every read model's tables) and exits. Run before a release's processes start
/// (the Helm chart's pre-install/pre-upgrade hook); changes are expand-only, so the previous
/// release keeps running on the migrated schema during a rollout and after a rollback.
pub async fn migrate(args: MigrateArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let (store, read) = open_store(&settings).await?;
    let projections = plasma_projections::all_projections();
    plasma_projections::create_read_models(&read, &projections)
        .await
        .context("creating the read models' tables")?;
    eprintln!(
        "plasma migrate: event store at position {}, {} read models ready",
        store.head().await.context("reading the head position")?,
        projections.len()
    );
    Ok(ExitCode::SUCCESS)
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

/// `plasma relay`: publishes committed events to the topics until SIGTERM.
pub async fn relay(args: RelayArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let (store, _read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, Readiness::new(&store, Some(&config), &shutdown)?).await?;
    }
    let relay = Relay::new(
        &store,
        config,
        RelayOptions {
            batch_events: args.batch.max(1),
            ..RelayOptions::default()
        },
    )?;
    eprintln!("plasma relay: publishing committed events (leader election by advisory lock)");
    relay.run(shutdown).await?;
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

/// How often `plasma project` refreshes its position and lag gauges.
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// `plasma project`: one consumer-group worker of one read model, restarted on failure.
pub async fn project(args: ProjectArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let projection = projection_named(&args.read_model)?;
    let (store, read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        let mut readiness = Readiness::new(&store, Some(&config), &shutdown)?;
        readiness.projection = Some((read.clone(), projection.name()));
        serve_metrics(listen, readiness).await?;
    }
    let options = RunnerOptions {
        batch_size: args.batch.max(1),
        ..RunnerOptions::default()
    };
    eprintln!(
        "plasma project: maintaining `{}` from the log (group {})",
        projection.name(),
        group_id(projection.name())
    );
    report_lag(
        store.clone(),
        read.clone(),
        projection.name(),
        shutdown.clone(),
    );
    supervise(
        format!("projection {}", projection.name()),
        shutdown.clone(),
        |_, stop| {
            let (read, store, projection, config, options) = (
                read.clone(),
                store.clone(),
                projection.clone(),
                config.clone(),
                options.clone(),
            );
            async move {
                let subscription = LogSubscription::start(
                    read.clone(),
                    store,
                    projection.name(),
                    projection.contexts(),
                    &config,
                    SubscriptionOptions::default(),
                )
                .await?;
                // The runner creates the tables before the subscription's first batch.
                let runner =
                    ProjectionRunner::start(read, projection, subscription, options).await?;
                runner.run(stop).await
            }
        },
    )
    .await;
    Ok(ExitCode::SUCCESS)
}

/// Keeps this process's `plasma_projection_position` and `plasma_projection_lag_events` gauges
/// fresh, so each worker reports its own lag on its /metrics.
fn report_lag(
    store: EventStore,
    read: ReadStore,
    name: &'static str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            match store.head().await {
                Ok(head) => {
                    if let Err(error) =
                        plasma_projections::metrics::record_positions(&read, &[name], head).await
                    {
                        tracing::debug!(%error, "reading the projection position");
                    }
                }
                Err(error) => tracing::debug!(%error, "reading the store head"),
            }
            tokio::select! {
                _ = tokio::time::sleep(LAG_REPORT_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The model: all-MiniLM-L6-v2 or wordllama-l2-supercat-256.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// Serve /metrics and /health here.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// `plasma embed`: one embedding worker of one model, fed by the research topic as a member
/// of the model's consumer group, restarted on failure. The model's files come from the
/// models dir (PLASMA_MODELS_DIR; `scripts/install-models.sh` installs them).
pub async fn embed(args: EmbedArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let model = KnownModel::parse(&args.model).ok_or_else(|| {
        let known: Vec<&str> = KnownModel::ALL.iter().map(|m| m.name()).collect();
        anyhow!(
            "`{}` is not a model: use {}",
            args.model,
            known.join(" or ")
        )
    })?;
    let embedder: Arc<dyn Embedder> = Arc::from(model.load(&settings.research.models_dir)?);
    let (store, read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, Readiness::new(&store, Some(&config), &shutdown)?).await?;
    }
    let worker: Arc<dyn Process> = Arc::new(EmbeddingWorker::new(
        CommandHandler::new(store.clone()),
        embedder,
    ));
    eprintln!(
        "plasma embed: embedding chunked documents with {} (group {})",
        model.name(),
        group_id(worker.name())
    );
    follow_topics(worker, &read, &store, &config, shutdown).await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve /metrics and /health here.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// `plasma alerts`: the alert detector (from the event store, in commit order) and the delivery
/// worker with its dispatcher (from the brand topic, as a member of its consumer group),
/// restarted on failure. The detector keeps its series in the database and judges each
/// brand's stream in order: run one.
pub async fn alerts(args: AlertsArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let (store, read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, Readiness::new(&store, Some(&config), &shutdown)?).await?;
        plasma_processes::alerts::describe_metrics();
        plasma_processes::delivery::describe_metrics();
    }
    let handler = CommandHandler::new(store.clone());
    let detector: Arc<dyn Process> = Arc::new(AlertDetector::new(handler.clone()));
    let delivery = crate::app::delivery_worker(&settings.alerts, &handler)?;
    eprintln!(
        "plasma alerts: detecting from the event store, delivering from the brand topic (group {})",
        group_id(delivery.name())
    );
    // The detector judges each brand's stream in publication order, which the partitioned
    // topic does not keep (a brand's mentions are keyed by mention, on every partition): it
    // reads the event store in commit order instead, like in embedded mode.
    let detect = {
        let (read, store) = (read.clone(), store.clone());
        supervise(
            format!("process {}", detector.name()),
            shutdown.clone(),
            move |_, stop| {
                let (read, store, detector) = (read.clone(), store.clone(), detector.clone());
                async move {
                    let subscription = StoreSubscription::new(store);
                    ProcessRunner::start(read, detector, subscription, ProcessOptions::default())
                        .await?
                        .run(stop)
                        .await
                }
            },
        )
    };
    let dispatcher = {
        let (reads, delivery) = (ReadModels::new(read.clone()), delivery.clone());
        supervise(
            format!("dispatcher {}", delivery.name()),
            shutdown.clone(),
            move |_, stop| delivery.clone().dispatch(reads.clone(), stop),
        )
    };
    tokio::join!(
        detect,
        follow_topics(delivery, &read, &store, &config, shutdown.clone()),
        dispatcher
    );
    Ok(ExitCode::SUCCESS)
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
    let mut rebuilder = Rebuilder::new(read.clone(), store.clone());
    let source = match args.source {
        ReplaySource::Log => {
            rebuilder = rebuilder.with_log(Arc::new(KafkaReplay {
                config: log_config(&settings)?,
                batch_size: REPLAY_BATCH,
            }));
            bar.set_message(format!("{} from the log (records)", projection.name()));
            RebuildSource::Log
        }
        ReplaySource::Store => {
            bar.set_message(format!(
                "{} from the event store (positions)",
                projection.name()
            ));
            RebuildSource::Store
        }
    };
    let progress = rebuilder
        .rebuild(projection.name(), source, &mut |p| {
            bar.set_length(p.target.max(0) as u64);
            bar.set_position(p.position.max(0) as u64);
        })
        .await?;
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
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let options = TailOptions {
        topic: args.topic,
        from_beginning: args.from_beginning,
        aggregate: args.aggregate,
        exit_at_end: args.exit_at_end,
        limit: args.limit,
    };
    let mut stdout = std::io::stdout().lock();
    plasma_log::tail::tail(&config, &options, &mut stdout, stop_on_signal()).await?;
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
                plasma_log::registry::COMPATIBILITY
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
    let mut failed = false;
    for result in create_topics(&config, partitions, replication).await? {
        match result {
            TopicCreated::Created(topic) => println!("{topic}\tcreated"),
            TopicCreated::Exists(topic) => println!("{topic}\texists"),
            TopicCreated::Failed { topic, reason } => {
                eprintln!("{topic}\t{reason}");
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

#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve /metrics and /ready here.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// `plasma extract`: the extraction worker (the rule extractor), fed by the research topic as
/// a member of its consumer group, restarted on failure. Any number of replicas: a document's
/// events share a partition, and the command ids are derived from the chunking event.
pub async fn extract(args: ExtractArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let (store, read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, Readiness::new(&store, Some(&config), &shutdown)?).await?;
        plasma_processes::extraction::describe_metrics();
    }
    let worker: Arc<dyn Process> = Arc::new(ExtractionWorker::new(
        CommandHandler::new(store.clone()),
        ReadModels::new(read.clone()),
        Arc::new(RuleExtractor),
    ));
    eprintln!(
        "plasma extract: extracting entities of chunked documents (group {})",
        group_id(worker.name())
    );
    follow_topics(worker, &read, &store, &config, shutdown).await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve /metrics and /ready here.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// `plasma agent`: the agent worker. Its schedule follows the agent topic as a member of its
/// consumer group; its executor claims due runs under a lease and drives them. Any number of
/// replicas: a run is driven by one executor at a time (`FOR UPDATE SKIP LOCKED`, renewed
/// leases), and every effect carries an idempotency key derived from the run and the step.
pub async fn agent(args: AgentArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let config = log_config(&settings)?;
    let (store, read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, Readiness::new(&store, Some(&config), &shutdown)?).await?;
        plasma_processes::agent::describe_metrics();
    }
    let worker = crate::app::agent_worker(
        &settings.agent,
        &CommandHandler::new(store.clone()),
        ReadModels::new(read.clone()),
    )?;
    eprintln!(
        "plasma agent: executing workflow runs (group {})",
        group_id(worker.name())
    );
    let executor = {
        let worker = worker.clone();
        supervise("agent executor", shutdown.clone(), move |_, stop| {
            worker.clone().execute(stop)
        })
    };
    let schedule: Arc<dyn Process> = worker;
    tokio::join!(
        follow_topics(schedule, &read, &store, &config, shutdown),
        executor
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CommunitiesArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The model that embeds community reports for global search (the gateway must load the
    /// same one), or `none`.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// How often to look for graphs that changed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Serve /metrics and /ready here.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// `plasma communities`: recomputes the communities of every tenant whose knowledge graph
/// changed, from the graph read model (not the log), until SIGTERM. Replicas are safe (each
/// computation replaces a tenant's communities in one transaction) but only add load: run one.
pub async fn communities(args: CommunitiesArgs) -> Result<ExitCode> {
    let settings = args.log.settings()?;
    let (store, read) = open_store(&settings).await?;
    let shutdown = stop_on_signal();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, Readiness::new(&store, None, &shutdown)?).await?;
        plasma_processes::communities::describe_metrics();
    }
    let embedder: Option<Arc<dyn Embedder>> = if args.model == "none" {
        None
    } else {
        let model = KnownModel::parse(&args.model).ok_or_else(|| {
            let known: Vec<&str> = KnownModel::ALL.iter().map(|m| m.name()).collect();
            anyhow!(
                "`{}` is not a model: use {} or none",
                args.model,
                known.join(", ")
            )
        })?;
        Some(Arc::from(model.load(&settings.research.models_dir)?))
    };
    let worker = Arc::new(CommunityWorker::new(
        ReadModels::new(read),
        embedder,
        CommunityOptions {
            interval: args.interval,
            ..CommunityOptions::default()
        },
    ));
    eprintln!("plasma communities: following the graph read model");
    supervise("communities", shutdown, |_, stop| {
        let worker = worker.clone();
        async move { worker.run(stop).await }
    })
    .await;
    Ok(ExitCode::SUCCESS)
}
