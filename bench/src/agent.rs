//! `plasma bench agent`: the durable workflow runtime on PostgreSQL.
//!
//! 1. Steps: `--runs` runs of a workflow of `--steps` no-op tool steps, each step's intent and
//!    output recorded with a checkpoint, driven by one agent worker `--concurrency` runs at a
//!    time (what LangGraph's peer script does with its semaphore). Steps/s over the wall time
//!    from the first start to the last completion; a step's latency is from its recorded start
//!    to the next step's (the last: to the run's completion), so it includes recording the
//!    outcome and the checkpoint, like the peer's.
//! 2. Drafting: `--drafts` runs of the built-in drafting workflow with the template provider,
//!    each approved the moment it waits for its editor, published without a webhook: drafts/s
//!    end to end.
//!
//! Prints one JSON line per part, the peer script's format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use cqrs_es::Aggregate as _;
use plasma_adapters::local_llm::{LocalLlm, LocalLlmSettings};
use plasma_adapters::outbound::{AllowListedHttp, WebhookPublisher};
use plasma_commands::{CommandContext, CommandHandler, EventStore, StoreConfig};
use plasma_domain::agent::{
    builtin, AgentRun, AgentRunCommand, AgentRunEvent, AgentRunStatus, Workflow, WorkflowCommand,
    WorkflowDefinition,
};
use plasma_domain::brand::{Brand, BrandCommand, VoiceGuidelines};
use plasma_domain::content::{
    Channel, Draft, DraftCommand, DraftServices, TemplateGenerator, TextGenerator,
};
use plasma_domain::ids::{BrandId, CommandId, DraftId, RunId, WorkflowId};
use plasma_domain::{AggregateId as _, TenantId};
use plasma_processes::agent::{AgentOptions, AgentWorker, ToolBox};
use plasma_processes::{Process, ProcessOptions, ProcessRunner};
use plasma_projections::{ReadModels, ReadStore, ReadStoreConfig, StoreSubscription};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct AgentBenchArgs {
    /// A PostgreSQL database to use (its tables are created; use a fresh one).
    #[arg(long)]
    pub database_url: String,
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Runs driven at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Drafting runs (0: skip that part).
    #[arg(long, default_value_t = 100)]
    pub drafts: usize,
    /// Who writes the drafts: `template`, or `local` (the in-process model from the models dir).
    #[arg(long, default_value = "template")]
    pub generator: String,
    /// Where scripts/install-models.sh put the models (for `--generator local`).
    #[arg(long, env = "PLASMA_MODELS_DIR")]
    pub models_dir: Option<std::path::PathBuf>,
}

fn context(tenant: &TenantId) -> CommandContext {
    CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::now_v7()), None)
}

fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Runtime {
    store: EventStore,
    handler: CommandHandler,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Runtime {
    async fn start(
        url: &str,
        concurrency: usize,
        generator: Arc<dyn TextGenerator>,
    ) -> Result<Self> {
        let store = EventStore::open(&StoreConfig::Postgres {
            url: url.to_owned(),
            max_connections: (concurrency as u32 + 8).min(64),
        })
        .await
        .context("opening the event store")?;
        let read = ReadStore::open(&ReadStoreConfig::beside(&store, Default::default())).await?;
        let handler = CommandHandler::new(store.clone());
        let tools = ToolBox {
            handler: handler.clone(),
            read: ReadModels::new(read.clone()),
            generator,
            http: Arc::new(AllowListedHttp::new(Vec::new(), Duration::from_secs(10))?),
            publisher: Arc::new(WebhookPublisher::new(
                None,
                "bench-secret".into(),
                Duration::from_secs(10),
            )?),
            draft_services: DraftServices::default(),
        };
        let worker = Arc::new(AgentWorker::new(
            handler.clone(),
            ReadModels::new(read.clone()),
            tools,
            AgentOptions {
                concurrency,
                lease: Duration::from_secs(30),
                poll: Duration::from_millis(5),
                ..AgentOptions::default()
            },
        ));
        let (stop, stopped) = watch::channel(false);
        let schedule: Arc<dyn Process> = worker.clone();
        let runner = ProcessRunner::start(
            read.clone(),
            schedule,
            StoreSubscription::new(store.clone()),
            ProcessOptions {
                idle_wait: Duration::from_millis(2),
                ..ProcessOptions::default()
            },
        )
        .await?;
        let s = stopped.clone();
        let follow = tokio::spawn(async move {
            if let Err(error) = runner.run(s).await {
                eprintln!("bench agent: the schedule stopped: {error}");
            }
        });
        let execute = tokio::spawn(async move {
            if let Err(error) = worker.execute(stopped).await {
                eprintln!("bench agent: the executor stopped: {error}");
            }
        });
        Ok(Self {
            store,
            handler,
            stop,
            tasks: vec![follow, execute],
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    async fn status(&self, tenant: &TenantId, run: RunId) -> Result<AgentRun> {
        let (run, _, _) = self
            .handler
            .load::<AgentRun>(&context(tenant), run.as_uuid())
            .await?;
        Ok(run)
    }

    /// Waits until every run is finished; fails on a failed run.
    async fn wait(&self, tenant: &TenantId, runs: &[RunId], limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut pending: Vec<RunId> = runs.to_vec();
        while !pending.is_empty() {
            if Instant::now() > deadline {
                bail!("{} runs did not finish in {limit:?}", pending.len());
            }
            let mut still = Vec::new();
            for run in pending {
                match self.status(tenant, run).await?.status {
                    Some(AgentRunStatus::Completed) => {}
                    Some(AgentRunStatus::Running) | None => still.push(run),
                    Some(other) => bail!("run {run} ended {other}"),
                }
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn start_run(
        &self,
        tenant: &TenantId,
        workflow: &str,
        version: u32,
        input: serde_json::Value,
    ) -> Result<RunId> {
        let run = RunId::from_uuid(Uuid::now_v7());
        self.handler
            .execute::<AgentRun>(
                &context(tenant),
                run.as_uuid(),
                AgentRunCommand::StartManaged {
                    workflow: workflow.to_owned(),
                    version,
                    input,
                    fork: None,
                    continued_from: None,
                    at: Utc::now(),
                },
                &(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(run)
    }
}

pub async fn agent(args: AgentBenchArgs) -> Result<()> {
    if args.steps == 0 || args.concurrency == 0 {
        bail!("--steps and --concurrency must be positive");
    }
    let generator: Arc<dyn TextGenerator> = match args.generator.as_str() {
        "template" => Arc::new(TemplateGenerator),
        "local" => {
            let dir = args
                .models_dir
                .clone()
                .unwrap_or_else(plasma_adapters::embedding::default_models_dir);
            Arc::new(LocalLlm::load(LocalLlmSettings::in_models_dir(&dir))?)
        }
        other => bail!("--generator {other}: use template or local"),
    };
    let runtime = Runtime::start(&args.database_url, args.concurrency, generator.clone()).await?;
    let tenant = TenantId::parse("bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.runs > 0 {
        steps(&runtime, &tenant, &args).await?;
    }
    if args.drafts > 0 {
        drafting(&runtime, &tenant, args.drafts, generator.as_ref()).await?;
    }
    runtime.stop().await;
    Ok(())
}

async fn steps(runtime: &Runtime, tenant: &TenantId, args: &AgentBenchArgs) -> Result<()> {
    let definition: WorkflowDefinition = serde_json::from_value(json!({
        "steps": (0..args.steps)
            .map(|i| json!({"id": format!("step_{i}"), "kind": "tool", "tool": "noop"}))
            .collect::<Vec<_>>()
    }))?;
    runtime
        .handler
        .execute::<Workflow>(
            &context(tenant),
            WorkflowId::derive(tenant, "bench-noop").as_uuid(),
            WorkflowCommand::Define {
                name: "bench-noop".into(),
                definition,
                at: Utc::now(),
            },
            &(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Warm-up, not counted.
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(
            runtime
                .start_run(tenant, "bench-noop", 1, json!({}))
                .await?,
        );
    }
    runtime.wait(tenant, &warm, Duration::from_secs(60)).await?;

    let began = Utc::now();
    let clock = Instant::now();
    let mut runs = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        runs.push(
            runtime
                .start_run(tenant, "bench-noop", 1, json!({}))
                .await?,
        );
    }
    runtime
        .wait(tenant, &runs, Duration::from_secs(600))
        .await?;
    let waited = clock.elapsed();

    let mut latencies = Vec::new();
    let mut last = began;
    let mut checkpoints = 0usize;
    for run in &runs {
        let stream = runtime
            .store
            .load_stream(tenant, AgentRun::TYPE, run.as_uuid())
            .await?;
        let mut starts: Vec<DateTime<Utc>> = Vec::new();
        let mut finished = None;
        for event in &stream.events {
            match event.decode::<AgentRunEvent>()? {
                AgentRunEvent::AgentStepStarted { at, .. } => starts.push(at),
                AgentRunEvent::AgentRunCompleted { at, .. } => finished = Some(at),
                AgentRunEvent::AgentCheckpointSaved { .. } => checkpoints += 1,
                _ => {}
            }
        }
        let finished = finished.context("a run without its completion")?;
        last = last.max(finished);
        starts.push(finished);
        for pair in starts.windows(2) {
            latencies.push((pair[1] - pair[0]).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let seconds = (last - began).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let total_steps = args.runs * args.steps;
    println!(
        "{}",
        json!({
            "system": "plasma",
            "runs": args.runs,
            "steps": args.steps,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "steps_per_s": ((total_steps as f64 / seconds) * 10.0).round() / 10.0,
            "p50_step_ms": (nearest_rank(&latencies, 0.50) * 100.0).round() / 100.0,
            "p99_step_ms": (nearest_rank(&latencies, 0.99) * 100.0).round() / 100.0,
            "checkpoints": checkpoints,
            "concurrency": args.concurrency,
            "observed_seconds": (waited.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}

async fn drafting(
    runtime: &Runtime,
    tenant: &TenantId,
    drafts: usize,
    generator: &dyn TextGenerator,
) -> Result<()> {
    let brand = BrandId::from_uuid(Uuid::now_v7());
    runtime
        .handler
        .execute::<Brand>(
            &context(tenant),
            brand.as_uuid(),
            BrandCommand::Register {
                name: "Acme Skates".into(),
                keywords: vec!["skates".into()],
                competitors: vec![],
                voice: VoiceGuidelines {
                    tone: "warm, plain".into(),
                    banned_words: vec!["cheap".into()],
                    required_phrases: vec!["Skate safe".into()],
                },
                at: Utc::now(),
            },
            &(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = Instant::now();
    let mut runs = Vec::with_capacity(drafts);
    for i in 0..drafts {
        let draft = DraftId::from_uuid(Uuid::now_v7());
        runtime
            .handler
            .execute::<Draft>(
                &context(tenant),
                draft.as_uuid(),
                DraftCommand::Request {
                    brand_id: brand,
                    brief: format!(
                        "Our new wheels number {i} grip wet ramps and cheap bearings last"
                    ),
                    channel: Channel::ALL[i % Channel::ALL.len()],
                    at: Utc::now(),
                },
                &DraftServices::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let run = runtime
            .start_run(
                tenant,
                builtin::DRAFT_WORKFLOW,
                builtin::DRAFT_WORKFLOW_VERSION,
                json!({"draft_id": draft, "publish_at": null}),
            )
            .await?;
        runs.push(run);
    }
    // The editor: approves each draft the moment it asks.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut pending = runs.clone();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("{} drafting runs did not finish", pending.len());
        }
        let mut still = Vec::new();
        for run in pending {
            let state = runtime.status(tenant, run).await?;
            match state.status {
                Some(AgentRunStatus::Completed) => continue,
                Some(AgentRunStatus::Running) => {}
                other => bail!("drafting run {run} ended {other:?}: {:?}", state.last_error),
            }
            if state.step.as_ref().is_some_and(|s| s.kind == "input") {
                runtime
                    .handler
                    .execute::<AgentRun>(
                        &context(tenant),
                        run.as_uuid(),
                        AgentRunCommand::GiveInput {
                            value: json!({"approved": true, "approver": "bench"}),
                            at: Utc::now(),
                        },
                        &(),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            still.push(run);
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = clock.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "system": "plasma-drafting",
            "drafts": drafts,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "drafts_per_s": ((drafts as f64 / seconds) * 10.0).round() / 10.0,
            "provider": generator.describe().0,
            "model": generator.describe().1,
        })
    );
    Ok(())
}
