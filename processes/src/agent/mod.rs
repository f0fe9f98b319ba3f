//! The agent worker: executes runs of defined workflows durably.
//!
//! Two halves share one table, `agent_schedule` (tenant, run, when it is next due, who holds
//! its lease):
//! - as a [`Process`] it follows the agent context and keeps the table in step with the runs'
//!   events, inside its checkpoint's transaction (a run becomes due when it starts, when a
//!   step ends, when its input arrives, when its wait or backoff ends; when it finishes it
//!   becomes due again at the end of its checkpoint retention, and leaves the table once
//!   pruned);
//! - its executor ([`AgentWorker::execute`]) claims due runs under a lease (one executor per
//!   run at a time, across any number of workers: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the
//!   single writer on SQLite), renews its leases while it works, and drives each claimed run
//!   with [`plan`]: it records a step's intent (kind, rendered input, attempt) before the
//!   effect and its output after, with a checkpoint per step.
//!
//! A worker killed mid-step leaves the step started and unfinished; whoever claims the run
//! next performs it again under the same idempotency key (derived from the run, its resume
//! epoch, the step and the map element), so commands it issues are answered from the event
//! store's record and HTTP receivers see the same `Idempotency-Key`. Completed steps are never
//! performed again: their outputs are in the run's events.
//!
//! Retention: a finished run's checkpoints but the latest are pruned once
//! `checkpoint_retention` has passed (an `AgentCheckpointsPruned` event), and the event store
//! then drops the pruned states from the saves in the run's history, so a finished run costs
//! its steps' outputs and one state rather than the sum of a state per step.

pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use plasma_commands::{CommandContext, CommandError, CommandHandler, RecordedEvent};
use plasma_domain::agent::{
    builtin, plan, scrubbed_saves, AgentRun, AgentRunCommand, AgentRunError, AgentRunEvent, Plan,
    StepAction, StepInProgress, Workflow, WorkflowDefinition,
};
use plasma_domain::ids::{CommandId, RunId, WorkflowId};
use plasma_domain::{AggregateId as _, Context, TenantId};
use plasma_projections::{on_tx, ProjectionError, ReadModels, ReadStore, ReadTx};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{Process, ProcessError};
pub use tools::{prompt_sha256, StepRef, ToolBox, ToolCall, ToolError};

/// Its checkpoint's name (and consumer group's).
pub const NAME: &str = "agent_schedule";

/// Steps performed, by `kind` and `outcome` (`completed`, `failed`, `retried`).
pub const METRIC_STEPS: &str = "plasma_agent_steps_total";
/// How long one step took, from its start to its recorded end, by `kind`.
pub const METRIC_STEP_SECONDS: &str = "plasma_agent_step_duration_seconds";
/// Runs finished, by `status`.
pub const METRIC_RUNS: &str = "plasma_agent_runs_finished_total";
/// Bytes of checkpoint state retention dropped from finished runs' histories.
pub const METRIC_PRUNED_BYTES: &str = "plasma_agent_pruned_bytes_total";

pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_STEPS,
        "Agent workflow steps ended, by kind and outcome"
    );
    metrics::describe_histogram!(
        METRIC_STEP_SECONDS,
        metrics::Unit::Seconds,
        "Agent workflow step duration, start to recorded end"
    );
    metrics::describe_counter!(METRIC_RUNS, "Agent runs finished, by status");
    metrics::describe_counter!(
        METRIC_PRUNED_BYTES,
        metrics::Unit::Bytes,
        "Checkpoint state dropped from finished agent runs' histories by retention"
    );
}

const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x7a3f_52c1_0e94_4d6b_a1c8_3b5e_9f20_d647);

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS agent_schedule (
        tenant_id   TEXT   NOT NULL,
        run_id      {uuid} NOT NULL,
        due_at      BIGINT,
        position    BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT,
        PRIMARY KEY (tenant_id, run_id)
    )",
    "CREATE INDEX IF NOT EXISTS agent_schedule_due ON agent_schedule (due_at)",
];

/// Tunables of the agent worker.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Runs driven at once by one worker.
    pub concurrency: usize,
    /// How long a claim lasts unless renewed; a killed worker's runs wait this long.
    pub lease: Duration,
    /// How often the schedule is looked at when nothing is due.
    pub poll: Duration,
    /// A step's time limit when its definition gives none.
    pub step_timeout: Duration,
    /// How long after a run finishes its older checkpoints are pruned; `None`: never.
    pub checkpoint_retention: Option<Duration>,
    /// The latest checkpoints pruning leaves.
    pub checkpoints_kept: u32,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            concurrency: 32,
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(50),
            step_timeout: Duration::from_secs(30),
            checkpoint_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            checkpoints_kept: 1,
        }
    }
}

