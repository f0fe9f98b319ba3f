//! Building and running a gateway process: stores, in-process projection runners and the HTTP
//! server, under one shutdown signal.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use plasma_adapters::local_llm::{LocalLlm, LocalLlmSettings};
use plasma_adapters::openai::{OpenAiChat, OpenAiSettings};
use plasma_adapters::outbound::{AllowListedHttp, WebhookPublisher};
use plasma_adapters::webhook::{HttpWebhookSender, WebhookKey};
use plasma_adapters::LoadError;
use plasma_adapters::VaderScorer;
use plasma_commands::{CommandHandler, EventStore, Services, StoreConfig, StoreError};
use plasma_domain::brand::MentionServices;
use plasma_domain::content::DraftServices;
use plasma_domain::content::{BrandVoiceChecker, TemplateGenerator, TextGenerator};
use plasma_domain::research::{Embedder, RuleExtractor};
use plasma_domain::TenantId;
use plasma_gateway::auth::{TokenIssuer, TokenVerifier};
use plasma_gateway::mcp::ToolCaller;
use plasma_gateway::rate_limit::RateLimiter;
use plasma_gateway::state::{AppState, StateParts};
use plasma_gateway::{metrics, routes, Clock, SystemClock};
use plasma_log::KafkaReplay;
use plasma_processes::agent::{AgentOptions, AgentWorker, ToolBox, ToolCall};
use plasma_processes::alerts;
use plasma_processes::communities::{CommunityOptions, CommunityWorker};
use plasma_processes::delivery::{DeliveryOptions, DeliveryWorker};
use plasma_processes::embedding::EmbeddingWorker;
use plasma_processes::extraction::ExtractionWorker;
use plasma_processes::Process;
use plasma_projections::{
    all_projections, ProjectionError, ReadModels, ReadStore, ReadStoreConfig, Rebuilder,
    RunnerOptions,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::demo::{self, DemoError, DemoOutcome};
use crate::settings::{
    AgentSettings, AlertSettings, LlmProvider, ProjectionsMode, Settings, StoreSettings,
};
use crate::workers::ProjectionWorkers;

/// The embedded event store's file in the data dir.
pub const EVENTS_DB: &str = "events.db";
/// The embedded read store's file in the data dir.
pub const READ_DB: &str = "read.db";
/// Every configured model whose files load, in the configured order. A model that does not
/// load is reported and left out (the error says how to install it): its worker does not start
/// and searches cannot use it; nothing stands in for it.
fn load_embedders(settings: &Settings) -> Vec<Arc<dyn Embedder>> {
    let mut embedders: Vec<Arc<dyn Embedder>> = Vec::new();
    for model in &settings.research.embedders {
        match model.load(&settings.research.models_dir) {
            Ok(embedder) => {
                tracing::info!(model = %embedder.model().key(), "embedding model loaded");
                embedders.push(Arc::from(embedder));
            }
            Err(error) => tracing::error!(
                model = model.name(),
                error.message = %error,
                "the research pipeline for this model is not started"
            ),
        }
    }
    embedders
}

/// The key channel secrets derive from.
pub fn webhook_key(settings: &AlertSettings) -> Result<WebhookKey, StartupError> {
    settings
        .webhook_key
        .as_ref()
        .map(|key| WebhookKey::new(key.expose().as_bytes().to_vec()))
        .ok_or_else(|| {
            StartupError::Webhooks(
                "no webhook key: set PLASMA_WEBHOOK_KEY (or PLASMA_JWT_SECRET, which it defaults \
                 from) to the gateway's, so signatures match the secrets it shows"
                    .into(),
            )
        })
}

/// The alert delivery worker these settings describe: webhooks signed with the configured key.
pub fn delivery_worker(
    settings: &AlertSettings,
    handler: &CommandHandler,
) -> Result<Arc<DeliveryWorker>, StartupError> {
    let key = webhook_key(settings)?;
    let sender = HttpWebhookSender::new(key, settings.timeout, settings.allow_private_targets)
        .map_err(|e| StartupError::Webhooks(e.to_string()))?;
    Ok(Arc::new(DeliveryWorker::new(
        handler.clone(),
        Arc::new(sender),
        DeliveryOptions {
            max_attempts: settings.max_attempts,
            base_backoff: settings.retry_base,
            ..DeliveryOptions::default()
        },
    )))
}

/// The platform's voice checker: the rules, the tone through VADER, the reading level. The
/// gateway's voice-check endpoint and the drafting workflow use the same one.
pub fn draft_services() -> DraftServices {
    DraftServices {
        voice_checker: Arc::new(BrandVoiceChecker::new(Arc::new(VaderScorer::new()))),
    }
}

/// The in-process text model, loaded once per process however many tool boxes ask for it.
fn local_generator(model_file: &Path, timeout: Duration) -> Result<LocalLlm, LoadError> {
    static LOADED: Mutex<Option<(PathBuf, LocalLlm)>> = Mutex::new(None);
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((file, model)) = loaded.as_ref() {
        if file == model_file {
            return Ok(model.clone());
        }
    }
    let mut settings = LocalLlmSettings::in_models_dir(Path::new(""));
    settings.model_file = model_file.to_path_buf();
    settings.timeout = timeout;
    let model = LocalLlm::load(settings)?;
    *loaded = Some((model_file.to_path_buf(), model.clone()));
    Ok(model)
}

/// The text-generation provider these settings name. `auto` without the model installed gives
/// the templates (and a warning saying how to install it); `local` without it refuses to start.
pub fn text_generator(settings: &AgentSettings) -> Result<Arc<dyn TextGenerator>, StartupError> {
    Ok(match &settings.provider {
        LlmProvider::Template => Arc::new(TemplateGenerator),
        LlmProvider::Local {
            model_file,
            required,
        } => match local_generator(model_file, settings.llm_timeout) {
            Ok(model) => Arc::new(model),
            Err(missing @ LoadError::Missing { .. }) if !required => {
                tracing::warn!(
                    reason = %missing,
                    "the in-process text model is not installed: drafts are written from templates"
                );
                Arc::new(TemplateGenerator)
            }
            Err(e) => return Err(StartupError::Agent(e.to_string())),
        },
        LlmProvider::OpenAi {
            base_url,
            model,
            api_key,
        } => Arc::new(
            OpenAiChat::new(OpenAiSettings {
                base_url: base_url.clone(),
                model: model.clone(),
                api_key: api_key.as_ref().map(|k| k.expose().to_owned()),
                timeout: settings.llm_timeout,
                max_retries: settings.llm_max_retries,
                max_retry_after: Duration::from_secs(60),
            })
            .map_err(|e| StartupError::Agent(e.to_string()))?,
        ),
    })
}

/// The tools these settings describe: the text-generation provider, the allow-listed HTTP
/// client, the publisher.
pub fn tool_box(
    settings: &AgentSettings,
    handler: &CommandHandler,
    read: ReadModels,
) -> Result<ToolBox, StartupError> {
    let generator = text_generator(settings)?;
    let http = AllowListedHttp::new(settings.http_allowed_hosts.clone(), Duration::from_secs(30))
        .map_err(|e| StartupError::Agent(e.to_string()))?;
    let secret = settings
        .publish_secret
        .as_ref()
        .map(|s| s.expose().to_owned())
        .ok_or_else(|| {
            StartupError::Agent(
                "no publish secret: set PLASMA_PUBLISH_SECRET or PLASMA_WEBHOOK_KEY".into(),
            )
        })?;
    let publisher = WebhookPublisher::new(
        settings.publish_webhook_url.clone(),
        secret,
        Duration::from_secs(30),
    )
    .map_err(|e| StartupError::Agent(e.to_string()))?;
    Ok(ToolBox {
        handler: handler.clone(),
        read,
        generator,
        http: Arc::new(http),
        publisher: Arc::new(publisher),
        draft_services: draft_services(),
    })
}

/// The registry's tools for direct calls (MCP): each call is a new effect, under a fresh key,
/// at the time it arrives.
#[derive(Debug)]
pub struct DirectTools(pub ToolBox);

#[async_trait::async_trait]
impl ToolCaller for DirectTools {
    async fn call(
        &self,
        tenant: &TenantId,
        tool: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let key = uuid::Uuid::now_v7();
        let call = ToolCall {
            tenant,
            key,
            at: chrono::Utc::now(),
            correlation: key,
            input: &input,
            streams_to: None,
        };
        self.0.call(tool, call).await.map_err(|e| e.to_string())
    }
}

/// The agent worker these settings describe: its tools and its options.
pub fn agent_worker(
    settings: &AgentSettings,
    handler: &CommandHandler,
    read: ReadModels,
) -> Result<Arc<AgentWorker>, StartupError> {
    let tools = tool_box(settings, handler, read.clone())?;
    Ok(Arc::new(AgentWorker::new(
        handler.clone(),
        read,
        tools,
        AgentOptions {
            concurrency: settings.concurrency,
            lease: settings.lease,
            checkpoint_retention: settings.checkpoint_retention,
            checkpoints_kept: settings.checkpoints_kept,
            ..AgentOptions::default()
        },
    )))
}

/// Records per transaction of a replay from the log.
pub const REPLAY_BATCH: usize = 2000;
/// How long the projection workers get to finish their batch after the server stopped.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("opening the event store")]
    EventStore(#[source] StoreError),
    #[error("opening the read store")]
    ReadStore(#[source] ProjectionError),
    #[error("preparing the projections")]
    Projections(#[source] ProjectionError),
    #[error("building the webhook client: {0}")]
    Webhooks(String),
    #[error("building the agent worker: {0}")]
    Agent(String),
    #[error("listening on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The gateway, built and bound, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    workers: ProjectionWorkers,
    handler: CommandHandler,
    issuer: Option<TokenIssuer>,
    clock: Arc<dyn Clock>,
    state: AppState,
    drain_delay: Duration,
    drain_timeout: Duration,
}

/// How one component of a running gateway ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentOutcome {
    Stopped,
    /// Stopped on shutdown after failing and being restarted this many times.
    StoppedAfterRestarts(u32),
    Failed(String),
}

impl fmt::Display for ComponentOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped => f.write_str("stopped"),
            Self::StoppedAfterRestarts(n) => write!(f, "stopped after {n} restarts"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Every component's ending, for `main` to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub components: Vec<(String, ComponentOutcome)>,
}

impl RunReport {
    pub fn all_stopped_cleanly(&self) -> bool {
        self.components
            .iter()
            .all(|(_, outcome)| !matches!(outcome, ComponentOutcome::Failed(_)))
    }
}

impl Application {
    /// Opens the stores (migrating them), prepares one projection runner per read model, and
    /// binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the clock commands are stamped with.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        tracing::info!(?settings, "starting");
        let (store_config, read_path) = match &settings.store {
            StoreSettings::Embedded { data_dir } => (
                StoreConfig::Sqlite {
                    path: data_dir.join(EVENTS_DB),
                },
                data_dir.join(READ_DB),
            ),
            StoreSettings::Server {
                database_url,
                max_connections,
            } => (
                StoreConfig::Postgres {
                    url: database_url.expose().to_owned(),
                    max_connections: *max_connections,
                },
                std::path::PathBuf::new(),
            ),
        };
        let store = EventStore::open(&store_config)
            .await
            .map_err(StartupError::EventStore)?;
        let read_config = ReadStoreConfig::beside(&store, read_path);
        let read = ReadStore::open(&read_config)
            .await
            .map_err(StartupError::ReadStore)?;
        // Written by the communities worker, read by graph queries: there before either runs.
        plasma_projections::models::communities::create_tables(&read)
            .await
            .map_err(StartupError::ReadStore)?;
        let handler = CommandHandler::new(store.clone());
        let embedders = load_embedders(&settings);
        let (workers, projections) = match settings.projections {
            ProjectionsMode::InProcess => {
                let mut processes: Vec<Arc<dyn Process>> = embedders
                    .iter()
                    .map(|embedder| {
                        Arc::new(EmbeddingWorker::new(handler.clone(), embedder.clone()))
                            as Arc<dyn Process>
                    })
                    .collect();
                processes.push(alerts::detector(handler.clone()));
                processes.push(Arc::new(ExtractionWorker::new(
                    handler.clone(),
                    ReadModels::new(read.clone()),
                    Arc::new(RuleExtractor),
                )));
                let workers = ProjectionWorkers::prepare(&read, &store, RunnerOptions::default())
                    .await
                    .map_err(StartupError::Projections)?
                    .with_processes(processes)
                    .with_delivery(delivery_worker(&settings.alerts, &handler)?)
                    .with_agent(agent_worker(
                        &settings.agent,
                        &handler,
                        ReadModels::new(read.clone()),
                    )?)
                    .with_communities(Arc::new(CommunityWorker::new(
                        ReadModels::new(read.clone()),
                        embedders.first().cloned(),
                        CommunityOptions::default(),
                    )));
                let names = workers.projection_names();
                (workers, names)
            }
            ProjectionsMode::External => {
                tracing::info!("read models are maintained by external `plasma project` workers");
                let names = all_projections().iter().map(|p| p.name()).collect();
                (ProjectionWorkers::external(&read, &store), names)
            }
        };

        let mut rebuilder = Rebuilder::new(read.clone(), store.clone());
        if let Some(log) = &settings.log {
            rebuilder = rebuilder.with_log(Arc::new(KafkaReplay {
                config: log.clone(),
                batch_size: REPLAY_BATCH,
            }));
        }
        let read_for_tools = read.clone();
        let state = AppState::new(StateParts {
            handler: handler.clone(),
            read: ReadModels::new(read)
                .with_wait(settings.consistency.min_position_wait)
                .with_event_store(store.clone()),
            clock: clock.clone(),
            verifier: TokenVerifier::new(&settings.auth.jwt),
            rate_limiter: RateLimiter::new(settings.rate_limit),
            services: Services {
                mention: MentionServices {
                    scorer: Arc::new(VaderScorer::new()),
                },
            },
            draft_services: draft_services(),
            body_limit: settings.http.body_limit,
            // With external workers, lag is theirs to report: a lagging read model must not
            // take every gateway out of service (commands and other queries still work).
            ready_max_lag: (settings.projections == ProjectionsMode::InProcess)
                .then_some(settings.consistency.ready_max_lag),
            projections,
            metrics: {
                let recorder = metrics::recorder();
                plasma_processes::embedding::describe_metrics();
                plasma_processes::extraction::describe_metrics();
                plasma_processes::communities::describe_metrics();
                plasma_processes::alerts::describe_metrics();
                plasma_processes::delivery::describe_metrics();
                plasma_processes::agent::describe_metrics();
                recorder
            },
            rebuilder,
            embedders,
            channel_secrets: Arc::new(webhook_key(&settings.alerts)?),
            tools: Some(Arc::new(DirectTools(tool_box(
                &settings.agent,
                &handler,
                ReadModels::new(read_for_tools),
            )?))),
        });
        let router = routes::router(state.clone(), settings.http.request_timeout);

        let addr = settings.http.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            router,
            workers,
            handler,
            issuer: TokenIssuer::new(&settings.auth.jwt),
            clock,
            state,
            drain_delay: settings.http.drain_delay,
            drain_timeout: settings.http.drain_timeout,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Signs tokens with the key this gateway verifies with; `None` with an OIDC issuer.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The command handler on this gateway's event store.
    pub fn command_handler(&self) -> &CommandHandler {
        &self.handler
    }

    /// Loads the demo data set into `tenant` through the command path, unless the store
    /// already holds events.
    pub async fn load_demo(&self, tenant: &TenantId) -> Result<DemoOutcome, DemoError> {
        demo::load(&self.handler, tenant, self.clock.now()).await
    }

    /// Serves until `shutdown` completes, then stops the projection workers; reports how each
    /// component ended.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> RunReport {
        let (stop_workers, stop) = watch::channel(false);
        let names = self.workers.names();
        let workers = self.workers.spawn(stop);
        tracing::info!(address = %self.local_addr, "serving");
        // Draining: `/ready` fails at once and requests are still served for the drain delay;
        // then the listener closes and in-flight requests get the drain timeout to finish.
        let draining = Arc::new(tokio::sync::Notify::new());
        let graceful = {
            let (state, delay, draining) = (self.state.clone(), self.drain_delay, draining.clone());
            async move {
                shutdown.await;
                state.start_draining();
                tracing::info!(
                    delay_ms = delay.as_millis() as u64,
                    "draining: /ready fails, still serving"
                );
                tokio::time::sleep(delay).await;
                tracing::info!("draining: no new connections; finishing in-flight requests");
                draining.notify_one();
            }
        };
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(graceful);
        let drain_timeout = self.drain_timeout;
        let served = tokio::select! {
            served = serve => served,
            _ = async {
                draining.notified().await;
                tokio::time::sleep(drain_timeout).await;
            } => {
                tracing::warn!(timeout_s = drain_timeout.as_secs(), "in-flight requests outlived the drain timeout");
                Ok(())
            }
        };
        let mut components = vec![(
            "http server".to_owned(),
            match served {
                Ok(()) => ComponentOutcome::Stopped,
                Err(err) => ComponentOutcome::Failed(err.to_string()),
            },
        )];
        // The workers watch this flag; the sender stays alive until they have all returned.
        let _ = stop_workers.send(true);
        for (name, worker) in names.into_iter().zip(workers) {
            let outcome = match tokio::time::timeout(WORKER_STOP_TIMEOUT, worker).await {
                Ok(Ok(exit)) if exit.restarts == 0 => ComponentOutcome::Stopped,
                Ok(Ok(exit)) => ComponentOutcome::StoppedAfterRestarts(exit.restarts),
                Ok(Err(join)) => ComponentOutcome::Failed(format!("the worker task ended: {join}")),
                Err(_) => ComponentOutcome::Failed(format!(
                    "did not stop within {}s",
                    WORKER_STOP_TIMEOUT.as_secs()
                )),
            };
            components.push((name, outcome));
        }
        drop(stop_workers);
        RunReport { components }
    }
}