/// Where a driven run stands when its executor lets go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Finished, paused, gone: out of the schedule.
    Done,
    /// Due again at this time.
    At(DateTime<Utc>),
    /// Waiting for input: not due until it arrives.
    Waiting,
    /// The worker is stopping: due as it was, for whoever comes next.
    Stopped,
}

type Key = (String, Uuid);

#[derive(Debug)]
pub struct AgentWorker {
    handler: CommandHandler,
    read: ReadModels,
    tools: ToolBox,
    options: AgentOptions,
    /// This worker's lease owner id.
    owner: String,
    /// Definitions never change once recorded: (tenant, name, version) → definition.
    definitions: Mutex<HashMap<(String, String, u32), Arc<WorkflowDefinition>>>,
}

impl AgentWorker {
    pub fn new(
        handler: CommandHandler,
        read: ReadModels,
        tools: ToolBox,
        options: AgentOptions,
    ) -> Self {
        Self {
            handler,
            read,
            tools,
            options,
            owner: Uuid::new_v4().to_string(),
            definitions: Mutex::new(HashMap::new()),
        }
    }

    fn store(&self) -> &ReadStore {
        self.read.store()
    }

    /// The definition a run executes: a built-in, or the tenant's recorded version.
    async fn definition(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
    ) -> Result<Option<Arc<WorkflowDefinition>>, ProcessError> {
        let key = (tenant.as_str().to_owned(), name.to_owned(), version);
        if let Some(found) = self.cached(&key) {
            return Ok(Some(found));
        }
        let definition = match builtin::definition(name, version) {
            Some(definition) => Some(definition),
            None => {
                let id = WorkflowId::derive(tenant, name);
                let context =
                    CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::nil()), None);
                let (workflow, _, _) = self
                    .handler
                    .load::<Workflow>(&context, id.as_uuid())
                    .await?;
                workflow.definition(version)
            }
        };
        let Some(definition) = definition else {
            return Ok(None);
        };
        let definition = Arc::new(definition);
        if let Ok(mut cache) = self.definitions.lock() {
            cache.insert(key, definition.clone());
        }
        Ok(Some(definition))
    }

    fn cached(&self, key: &(String, String, u32)) -> Option<Arc<WorkflowDefinition>> {
        self.definitions
            .lock()
            .ok()
            .and_then(|c| c.get(key).cloned())
    }

    /// Claims and drives due runs until `stop`; a restart resumes from the schedule.
    pub async fn execute(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProcessError> {
        create_table(self.store()).await?;
        let mut running: JoinSet<(Key, Result<Release, ProcessError>)> = JoinSet::new();
        let mut heartbeat = tokio::time::interval(self.options.lease / 3);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            let free = self.options.concurrency.saturating_sub(running.len());
            let claimed = if free > 0 {
                self.claim(free).await?
            } else {
                Vec::new()
            };
            for (tenant, run) in claimed {
                let worker = self.clone();
                let stop = stop.clone();
                let span =
                    tracing::info_span!("agent.run", plasma.tenant = %tenant, plasma.run.id = %run);
                running.spawn(
                    async move {
                        let outcome = match TenantId::parse(&tenant) {
                            Ok(tenant_id) => worker.drive(&tenant_id, run, stop).await,
                            Err(_) => Ok(Release::Done),
                        };
                        ((tenant, run), outcome)
                    }
                    .instrument(span),
                );
            }
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(((tenant, run), outcome)) = done {
                        let release = match outcome {
                            Ok(release) => release,
                            Err(error) => {
                                tracing::warn!(%error, %tenant, %run, "an agent run stalled; trying again shortly");
                                Release::At(Utc::now() + chrono::Duration::seconds(1))
                            }
                        };
                        self.release(&tenant, run, release).await?;
                    }
                }
                _ = heartbeat.tick() => self.renew().await?,
                _ = tokio::time::sleep(self.options.poll), if free == 0 || running.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        // Abandoning a step mid-way is what a crash does, and is safe; letting go of the
        // leases lets the next worker start at once rather than after they expire.
        running.abort_all();
        while running.join_next().await.is_some() {}
        let sql = "UPDATE agent_schedule SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1";
        let mut tx = self.store().begin().await?;
        on_tx!(&mut tx, |c| sqlx::query(sql)
            .bind(&self.owner)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db("releasing agent leases")))?;
        tx.commit().await?;
        Ok(())
    }

    /// Leases up to `limit` due runs nobody holds.
    async fn claim(&self, limit: usize) -> Result<Vec<Key>, ProcessError> {
        let now = Utc::now().timestamp_micros();
        let until = now + self.options.lease.as_micros() as i64;
        let mut tx = self.store().begin().await?;
        let lock = if tx.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE agent_schedule SET lease_owner = $1, lease_until = $2 \
             WHERE (tenant_id, run_id) IN (SELECT tenant_id, run_id FROM agent_schedule \
             WHERE due_at IS NOT NULL AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY due_at LIMIT $4{lock}) RETURNING tenant_id, run_id"
        );
        let rows: Vec<(String, Uuid)> = on_tx!(&mut tx, |c| sqlx::query_as(&sql)
            .bind(&self.owner)
            .bind(until)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(c)
            .await
            .map_err(ProjectionError::db("claiming agent runs")))?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Extends every lease this worker holds.
    async fn renew(&self) -> Result<(), ProcessError> {
        let until = Utc::now().timestamp_micros() + self.options.lease.as_micros() as i64;
        let sql = "UPDATE agent_schedule SET lease_until = $1 WHERE lease_owner = $2";
        let mut tx = self.store().begin().await?;
        on_tx!(&mut tx, |c| sqlx::query(sql)
            .bind(until)
            .bind(&self.owner)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db("renewing agent leases")))?;
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, tenant: &str, run: Uuid, release: Release) -> Result<(), ProcessError> {
        let mut tx = self.store().begin().await?;
        let owner = &self.owner;
        let result = match release {
            Release::Done => {
                let sql = "DELETE FROM agent_schedule WHERE tenant_id = $1 AND run_id = $2 AND lease_owner = $3";
                on_tx!(&mut tx, |c| sqlx::query(sql)
                    .bind(tenant)
                    .bind(run)
                    .bind(owner)
                    .execute(c)
                    .await
                    .map(|_| ()))
            }
            Release::Stopped => {
                let sql = "UPDATE agent_schedule SET lease_owner = NULL, lease_until = NULL \
                           WHERE tenant_id = $1 AND run_id = $2 AND lease_owner = $3";
                on_tx!(&mut tx, |c| sqlx::query(sql)
                    .bind(tenant)
                    .bind(run)
                    .bind(owner)
                    .execute(c)
                    .await
                    .map(|_| ()))
            }
            Release::At(_) | Release::Waiting => {
                let due = match release {
                    Release::At(at) => Some(at.timestamp_micros()),
                    _ => None,
                };
                let sql = "UPDATE agent_schedule SET due_at = $4, lease_owner = NULL, lease_until = NULL \
                           WHERE tenant_id = $1 AND run_id = $2 AND lease_owner = $3";
                on_tx!(&mut tx, |c| sqlx::query(sql)
                    .bind(tenant)
                    .bind(run)
                    .bind(owner)
                    .bind(due)
                    .execute(c)
                    .await
                    .map(|_| ()))
            }
        };
        result.map_err(ProjectionError::db("releasing an agent run"))?;
        tx.commit().await?;
        Ok(())
    }

    fn command_id(run: Uuid, what: &str) -> CommandId {
        CommandId::from_uuid(Uuid::new_v5(
            &COMMAND_NAMESPACE,
            format!("{run}/{what}").as_bytes(),
        ))
    }

    /// Drives one claimed run until it finishes or has to wait.
    async fn drive(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Release, ProcessError> {
        let id = run_id.to_string();
        loop {
            if *stop.borrow() {
                return Ok(Release::Stopped);
            }
            let load = CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::nil()), None);
            let (run, version, _) = self.handler.load::<AgentRun>(&load, run_id).await?;
            if run.finished_at.is_some() {
                return self.retire(tenant, run_id, &run, version).await;
            }
            let Some(version_of_workflow) = run.workflow_version else {
                return Ok(Release::Done);
            };
            let Some(definition) = self
                .definition(tenant, &run.workflow, version_of_workflow)
                .await?
            else {
                let error = format!(
                    "workflow `{}` has no version {version_of_workflow}",
                    run.workflow
                );
                self.record(
                    tenant,
                    run_id,
                    version,
                    "missing",
                    AgentRunCommand::Fail {
                        error,
                        at: Utc::now(),
                    },
                )
                .await?;
                continue;
            };
            match plan(&run, &definition, &id, Utc::now()) {
                Plan::Idle => return Ok(Release::Done),
                Plan::Sleep(until) => return Ok(Release::At(until)),
                Plan::AwaitInput => return Ok(Release::Waiting),
                Plan::Record(command) => {
                    let finished = matches!(
                        command,
                        AgentRunCommand::Complete { .. } | AgentRunCommand::Fail { .. }
                    );
                    let status = match &command {
                        AgentRunCommand::Complete { .. } => "completed",
                        _ => "failed",
                    };
                    if let AgentRunCommand::FinishStep { .. } = &command {
                        if let Some(step) = &run.step {
                            observe(step, "completed");
                        }
                    }
                    self.record(tenant, run_id, version, "plan", command)
                        .await?;
                    if finished {
                        metrics::counter!(METRIC_RUNS, "status" => status).increment(1);
                    }
                }
                Plan::PerformPure {
                    index,
                    name,
                    tool,
                    input,
                } => {
                    let limit = definition
                        .steps
                        .get(index as usize)
                        .and_then(|d| d.timeout_ms)
                        .map_or(self.options.step_timeout, Duration::from_millis);
                    let started = Utc::now();
                    let call = ToolCall {
                        tenant,
                        key: Self::effect_key(run_id, run.epoch, index, None),
                        at: started,
                        correlation: run_id,
                        input: &input,
                        streams_to: None,
                    };
                    let span = tracing::info_span!("agent.step", plasma.step = %name, plasma.step.kind = "tool");
                    let effect = async { Ok(self.tools.call(&tool, call).await) };
                    let Some(outcome) = within(limit, &mut stop, effect.instrument(span)).await
                    else {
                        return Ok(Release::Stopped);
                    };
                    let outcome = outcome?;
                    let now = Utc::now();
                    match outcome {
                        Ok(output) => {
                            metrics::counter!(METRIC_STEPS, "kind" => "tool", "outcome" => "completed").increment(1);
                            let seconds =
                                (now - started).num_microseconds().unwrap_or(0) as f64 / 1e6;
                            metrics::histogram!(METRIC_STEP_SECONDS, "kind" => "tool")
                                .record(seconds.max(0.0));
                            let command = AgentRunCommand::RunPureStep {
                                index,
                                name,
                                kind: "tool".to_owned(),
                                input,
                                output,
                                next: Some(index + 1),
                                at: now,
                            };
                            self.record(tenant, run_id, version, "pure", command)
                                .await?;
                        }
                        Err(error) => {
                            // Recorded as an ordinary attempt: its start, then its failure.
                            let begin = AgentRunCommand::BeginStep {
                                index,
                                name,
                                kind: "tool".to_owned(),
                                input,
                                wake_at: None,
                                at: started,
                            };
                            self.record(tenant, run_id, version, "pure-begin", begin)
                                .await?;
                            let (_, version, _) =
                                self.handler.load::<AgentRun>(&load, run_id).await?;
                            let transient = matches!(error, ToolError::Transient(_));
                            let backoff = definition
                                .steps
                                .get(index as usize)
                                .map(|d| d.retry.backoff(1))
                                .unwrap_or_default();
                            let command = AgentRunCommand::FailAttempt {
                                index,
                                error: error.to_string(),
                                transient,
                                retry_at: Some(
                                    now + chrono::Duration::from_std(backoff).unwrap_or_default(),
                                ),
                                at: now,
                            };
                            self.record(tenant, run_id, version, "pure-fail", command)
                                .await?;
                        }
                    }
                }
                Plan::Perform(step) => {
                    let Some(defined) = definition.steps.get(step.index as usize) else {
                        continue;
                    };
                    let limit = defined
                        .timeout_ms
                        .map_or(self.options.step_timeout, Duration::from_millis);
                    let span = tracing::info_span!("agent.step", plasma.step = %step.name, plasma.step.kind = %step.kind, plasma.step.attempt = step.attempt);
                    let effect = self.perform(tenant, run_id, &run, &step, &defined.action);
                    let Some(outcome) = within(limit, &mut stop, effect.instrument(span)).await
                    else {
                        return Ok(Release::Stopped);
                    };
                    let outcome = outcome?;
                    let now = Utc::now();
                    let command = match outcome {
                        Ok(output) => {
                            observe(&step, "completed");
                            // A run that continued as a new one ends here.
                            let next = match defined.action {
                                StepAction::ContinueAsNew { .. } => None,
                                _ => Some(step.index + 1),
                            };
                            AgentRunCommand::FinishStep {
                                index: step.index,
                                output,
                                next,
                                at: now,
                            }
                        }
                        Err(error) => {
                            let transient = matches!(error, ToolError::Transient(_));
                            let retry_at = now
                                + chrono::Duration::from_std(defined.retry.backoff(step.attempt))
                                    .unwrap_or_default();
                            observe(
                                &step,
                                if transient && step.attempt < defined.retry.max_attempts {
                                    "retried"
                                } else {
                                    "failed"
                                },
                            );
                            tracing::warn!(step = %step.name, attempt = step.attempt, %error, transient, "an agent step failed");
                            AgentRunCommand::FailAttempt {
                                index: step.index,
                                error: error.to_string(),
                                transient,
                                retry_at: Some(retry_at),
                                at: now,
                            }
                        }
                    };
                    // Decided from a later version than `version` when a map recorded items.
                    let (_, version, _) = self.handler.load::<AgentRun>(&load, run_id).await?;
                    self.record(tenant, run_id, version, "outcome", command)
                        .await?;
                }
            }
        }
    }

    /// Records `command`, decided from the run at `version`; the id is derived from both, so a
    /// repeat of the same decision is answered from the store. A refusal (another executor or
    /// a person changed the run meanwhile) is not an error: the next plan reads the new state.
    async fn record(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        version: i64,
        what: &str,
        command: AgentRunCommand,
    ) -> Result<(), ProcessError> {
        let context = CommandContext::new(
            tenant.clone(),
            Self::command_id(run_id, &format!("{version}/{what}")),
            None,
        );
        match self
            .handler
            .execute::<AgentRun>(&context, run_id, command, &())
            .await
        {
            Ok(_) => Ok(()),
            Err(CommandError::Store(err)) => Err(err.into()),
            // The decision itself cannot be recorded (an output or input over the size bound):
            // retrying would decide the same, so the run fails, saying why.
            Err(CommandError::Domain(
                err @ (AgentRunError::JsonTooLarge { .. } | AgentRunError::Invalid(_)),
            )) => {
                tracing::warn!(error = %err, "an agent run's step outcome was refused; failing the run");
                let fail = AgentRunCommand::Fail {
                    error: format!("the step's outcome could not be recorded: {err}"),
                    at: Utc::now(),
                };
                let context = CommandContext::new(
                    tenant.clone(),
                    Self::command_id(run_id, &format!("{version}/refused")),
                    None,
                );
                match self
                    .handler
                    .execute::<AgentRun>(&context, run_id, fail, &())
                    .await
                {
                    Err(CommandError::Store(err)) => Err(err.into()),
                    _ => Ok(()),
                }
            }
            Err(other) => {
                tracing::debug!(error = %other, "an agent run changed under its executor; planning again");
                Ok(())
            }
        }
    }

    /// The idempotency key of a step's effect (of one element of a map).
    fn effect_key(run_id: Uuid, epoch: u32, index: u32, item: Option<usize>) -> Uuid {
        let what = match item {
            Some(i) => format!("{run_id}/{epoch}/{index}/{i}"),
            None => format!("{run_id}/{epoch}/{index}"),
        };
        Uuid::new_v5(&COMMAND_NAMESPACE, what.as_bytes())
    }

    async fn perform(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        run: &AgentRun,
        step: &StepInProgress,
        action: &StepAction,
    ) -> Result<Result<Value, ToolError>, ProcessError> {
        let call = ToolCall {
            tenant,
            key: Self::effect_key(run_id, run.epoch, step.index, None),
            at: step.started_at,
            correlation: run_id,
            input: &step.input,
            streams_to: Some(StepRef {
                run_id,
                index: step.index,
            }),
        };
        Ok(match action {
            StepAction::Tool { tool, .. } => self.tools.call(tool, call).await,
            StepAction::Llm { .. } => self.tools.call("llm.complete", call).await,
            StepAction::ContinueAsNew { .. } => {
                self.continue_as_new(tenant, run_id, run, step).await?
            }
            StepAction::Map {
                tool,
                input,
                concurrency,
                ..
            } => {
                self.map(
                    tenant,
                    run_id,
                    run,
                    step,
                    tool,
                    input,
                    concurrency.unwrap_or(8) as usize,
                )
                .await?
            }
            _ => Err(ToolError::Terminal(format!(
                "a {} step has no effect",
                step.kind
            ))),
        })
    }

    /// Starts the run a `continue_as_new` step continues as: the same workflow version with the
    /// recorded input, under an id derived from the step, so a retry after a crash finds the
    /// run it already started instead of starting another.
    async fn continue_as_new(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        run: &AgentRun,
        step: &StepInProgress,
    ) -> Result<Result<Value, ToolError>, ProcessError> {
        let Some(version) = run.workflow_version else {
            return Ok(Err(ToolError::Terminal("the run is not executed".into())));
        };
        let parent = RunId::from_uuid(run_id);
        let next = RunId::continuing(parent, run.epoch, step.index);
        let command = AgentRunCommand::StartManaged {
            workflow: run.workflow.clone(),
            version,
            input: step.input.get("input").cloned().unwrap_or(Value::Null),
            fork: None,
            continued_from: Some(parent),
            at: step.started_at,
        };
        let context = CommandContext::new(
            tenant.clone(),
            CommandId::from_uuid(Self::effect_key(run_id, run.epoch, step.index, None)),
            None,
        );
        match self
            .handler
            .execute::<AgentRun>(&context, next.as_uuid(), command, &())
            .await
        {
            Ok(_) | Err(CommandError::Domain(AgentRunError::AlreadyStarted)) => {
                Ok(Ok(json!({ "run_id": next.as_uuid() })))
            }
            Err(CommandError::Domain(err)) => Ok(Err(ToolError::Terminal(format!(
                "the next run could not start: {err}"
            )))),
            Err(CommandError::Store(err)) => Err(err.into()),
            Err(other) => Ok(Err(ToolError::Transient(other.to_string()))),
        }
    }

    /// Retention for a finished run: once `checkpoint_retention` has passed since it finished,
    /// records the pruning of all but its latest checkpoints, then has the event store drop the
    /// states nothing can reach any more. Both steps are idempotent, so a worker killed between
    /// them finishes the job when the run is claimed again (its schedule row stays until then).
    async fn retire(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        run: &AgentRun,
        version: i64,
    ) -> Result<Release, ProcessError> {
        let (Some(keep_for), Some(finished)) = (self.options.checkpoint_retention, run.finished_at)
        else {
            return Ok(Release::Done);
        };
        let due = finished + chrono::Duration::from_std(keep_for).unwrap_or(chrono::Duration::MAX);
        if due > Utc::now() {
            return Ok(Release::At(due));
        }
        let prune = AgentRunCommand::PruneCheckpoints {
            keep: self.options.checkpoints_kept.max(1),
            at: Utc::now(),
        };
        self.record(tenant, run_id, version, "prune", prune).await?;
        let store = self.handler.store();
        let stream = store.load_stream(tenant, AgentRun::TYPE, run_id).await?;
        let mut events = Vec::with_capacity(stream.events.len());
        for event in &stream.events {
            events.push((event.sequence, event.decode::<AgentRunEvent>()?));
        }
        let old_len = |sequence: i64| {
            stream
                .events
                .iter()
                .find(|e| e.sequence == sequence)
                .map_or(0, |e| e.payload.len())
        };
        let mut bytes = 0u64;
        let scrubbed: Vec<(i64, String)> = scrubbed_saves(&events)
            .into_iter()
            .filter_map(|(sequence, event)| {
                let payload = serde_json::to_string(&event).ok()?;
                bytes += old_len(sequence).saturating_sub(payload.len()) as u64;
                Some((sequence, payload))
            })
            .collect();
        if !scrubbed.is_empty() {
            store
                .rewrite_payloads(tenant, AgentRun::TYPE, run_id, &scrubbed)
                .await?;
            metrics::counter!(METRIC_PRUNED_BYTES).increment(bytes);
            tracing::info!(run = %run_id, saves = scrubbed.len(), bytes, "pruned a finished run's checkpoints");
        }
        Ok(Release::Done)
    }

    /// Runs a map's elements that have not succeeded yet, `concurrency` at a time, recording
    /// each success as it arrives (a pending write), then gives every element's output in order.
    #[allow(clippy::too_many_arguments)]
    async fn map(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        run: &AgentRun,
        step: &StepInProgress,
        tool: &str,
        template: &Value,
        concurrency: usize,
    ) -> Result<Result<Value, ToolError>, ProcessError> {
        let items = step
            .input
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let id = run_id.to_string();
        let mut done: BTreeMap<usize, Value> = run
            .items
            .iter()
            .map(|(k, v)| (*k as usize, v.clone()))
            .collect();
        let pending: Vec<usize> = (0..items.len()).filter(|i| !done.contains_key(i)).collect();
        let mut failures: Vec<ToolError> = Vec::new();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut calls = JoinSet::new();
        for i in pending {
            let scope = plasma_domain::agent::Scope {
                input: &run.input,
                outputs: &run.state.outputs,
                run_id: &id,
                item: Some((&items[i], i)),
            };
            let input = scope.render(template);
            let key = Self::effect_key(run_id, run.epoch, step.index, Some(i));
            let tools = self.tools.clone();
            let (tenant, tool, at) = (tenant.clone(), tool.to_owned(), step.started_at);
            let semaphore = semaphore.clone();
            calls.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let call = ToolCall {
                    tenant: &tenant,
                    key,
                    at,
                    correlation: run_id,
                    input: &input,
                    streams_to: None,
                };
                (i, tools.call(&tool, call).await)
            });
        }
        let load = CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::nil()), None);
        while let Some(joined) = calls.join_next().await {
            let Ok((i, result)) = joined else { continue };
            match result {
                Ok(output) => {
                    let (_, version, _) = self.handler.load::<AgentRun>(&load, run_id).await?;
                    let command = AgentRunCommand::RecordItem {
                        index: step.index,
                        item: i as u32,
                        output: output.clone(),
                        at: Utc::now(),
                    };
                    self.record(
                        tenant,
                        run_id,
                        version,
                        &format!("item/{}/{}/{i}", run.epoch, step.index),
                        command,
                    )
                    .await?;
                    done.insert(i, output);
                }
                Err(error) => failures.push(error),
            }
        }
        if failures.is_empty() {
            return Ok(Ok(Value::Array(done.into_values().collect())));
        }
        let transient = failures
            .iter()
            .all(|f| matches!(f, ToolError::Transient(_)));
        let message = format!(
            "{} of {} elements failed; the first: {}",
            failures.len(),
            items.len(),
            failures[0]
        );
        Ok(Err(if transient {
            ToolError::Transient(message)
        } else {
            ToolError::Terminal(message)
        }))
    }
}

/// A step's effect under its time limit (running out of time is a transient failure), or
/// `None` when the worker stops first: the step is left as a crash would leave it.
async fn within<T>(
    limit: Duration,
    stop: &mut watch::Receiver<bool>,
    effect: impl std::future::Future<Output = Result<Result<T, ToolError>, ProcessError>>,
) -> Option<Result<Result<T, ToolError>, ProcessError>> {
    tokio::select! {
        performed = tokio::time::timeout(limit, effect) => Some(performed.unwrap_or_else(|_| {
            Ok(Err(ToolError::Transient(format!(
                "timed out after {} ms",
                limit.as_millis()
            ))))
        })),
        _ = stop.changed() => None,
    }
}

fn observe(step: &StepInProgress, outcome: &'static str) {
    metrics::counter!(METRIC_STEPS, "kind" => step.kind.clone(), "outcome" => outcome).increment(1);
    let seconds = (Utc::now() - step.started_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    metrics::histogram!(METRIC_STEP_SECONDS, "kind" => step.kind.clone()).record(seconds.max(0.0));
}

async fn create_table(store: &ReadStore) -> Result<(), ProcessError> {
    let mut tx = store.begin().await?;
    create_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn create_in(tx: &mut ReadTx) -> Result<(), ProcessError> {
    if tx.is_postgres() {
        tx.execute(
            "SELECT pg_advisory_xact_lock(7234502)",
            "serialising agent DDL",
        )
        .await?;
    }
    let uuid = if tx.is_postgres() { "uuid" } else { "BLOB" };
    for ddl in DDL {
        tx.execute(&ddl.replace("{uuid}", uuid), "creating the agent schedule")
            .await?;
    }
    Ok(())
}

/// What one batch of events does to one run's row.
#[derive(Debug, Clone, Copy)]
struct Change {
    /// The batch saw the run start (or resume): the row may have to be created.
    create: bool,
    /// `None`: leave the schedule; `Some(None)`: waiting for input; `Some(Some(t))`: due at t.
    due: Option<Option<i64>>,
    position: i64,
}

#[async_trait]
impl Process for AgentWorker {
    fn name(&self) -> &str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Agent]
    }

    fn keeps_state(&self) -> bool {
        true
    }

    async fn prepare(&self, tx: &mut ReadTx) -> Result<(), ProcessError> {
        create_in(tx).await
    }

    async fn handle(&self, _events: &[RecordedEvent]) -> Result<(), ProcessError> {
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn handle_in(
        &self,
        tx: &mut ReadTx,
        events: &[RecordedEvent],
    ) -> Result<(), ProcessError> {
        let mut changes: BTreeMap<Key, Change> = BTreeMap::new();
        for event in events.iter().filter(|e| e.aggregate_type == AgentRun::TYPE) {
            let micros = |t: DateTime<Utc>| Some(Some(t.timestamp_micros()));
            let (create, due) = match event.decode::<AgentRunEvent>()? {
                AgentRunEvent::AgentRunStarted {
                    workflow_version: Some(_),
                    at,
                    ..
                } => (true, micros(at)),
                AgentRunEvent::AgentRunStarted { .. } => continue,
                AgentRunEvent::AgentStepStarted {
                    kind, at, wake_at, ..
                } => match kind.as_deref() {
                    Some("input") => (false, Some(None)),
                    Some("wait") => (false, micros(wake_at.unwrap_or(at))),
                    _ => (false, micros(at)),
                },
                AgentRunEvent::AgentStepFailed { retry_at, at, .. } => {
                    (false, micros(retry_at.unwrap_or(at)))
                }
                AgentRunEvent::AgentStepCompleted { at, .. }
                | AgentRunEvent::AgentStepItemCompleted { at, .. }
                | AgentRunEvent::AgentCheckpointSaved { at, .. } => (false, micros(at)),
                AgentRunEvent::AgentRunResumed { at, .. } => (true, micros(at)),
                AgentRunEvent::AgentRunPaused { .. } => (false, None),
                // A finished run stays scheduled for its retention (caller-driven runs too).
                AgentRunEvent::AgentRunCompleted { at, .. }
                | AgentRunEvent::AgentRunFailed { at, .. }
                | AgentRunEvent::AgentRunCancelled { at, .. } => {
                    match self.options.checkpoint_retention {
                        Some(keep_for) => (
                            true,
                            micros(
                                at + chrono::Duration::from_std(keep_for)
                                    .unwrap_or(chrono::Duration::MAX),
                            ),
                        ),
                        None => (false, None),
                    }
                }
                // Retention's own record: the executor that pruned lets go of the row itself,
                // after the event store dropped the states.
                AgentRunEvent::AgentCheckpointsPruned { .. } => continue,
                // Progress inside a step in progress: nothing to schedule.
                AgentRunEvent::AgentStepOutputStreamed { .. } => continue,
            };
            let key = (event.tenant.as_str().to_owned(), event.aggregate_id);
            let change = changes.entry(key).or_insert(Change {
                create: false,
                due: None,
                position: 0,
            });
            change.create |= create;
            if due.is_none() {
                // Finished: out of the schedule, whatever came before in the batch.
                change.create = false;
            }
            change.due = due;
            change.position = event.position;
        }
        for ((tenant, run), change) in changes {
            let position = change.position;
            let result = match change.due {
                None => {
                    let sql = "DELETE FROM agent_schedule WHERE tenant_id = $1 AND run_id = $2 AND position < $3";
                    on_tx!(tx, |c| sqlx::query(sql)
                        .bind(&tenant)
                        .bind(run)
                        .bind(position)
                        .execute(c)
                        .await
                        .map(|_| ()))
                }
                Some(due) => {
                    let sql = if change.create {
                        "INSERT INTO agent_schedule (tenant_id, run_id, position, due_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (tenant_id, run_id) DO UPDATE SET due_at = excluded.due_at, position = excluded.position \
                         WHERE agent_schedule.position < excluded.position"
                    } else {
                        "UPDATE agent_schedule SET due_at = $4, position = $3 \
                         WHERE tenant_id = $1 AND run_id = $2 AND position < $3"
                    };
                    on_tx!(tx, |c| sqlx::query(sql)
                        .bind(&tenant)
                        .bind(run)
                        .bind(position)
                        .bind(due)
                        .execute(c)
                        .await
                        .map(|_| ()))
                }
            };
            result.map_err(ProjectionError::db("scheduling agent runs"))?;
        }
        Ok(())
    }
}
