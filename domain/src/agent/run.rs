//! The AgentRun aggregate: one execution of an agent workflow.
//!
//! A run is `running` from its start. While running, steps start and end one at a time (a step
//! ends by completing or failing, and must be ended under the index it started with; step
//! indexes are otherwise free, so a runner may retry a step or jump back after a resume).
//! A failed step does not fail the run: the runner decides whether to retry, pause or fail it.
//! Checkpoints are saved while running; a name is a slot, so saving under an existing name
//! replaces that checkpoint and makes it the latest. A paused run does nothing until it is
//! resumed from a checkpoint (which abandons any step in progress) or failed. A completed or
//! failed run never changes again, except that retention may prune its older checkpoints
//! (all but the latest few), which then can no longer be forked from.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::RunId;
use crate::text::{self, TextError};
use crate::EventName;

/// The most bytes a JSON value (input, output, checkpoint state) may take serialized; larger
/// payloads belong in blob storage, referenced from the value.
pub const MAX_JSON_BYTES: usize = 256 * 1024;
const MAX_WORKFLOW: usize = 200;
const MAX_STEP_NAME: usize = 200;
const MAX_CHECKPOINT_NAME: usize = 200;
const MAX_ERROR: usize = 10_000;
/// Characters in one streamed piece of a step's output.
const MAX_OUTPUT_CHUNK: usize = 16_384;
const MAX_REASON: usize = 1000;
// The aggregate keeps every checkpoint's state to answer a resume; this bounds its size.
const MAX_CHECKPOINTS: usize = 100;

/// Which checkpoint a paused run resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeFrom {
    /// The most recently saved checkpoint.
    Latest,
    /// The checkpoint saved under this name.
    Named(String),
}

/// Where a run stands; read models group runs by it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentRunStatus {
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl AgentRunStatus {
    pub const ALL: [Self; 5] = [
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl std::fmt::Display for AgentRunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A saved checkpoint, as the aggregate keeps it to answer a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub step_index: u32,
    pub state: Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentRunCommand {
    Start {
        workflow: String,
        input: Value,
        at: DateTime<Utc>,
    },
    StartStep {
        index: u32,
        name: String,
        at: DateTime<Utc>,
    },
    CompleteStep {
        index: u32,
        output: Value,
        at: DateTime<Utc>,
    },
    FailStep {
        index: u32,
        error: String,
        at: DateTime<Utc>,
    },
    SaveCheckpoint {
        name: String,
        step_index: u32,
        state: Value,
        at: DateTime<Utc>,
    },
    Pause {
        reason: String,
        at: DateTime<Utc>,
    },
    Resume {
        from: ResumeFrom,
        at: DateTime<Utc>,
    },
    Complete {
        output: Value,
        at: DateTime<Utc>,
    },
    Fail {
        error: String,
        at: DateTime<Utc>,
    },
    /// Starts a run the agent worker executes: `version` of a defined workflow, from the start
    /// or (a fork) from a checkpoint's `state` of another run.
    StartManaged {
        workflow: String,
        version: u32,
        input: Value,
        fork: Option<ForkOrigin>,
        /// The run whose `continue_as_new` step started this one.
        continued_from: Option<RunId>,
        at: DateTime<Utc>,
    },
    /// A step without an effect outside the run (a branch, a read-only tool), recorded whole
    /// once done: its start, its output and a checkpoint, in one append. Running it again after
    /// a crash changes nothing anywhere, so no intent needs recording first.
    RunPureStep {
        index: u32,
        name: String,
        kind: String,
        input: Value,
        output: Value,
        next: Option<u32>,
        at: DateTime<Utc>,
    },
    /// The worker's intent to run a step: its kind and rendered input, recorded before any
    /// effect; `wake_at` for a durable wait.
    BeginStep {
        index: u32,
        name: String,
        kind: String,
        input: Value,
        wake_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The step's output; the run continues at `next` (`None`: finished), and a checkpoint of
    /// the state is saved with the previous checkpoint as its parent.
    FinishStep {
        index: u32,
        output: Value,
        next: Option<u32>,
        at: DateTime<Utc>,
    },
    /// One element of a map step succeeded (a pending write: a retry skips it).
    RecordItem {
        index: u32,
        item: u32,
        output: Value,
        at: DateTime<Utc>,
    },
    /// A piece of the step in progress's output as it is being written (a generation's text,
    /// streamed). Progress only: the step's recorded output is what counts.
    RecordOutput {
        index: u32,
        /// 0, 1, 2, … within the step.
        chunk: u32,
        text: String,
        at: DateTime<Utc>,
    },
    /// An attempt of the step failed; a transient failure is retried at `retry_at`.
    FailAttempt {
        index: u32,
        error: String,
        transient: bool,
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// A person's answer to the input step in progress; it becomes that step's output.
    GiveInput {
        value: Value,
        at: DateTime<Utc>,
    },
    /// Stops the run for good; a step in progress is abandoned.
    Cancel {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Retention: forgets the checkpoints of a finished run but the latest `keep` (at least
    /// one, so the run can still be forked from where it ended). Nothing to prune records
    /// nothing.
    PruneCheckpoints {
        keep: u32,
        at: DateTime<Utc>,
    },
}

/// Where a forked run came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForkOrigin {
    pub run_id: RunId,
    pub checkpoint: String,
    /// The checkpoint's state, which the fork starts from.
    pub state: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentRunEvent {
    AgentRunStarted {
        workflow: String,
        input: Value,
        at: DateTime<Utc>,
        /// The workflow version the agent worker executes; `None` for a run its caller drives.
        #[serde(default)]
        workflow_version: Option<u32>,
        /// A fork's origin: the run and checkpoint it started from.
        #[serde(default)]
        forked_from: Option<RunId>,
        #[serde(default)]
        forked_checkpoint: Option<String>,
        /// The state a fork starts from (`null`: from the first step).
        #[serde(default)]
        state: Value,
        /// The run whose `continue_as_new` step started this one.
        #[serde(default)]
        continued_from: Option<RunId>,
    },
    AgentStepStarted {
        index: u32,
        name: String,
        at: DateTime<Utc>,
        /// For an executed run: the step's kind, its rendered input (the intent, recorded before
        /// the effect), the attempt (1-based) and, for a wait, when it ends.
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        input: Value,
        #[serde(default)]
        attempt: u32,
        #[serde(default)]
        wake_at: Option<DateTime<Utc>>,
    },
    AgentStepCompleted {
        index: u32,
        output: Value,
        at: DateTime<Utc>,
    },
    AgentStepFailed {
        index: u32,
        error: String,
        at: DateTime<Utc>,
        /// Whether a retry may succeed; if so, when it is due.
        #[serde(default)]
        transient: bool,
        #[serde(default)]
        retry_at: Option<DateTime<Utc>>,
    },
    /// Replaces any earlier checkpoint of the same name.
    AgentCheckpointSaved {
        name: String,
        step_index: u32,
        state: Value,
        at: DateTime<Utc>,
        /// The checkpoint this one follows.
        #[serde(default)]
        parent: Option<String>,
    },
    /// One element of the map step in progress succeeded.
    AgentStepItemCompleted {
        index: u32,
        item: u32,
        output: Value,
        at: DateTime<Utc>,
    },
    /// A piece of the step in progress's output, streamed while it is written.
    AgentStepOutputStreamed {
        index: u32,
        chunk: u32,
        text: String,
        at: DateTime<Utc>,
    },
    AgentRunCancelled {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Retention forgot these checkpoints of a finished run: they can no longer be forked
    /// from, and the event store may drop their states.
    AgentCheckpointsPruned {
        names: Vec<String>,
        at: DateTime<Utc>,
    },
    AgentRunPaused {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Carries the checkpoint resumed from, so the runner needs nothing else to continue.
    AgentRunResumed {
        checkpoint: String,
        step_index: u32,
        state: Value,
        at: DateTime<Utc>,
    },
    AgentRunCompleted {
        output: Value,
        at: DateTime<Utc>,
    },
    AgentRunFailed {
        error: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AgentRunEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AgentRunStarted { .. } => "AgentRunStarted",
            Self::AgentStepStarted { .. } => "AgentStepStarted",
            Self::AgentStepCompleted { .. } => "AgentStepCompleted",
            Self::AgentStepFailed { .. } => "AgentStepFailed",
            Self::AgentCheckpointSaved { .. } => "AgentCheckpointSaved",
            Self::AgentRunPaused { .. } => "AgentRunPaused",
            Self::AgentRunResumed { .. } => "AgentRunResumed",
            Self::AgentRunCompleted { .. } => "AgentRunCompleted",
            Self::AgentRunFailed { .. } => "AgentRunFailed",
            Self::AgentStepItemCompleted { .. } => "AgentStepItemCompleted",
            Self::AgentStepOutputStreamed { .. } => "AgentStepOutputStreamed",
            Self::AgentRunCancelled { .. } => "AgentRunCancelled",
            Self::AgentCheckpointsPruned { .. } => "AgentCheckpointsPruned",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for AgentRunEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("AgentRunStarted", 1),
        ("AgentStepStarted", 1),
        ("AgentStepCompleted", 1),
        ("AgentStepFailed", 1),
        ("AgentCheckpointSaved", 1),
        ("AgentRunPaused", 1),
        ("AgentRunResumed", 1),
        ("AgentRunCompleted", 1),
        ("AgentRunFailed", 1),
        ("AgentStepItemCompleted", 1),
        ("AgentStepOutputStreamed", 1),
        ("AgentRunCancelled", 1),
        ("AgentCheckpointsPruned", 1),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRunError {
    #[error("the run is already started")]
    AlreadyStarted,
    #[error("the run does not exist")]
    NotFound,
    #[error("the run is {0} and can no longer change")]
    Finished(AgentRunStatus),
    #[error("the run is paused: resume it first")]
    Paused,
    #[error("the run is not paused")]
    NotPaused,
    #[error("step {index} is still in progress")]
    StepInProgress { index: u32 },
    #[error("no step is in progress")]
    NoStepInProgress,
    #[error("step {expected} is in progress, not step {got}")]
    StepMismatch { expected: u32, got: u32 },
    #[error("the run has no checkpoint to resume from")]
    NoCheckpoint,
    #[error("the run has no checkpoint named `{0}`")]
    CheckpointNotFound(String),
    #[error("the run already has {max} checkpoints: reuse a name")]
    TooManyCheckpoints { max: usize },
    #[error("`{field}` is too large: {len} bytes of JSON, at most {max}")]
    JsonTooLarge {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the run is driven by its caller: only a run of a defined workflow does this")]
    NotManaged,
    #[error("a run of a defined workflow is driven by the agent worker, not step by step")]
    Managed,
    #[error("the run is not waiting for input")]
    NotWaitingForInput,
    #[error("step {index} is not a map")]
    NotAMap { index: u32 },
    #[error("a checkpoint's state must be {{\"cursor\": n, \"outputs\": {{...}}}}")]
    BadState,
    #[error("the run is still {0}: only a finished run's checkpoints are pruned")]
    NotFinished(AgentRunStatus),
    #[error("retention keeps at least the latest checkpoint")]
    KeepNone,
    #[error(transparent)]
    Invalid(#[from] TextError),
}

/// The step in progress of an executed run, as its start recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInProgress {
    pub index: u32,
    pub name: String,
    pub kind: String,
    pub input: Value,
    pub attempt: u32,
    pub wake_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
}

/// What an executed run's checkpoints hold: where to continue and every output so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub cursor: Option<u32>,
    pub outputs: BTreeMap<String, Value>,
}

/// A run's current state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    /// `None` until started.
    pub status: Option<AgentRunStatus>,
    pub workflow: String,
    /// The index of the step started and not yet ended.
    pub current_step: Option<u32>,
    /// Oldest first; names are unique, and the last one is the latest.
    pub checkpoints: Vec<Checkpoint>,
    /// Set for a run the agent worker executes.
    pub workflow_version: Option<u32>,
    pub input: Value,
    /// Where an executed run continues (`None`: at its end) and what its steps returned.
    pub state: RunState,
    /// The executed step in progress.
    pub step: Option<StepInProgress>,
    /// Outputs of the map step in progress, by element.
    pub items: BTreeMap<u32, Value>,
    /// Failed attempts of the step at the cursor since it last began afresh.
    pub failures: u32,
    /// When the next attempt is due after a transient failure.
    pub retry_at: Option<DateTime<Utc>>,
    /// Resumes so far: part of every idempotency key, so a re-run step acts again.
    pub epoch: u32,
    /// Checkpoints saved so far (names the next one).
    pub saved: u32,
    /// The last step failure's error.
    pub last_error: Option<String>,
    /// When the run completed, failed or was cancelled.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The run whose `continue_as_new` step started this one.
    #[serde(default)]
    pub continued_from: Option<RunId>,
}

impl AgentRun {
    fn status(&self) -> Result<AgentRunStatus, AgentRunError> {
        match self.status {
            None => Err(AgentRunError::NotFound),
            Some(
                status @ (AgentRunStatus::Completed
                | AgentRunStatus::Failed
                | AgentRunStatus::Cancelled),
            ) => Err(AgentRunError::Finished(status)),
            Some(status) => Ok(status),
        }
    }

    fn ensure_running(&self) -> Result<(), AgentRunError> {
        match self.status()? {
            AgentRunStatus::Paused => Err(AgentRunError::Paused),
            _ => Ok(()),
        }
    }

    /// Checks `index` names the step in progress.
    fn ensure_current_step(&self, index: u32) -> Result<(), AgentRunError> {
        match self.current_step {
            None => Err(AgentRunError::NoStepInProgress),
            Some(expected) if expected != index => Err(AgentRunError::StepMismatch {
                expected,
                got: index,
            }),
            Some(_) => Ok(()),
        }
    }

    fn decide(&self, command: AgentRunCommand) -> Result<Vec<AgentRunEvent>, AgentRunError> {
        use AgentRunCommand as C;
        match command {
            C::StartManaged { .. }
            | C::RunPureStep { .. }
            | C::BeginStep { .. }
            | C::FinishStep { .. }
            | C::RecordItem { .. }
            | C::RecordOutput { .. }
            | C::FailAttempt { .. }
            | C::GiveInput { .. }
            | C::Cancel { .. } => self.decide_managed(command),
            C::PruneCheckpoints { keep, at } => self.prune(keep, at),
            C::StartStep { .. }
            | C::CompleteStep { .. }
            | C::FailStep { .. }
            | C::SaveCheckpoint { .. }
                if self.workflow_version.is_some() =>
            {
                Err(AgentRunError::Managed)
            }
            C::Resume { from, at } if self.workflow_version.is_some() => {
                self.resume_managed(from, at)
            }
            other => self.decide_one(other).map(|e| vec![e]),
        }
    }

    fn decide_one(&self, command: AgentRunCommand) -> Result<AgentRunEvent, AgentRunError> {
        match command {
            AgentRunCommand::Start {
                workflow,
                input,
                at,
            } => {
                if self.status.is_some() {
                    return Err(AgentRunError::AlreadyStarted);
                }
                let workflow = text::required("workflow", &workflow, MAX_WORKFLOW)?;
                let input = bounded_json("input", input)?;
                Ok(AgentRunEvent::AgentRunStarted {
                    workflow,
                    input,
                    at,
                    workflow_version: None,
                    forked_from: None,
                    forked_checkpoint: None,
                    state: Value::Null,
                    continued_from: None,
                })
            }
            AgentRunCommand::StartStep { index, name, at } => {
                self.ensure_running()?;
                if let Some(index) = self.current_step {
                    return Err(AgentRunError::StepInProgress { index });
                }
                let name = text::required("name", &name, MAX_STEP_NAME)?;
                Ok(AgentRunEvent::AgentStepStarted {
                    index,
                    name,
                    at,
                    kind: None,
                    input: Value::Null,
                    attempt: 0,
                    wake_at: None,
                })
            }
            AgentRunCommand::CompleteStep { index, output, at } => {
                self.ensure_running()?;
                self.ensure_current_step(index)?;
                let output = bounded_json("output", output)?;
                Ok(AgentRunEvent::AgentStepCompleted { index, output, at })
            }
            AgentRunCommand::FailStep { index, error, at } => {
                self.ensure_running()?;
                self.ensure_current_step(index)?;
                let error = text::required("error", &error, MAX_ERROR)?;
                Ok(AgentRunEvent::AgentStepFailed {
                    index,
                    error,
                    at,
                    transient: false,
                    retry_at: None,
                })
            }
            AgentRunCommand::SaveCheckpoint {
                name,
                step_index,
                state,
                at,
            } => {
                self.ensure_running()?;
                let name = text::required("name", &name, MAX_CHECKPOINT_NAME)?;
                let replaces = self.checkpoints.iter().any(|c| c.name == name);
                if !replaces && self.checkpoints.len() >= MAX_CHECKPOINTS {
                    return Err(AgentRunError::TooManyCheckpoints {
                        max: MAX_CHECKPOINTS,
                    });
                }
                let state = bounded_json("state", state)?;
                Ok(AgentRunEvent::AgentCheckpointSaved {
                    name,
                    step_index,
                    state,
                    at,
                    parent: None,
                })
            }
            AgentRunCommand::Pause { reason, at } => {
                self.ensure_running()?;
                let reason = text::required("reason", &reason, MAX_REASON)?;
                Ok(AgentRunEvent::AgentRunPaused { reason, at })
            }
            AgentRunCommand::Resume { from, at } => {
                if self.status()? != AgentRunStatus::Paused {
                    return Err(AgentRunError::NotPaused);
                }
                let checkpoint = match from {
                    ResumeFrom::Latest => {
                        self.checkpoints.last().ok_or(AgentRunError::NoCheckpoint)
                    }
                    ResumeFrom::Named(name) => {
                        let name = name.trim();
                        self.checkpoints
                            .iter()
                            .find(|c| c.name == name)
                            .ok_or_else(|| AgentRunError::CheckpointNotFound(name.to_owned()))
                    }
                }?;
                Ok(AgentRunEvent::AgentRunResumed {
                    checkpoint: checkpoint.name.clone(),
                    step_index: checkpoint.step_index,
                    state: checkpoint.state.clone(),
                    at,
                })
            }
            AgentRunCommand::Complete { output, at } => {
                self.ensure_running()?;
                if let Some(index) = self.current_step {
                    return Err(AgentRunError::StepInProgress { index });
                }
                let output = bounded_json("output", output)?;
                Ok(AgentRunEvent::AgentRunCompleted { output, at })
            }
            AgentRunCommand::Fail { error, at } => {
                // A paused run may be abandoned without resuming it first.
                self.status()?;
                let error = text::required("error", &error, MAX_ERROR)?;
                Ok(AgentRunEvent::AgentRunFailed { error, at })
            }
            AgentRunCommand::StartManaged { .. }
            | AgentRunCommand::RunPureStep { .. }
            | AgentRunCommand::BeginStep { .. }
            | AgentRunCommand::FinishStep { .. }
            | AgentRunCommand::RecordItem { .. }
            | AgentRunCommand::RecordOutput { .. }
            | AgentRunCommand::FailAttempt { .. }
            | AgentRunCommand::GiveInput { .. }
            | AgentRunCommand::Cancel { .. } => self
                .decide_managed(command)
                .and_then(|events| events.into_iter().next().ok_or(AgentRunError::NotManaged)),
            AgentRunCommand::PruneCheckpoints { keep, at } => self
                .prune(keep, at)
                .and_then(|events| events.into_iter().next().ok_or(AgentRunError::NoCheckpoint)),
        }
    }

    /// Checks a new step may begin (an executed run, running, no step in progress); its name,
    /// kind and input as they will be recorded.
    fn begin(
        &self,
        name: &str,
        kind: &str,
        input: Value,
    ) -> Result<(String, String, Value), AgentRunError> {
        self.ensure_running()?;
        if self.workflow_version.is_none() {
            return Err(AgentRunError::NotManaged);
        }
        if let Some(index) = self.current_step {
            return Err(AgentRunError::StepInProgress { index });
        }
        Ok((
            text::required("name", name, MAX_STEP_NAME)?,
            text::required("kind", kind, MAX_STEP_NAME)?,
            bounded_json("input", input)?,
        ))
    }

    /// The executed step in progress, when it is step `index`.
    fn managed_step(&self, index: u32) -> Result<&StepInProgress, AgentRunError> {
        self.ensure_running()?;
        if self.workflow_version.is_none() {
            return Err(AgentRunError::NotManaged);
        }
        self.ensure_current_step(index)?;
        self.step.as_ref().ok_or(AgentRunError::NoStepInProgress)
    }

    /// The step's output recorded, and a checkpoint of the state it leads to.
    fn finish(
        &self,
        index: u32,
        name: &str,
        output: Value,
        next: Option<u32>,
        at: DateTime<Utc>,
    ) -> Result<Vec<AgentRunEvent>, AgentRunError> {
        let output = bounded_json("output", output)?;
        let mut state = self.state.clone();
        state.outputs.insert(name.to_owned(), output.clone());
        state.cursor = next;
        let state = bounded_json("state", serde_json::to_value(&state).unwrap_or_default())?;
        Ok(vec![
            AgentRunEvent::AgentStepCompleted { index, output, at },
            self.checkpoint_event(name, next.unwrap_or(u32::MAX), state, at),
        ])
    }

    fn checkpoint_event(
        &self,
        after: &str,
        step_index: u32,
        state: Value,
        at: DateTime<Utc>,
    ) -> AgentRunEvent {
        AgentRunEvent::AgentCheckpointSaved {
            name: format!("{:04}-{after}", self.saved),
            step_index,
            state,
            at,
            parent: self.checkpoints.last().map(|c| c.name.clone()),
        }
    }

    fn decide_managed(
        &self,
        command: AgentRunCommand,
    ) -> Result<Vec<AgentRunEvent>, AgentRunError> {
        match command {
            AgentRunCommand::StartManaged {
                workflow,
                version,
                input,
                fork,
                continued_from,
                at,
            } => {
                if self.status.is_some() {
                    return Err(AgentRunError::AlreadyStarted);
                }
                let workflow = text::required("workflow", &workflow, MAX_WORKFLOW)?;
                let input = bounded_json("input", input)?;
                let (forked_from, forked_checkpoint, state) = match fork {
                    None => (None, None, Value::Null),
                    Some(origin) => {
                        serde_json::from_value::<RunState>(origin.state.clone())
                            .map_err(|_| AgentRunError::BadState)?;
                        (Some(origin.run_id), Some(origin.checkpoint), origin.state)
                    }
                };
                let initial = if state.is_null() {
                    serde_json::to_value(RunState {
                        cursor: Some(0),
                        outputs: BTreeMap::new(),
                    })
                    .unwrap_or_default()
                } else {
                    state.clone()
                };
                let cursor = initial
                    .get("cursor")
                    .and_then(Value::as_u64)
                    .map_or(u32::MAX, |c| c.min(u64::from(u32::MAX)) as u32);
                let started = AgentRunEvent::AgentRunStarted {
                    workflow,
                    input,
                    at,
                    workflow_version: Some(version),
                    forked_from,
                    forked_checkpoint,
                    state,
                    continued_from,
                };
                let first = AgentRunEvent::AgentCheckpointSaved {
                    name: "0000-start".to_owned(),
                    step_index: cursor,
                    state: initial,
                    at,
                    parent: None,
                };
                Ok(vec![started, first])
            }
            AgentRunCommand::BeginStep {
                index,
                name,
                kind,
                input,
                wake_at,
                at,
            } => {
                let (name, kind, input) = self.begin(&name, &kind, input)?;
                Ok(vec![AgentRunEvent::AgentStepStarted {
                    index,
                    name,
                    at,
                    kind: Some(kind),
                    input,
                    attempt: self.failures + 1,
                    wake_at,
                }])
            }
            AgentRunCommand::FinishStep {
                index,
                output,
                next,
                at,
            } => {
                let step = self.managed_step(index)?;
                self.finish(index, &step.name, output, next, at)
            }
            AgentRunCommand::RunPureStep {
                index,
                name,
                kind,
                input,
                output,
                next,
                at,
            } => {
                let (name, kind, input) = self.begin(&name, &kind, input)?;
                let started = AgentRunEvent::AgentStepStarted {
                    index,
                    name: name.clone(),
                    at,
                    kind: Some(kind),
                    input,
                    attempt: self.failures + 1,
                    wake_at: None,
                };
                let mut events = vec![started];
                events.extend(self.finish(index, &name, output, next, at)?);
                Ok(events)
            }
            AgentRunCommand::RecordItem {
                index,
                item,
                output,
                at,
            } => {
                let step = self.managed_step(index)?;
                if step.kind != "map" {
                    return Err(AgentRunError::NotAMap { index });
                }
                let output = bounded_json("output", output)?;
                Ok(vec![AgentRunEvent::AgentStepItemCompleted {
                    index,
                    item,
                    output,
                    at,
                }])
            }
            AgentRunCommand::RecordOutput {
                index,
                chunk,
                text,
                at,
            } => {
                self.managed_step(index)?;
                // Untrimmed: a piece's spaces are part of the text.
                if text.is_empty() {
                    return Err(TextError::Empty { field: "text" }.into());
                }
                let text = text::bounded("text", &text, MAX_OUTPUT_CHUNK)?;
                Ok(vec![AgentRunEvent::AgentStepOutputStreamed {
                    index,
                    chunk,
                    text,
                    at,
                }])
            }
            AgentRunCommand::FailAttempt {
                index,
                error,
                transient,
                retry_at,
                at,
            } => {
                self.managed_step(index)?;
                let error = text::required("error", &error, MAX_ERROR)?;
                Ok(vec![AgentRunEvent::AgentStepFailed {
                    index,
                    error,
                    at,
                    transient,
                    retry_at: if transient { retry_at } else { None },
                }])
            }
            AgentRunCommand::GiveInput { value, at } => {
                self.ensure_running()?;
                let step = match &self.step {
                    Some(step) if step.kind == "input" && self.current_step == Some(step.index) => {
                        step
                    }
                    _ => return Err(AgentRunError::NotWaitingForInput),
                };
                self.finish(step.index, &step.name, value, Some(step.index + 1), at)
            }
            AgentRunCommand::Cancel { reason, at } => {
                self.status()?;
                let reason = text::required("reason", &reason, MAX_REASON)?;
                Ok(vec![AgentRunEvent::AgentRunCancelled { reason, at }])
            }
            _ => Err(AgentRunError::NotManaged),
        }
    }

    /// Retention's decision for a finished run: every checkpoint but the latest `keep`.
    fn prune(&self, keep: u32, at: DateTime<Utc>) -> Result<Vec<AgentRunEvent>, AgentRunError> {
        match self.status {
            None => return Err(AgentRunError::NotFound),
            Some(
                AgentRunStatus::Completed | AgentRunStatus::Failed | AgentRunStatus::Cancelled,
            ) => {}
            Some(status) => return Err(AgentRunError::NotFinished(status)),
        }
        if keep == 0 {
            return Err(AgentRunError::KeepNone);
        }
        let prunable = self.checkpoints.len().saturating_sub(keep as usize);
        if prunable == 0 {
            return Ok(Vec::new());
        }
        let names = self.checkpoints[..prunable]
            .iter()
            .map(|c| c.name.clone())
            .collect();
        Ok(vec![AgentRunEvent::AgentCheckpointsPruned { names, at }])
    }

    /// An executed run resumes from a checkpoint when paused, and also when failed: a failed run
    /// can be re-run from where it went wrong. Any step in progress is abandoned.
    fn resume_managed(
        &self,
        from: ResumeFrom,
        at: DateTime<Utc>,
    ) -> Result<Vec<AgentRunEvent>, AgentRunError> {
        match self.status {
            None => return Err(AgentRunError::NotFound),
            Some(AgentRunStatus::Paused | AgentRunStatus::Failed) => {}
            Some(AgentRunStatus::Running) => return Err(AgentRunError::NotPaused),
            Some(status) => return Err(AgentRunError::Finished(status)),
        }
        let checkpoint = self.find_checkpoint(from)?;
        Ok(vec![AgentRunEvent::AgentRunResumed {
            checkpoint: checkpoint.name.clone(),
            step_index: checkpoint.step_index,
            state: checkpoint.state.clone(),
            at,
        }])
    }

    fn find_checkpoint(&self, from: ResumeFrom) -> Result<&Checkpoint, AgentRunError> {
        match from {
            ResumeFrom::Latest => self.checkpoints.last().ok_or(AgentRunError::NoCheckpoint),
            ResumeFrom::Named(name) => {
                let name = name.trim();
                self.checkpoints
                    .iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| AgentRunError::CheckpointNotFound(name.to_owned()))
            }
        }
    }

    /// The checkpoint a fork would start from.
    pub fn checkpoint(&self, from: ResumeFrom) -> Result<&Checkpoint, AgentRunError> {
        self.find_checkpoint(from)
    }

    /// The events `command` would record, without recording them (tests across modules).
    #[cfg(test)]
    pub(crate) fn decide_for_test(
        &self,
        command: AgentRunCommand,
    ) -> Result<Vec<AgentRunEvent>, AgentRunError> {
        self.decide(command)
    }

    /// Whether the agent worker executes this run.
    pub fn is_managed(&self) -> bool {
        self.workflow_version.is_some()
    }
}

impl Aggregate for AgentRun {
    const TYPE: &'static str = "AgentRun";
    type Command = AgentRunCommand;
    type Event = AgentRunEvent;
    type Error = AgentRunError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AgentRunEvent::AgentRunStarted {
                workflow,
                input,
                workflow_version,
                state,
                continued_from,
                ..
            } => {
                let state = serde_json::from_value(state).unwrap_or(RunState {
                    cursor: Some(0),
                    outputs: BTreeMap::new(),
                });
                *self = Self {
                    status: Some(AgentRunStatus::Running),
                    workflow,
                    workflow_version,
                    input,
                    state,
                    continued_from,
                    ..Self::default()
                }
            }
            AgentRunEvent::AgentStepStarted {
                index,
                name,
                at,
                kind,
                input,
                attempt,
                wake_at,
            } => {
                self.current_step = Some(index);
                self.retry_at = None;
                self.step = kind.map(|kind| StepInProgress {
                    index,
                    name,
                    kind,
                    input,
                    attempt,
                    wake_at,
                    started_at: at,
                });
            }
            AgentRunEvent::AgentStepCompleted { .. } => {
                self.current_step = None;
                self.step = None;
                self.items.clear();
                self.failures = 0;
                self.retry_at = None;
            }
            AgentRunEvent::AgentStepFailed {
                retry_at, error, ..
            } => {
                self.current_step = None;
                self.step = None;
                self.failures += 1;
                self.retry_at = retry_at;
                self.last_error = Some(error);
            }
            AgentRunEvent::AgentStepItemCompleted { item, output, .. } => {
                self.items.insert(item, output);
            }
            // Progress for those watching; the state waits for the step's output.
            AgentRunEvent::AgentStepOutputStreamed { .. } => {}
            AgentRunEvent::AgentCheckpointSaved {
                name,
                step_index,
                state,
                at,
                ..
            } => {
                if self.workflow_version.is_some() {
                    if let Ok(run_state) = serde_json::from_value(state.clone()) {
                        self.state = run_state;
                    }
                    self.saved += 1;
                    // Executed runs name every checkpoint afresh; the oldest go first.
                    if self.checkpoints.len() >= MAX_CHECKPOINTS {
                        self.checkpoints.remove(0);
                    }
                }
                self.checkpoints.retain(|c| c.name != name);
                self.checkpoints.push(Checkpoint {
                    name,
                    step_index,
                    state,
                    at,
                });
            }
            AgentRunEvent::AgentRunPaused { .. } => self.status = Some(AgentRunStatus::Paused),
            AgentRunEvent::AgentRunResumed { state, .. } => {
                self.status = Some(AgentRunStatus::Running);
                self.current_step = None;
                self.finished_at = None;
                if self.workflow_version.is_some() {
                    if let Ok(run_state) = serde_json::from_value(state) {
                        self.state = run_state;
                    }
                    self.step = None;
                    self.items.clear();
                    self.failures = 0;
                    self.retry_at = None;
                    self.epoch += 1;
                }
            }
            AgentRunEvent::AgentRunCompleted { at, .. } => {
                self.status = Some(AgentRunStatus::Completed);
                self.current_step = None;
                self.step = None;
                self.finished_at = Some(at);
            }
            AgentRunEvent::AgentRunFailed { at, .. } => {
                self.status = Some(AgentRunStatus::Failed);
                self.current_step = None;
                self.step = None;
                self.finished_at = Some(at);
            }
            AgentRunEvent::AgentRunCancelled { at, .. } => {
                self.status = Some(AgentRunStatus::Cancelled);
                self.current_step = None;
                self.step = None;
                self.finished_at = Some(at);
            }
            AgentRunEvent::AgentCheckpointsPruned { names, .. } => {
                self.checkpoints.retain(|c| !names.contains(&c.name));
            }
        }
    }
}

/// The saves in a pruned run's history whose state nothing can reach any more, rewritten
/// without it (`state: null`): saves of checkpoints retention pruned, and saves a later save of
/// the same name superseded. `events` is the run's whole stream as (sequence, event), oldest
/// first; a run retention has not pruned gives nothing. The event store replaces those payloads
/// so a finished run's history stops costing the sum of all its states.
pub fn scrubbed_saves(events: &[(i64, AgentRunEvent)]) -> Vec<(i64, AgentRunEvent)> {
    if !events
        .iter()
        .any(|(_, e)| matches!(e, AgentRunEvent::AgentCheckpointsPruned { .. }))
    {
        return Vec::new();
    }
    let mut run = AgentRun::default();
    let mut last_save: BTreeMap<&str, i64> = BTreeMap::new();
    for (sequence, event) in events {
        run.apply(event.clone());
        if let AgentRunEvent::AgentCheckpointSaved { name, .. } = event {
            last_save.insert(name, *sequence);
        }
    }
    let kept = |name: &str, sequence: i64| {
        last_save.get(name) == Some(&sequence) && run.checkpoints.iter().any(|c| c.name == name)
    };
    events
        .iter()
        .filter_map(|(sequence, event)| match event {
            AgentRunEvent::AgentCheckpointSaved {
                name,
                step_index,
                state,
                at,
                parent,
            } if !state.is_null() && !kept(name, *sequence) => Some((
                *sequence,
                AgentRunEvent::AgentCheckpointSaved {
                    name: name.clone(),
                    step_index: *step_index,
                    state: Value::Null,
                    at: *at,
                    parent: parent.clone(),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Refuses a JSON value whose serialized form exceeds [`MAX_JSON_BYTES`].
fn bounded_json(field: &'static str, value: Value) -> Result<Value, AgentRunError> {
    let len = json_len(&value);
    if len > MAX_JSON_BYTES {
        return Err(AgentRunError::JsonTooLarge {
            field,
            len,
            max: MAX_JSON_BYTES,
        });
    }
    Ok(value)
}

/// The serialized length of `value`, counted without building the string.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing a `Value` cannot fail; were it to, the value counts as over any bound.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;

    type RunTest = TestFramework<AgentRun>;

    fn test() -> RunTest {
        RunTest::with(())
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).single().unwrap()
    }

    fn started() -> AgentRunEvent {
        AgentRunEvent::AgentRunStarted {
            workflow: "research-digest".into(),
            input: json!({"topic": "skates"}),
            at: at(),
            workflow_version: None,
            forked_from: None,
            forked_checkpoint: None,
            state: Value::Null,
            continued_from: None,
        }
    }

    fn step_started(index: u32) -> AgentRunEvent {
        AgentRunEvent::AgentStepStarted {
            index,
            name: format!("step-{index}"),
            at: at(),
            kind: None,
            input: Value::Null,
            attempt: 0,
            wake_at: None,
        }
    }

    fn step_completed(index: u32) -> AgentRunEvent {
        AgentRunEvent::AgentStepCompleted {
            index,
            output: json!({"ok": index}),
            at: at(),
        }
    }

    fn checkpoint(name: &str, step_index: u32, state: Value) -> AgentRunEvent {
        AgentRunEvent::AgentCheckpointSaved {
            name: name.into(),
            step_index,
            state,
            at: at(),
            parent: None,
        }
    }

    fn paused() -> AgentRunEvent {
        AgentRunEvent::AgentRunPaused {
            reason: "waiting for review".into(),
            at: at(),
        }
    }

    fn completed() -> AgentRunEvent {
        AgentRunEvent::AgentRunCompleted {
            output: json!("done"),
            at: at(),
        }
    }

    fn resume(from: ResumeFrom) -> AgentRunCommand {
        AgentRunCommand::Resume { from, at: at() }
    }

    fn resumed(name: &str, step_index: u32, state: Value) -> AgentRunEvent {
        AgentRunEvent::AgentRunResumed {
            checkpoint: name.into(),
            step_index,
            state,
            at: at(),
        }
    }

    #[test]
    fn starting_a_run_records_the_workflow_and_input() {
        test()
            .given_no_previous_events()
            .when(AgentRunCommand::Start {
                workflow: " research-digest ".into(),
                input: json!({"topic": "skates"}),
                at: at(),
            })
            .then_expect_events(vec![started()]);
    }

    #[test]
    fn starting_a_run_twice_is_refused() {
        test()
            .given(vec![started()])
            .when(AgentRunCommand::Start {
                workflow: "other".into(),
                input: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::AlreadyStarted);
    }

    #[test]
    fn starting_a_run_without_a_workflow_is_refused() {
        test()
            .given_no_previous_events()
            .when(AgentRunCommand::Start {
                workflow: "".into(),
                input: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::Invalid(TextError::Empty {
                field: "workflow",
            }));
    }

    #[test]
    fn an_input_over_256_kib_of_json_is_refused() {
        let input = json!("x".repeat(MAX_JSON_BYTES));
        test()
            .given_no_previous_events()
            .when(AgentRunCommand::Start {
                workflow: "w".into(),
                input,
                at: at(),
            })
            .then_expect_error(AgentRunError::JsonTooLarge {
                field: "input",
                len: MAX_JSON_BYTES + 2,
                max: MAX_JSON_BYTES,
            });
    }

    #[test]
    fn starting_a_step_records_its_index_and_name() {
        test()
            .given(vec![started()])
            .when(AgentRunCommand::StartStep {
                index: 0,
                name: "step-0".into(),
                at: at(),
            })
            .then_expect_events(vec![step_started(0)]);
    }

    #[test]
    fn starting_a_step_of_an_unknown_run_is_refused() {
        test()
            .given_no_previous_events()
            .when(AgentRunCommand::StartStep {
                index: 0,
                name: "step-0".into(),
                at: at(),
            })
            .then_expect_error(AgentRunError::NotFound);
    }

    #[test]
    fn starting_a_step_while_another_is_in_progress_is_refused() {
        test()
            .given(vec![started(), step_started(0)])
            .when(AgentRunCommand::StartStep {
                index: 1,
                name: "step-1".into(),
                at: at(),
            })
            .then_expect_error(AgentRunError::StepInProgress { index: 0 });
    }

    #[test]
    fn starting_a_step_of_a_paused_run_is_refused() {
        test()
            .given(vec![started(), paused()])
            .when(AgentRunCommand::StartStep {
                index: 0,
                name: "step-0".into(),
                at: at(),
            })
            .then_expect_error(AgentRunError::Paused);
    }

    #[test]
    fn completing_a_step_records_its_output() {
        test()
            .given(vec![started(), step_started(0)])
            .when(AgentRunCommand::CompleteStep {
                index: 0,
                output: json!({"ok": 0}),
                at: at(),
            })
            .then_expect_events(vec![step_completed(0)]);
    }

    #[test]
    fn completing_a_step_other_than_the_one_started_is_refused() {
        test()
            .given(vec![started(), step_started(0)])
            .when(AgentRunCommand::CompleteStep {
                index: 1,
                output: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::StepMismatch {
                expected: 0,
                got: 1,
            });
    }

    #[test]
    fn completing_a_step_when_none_is_in_progress_is_refused() {
        test()
            .given(vec![started(), step_started(0), step_completed(0)])
            .when(AgentRunCommand::CompleteStep {
                index: 0,
                output: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::NoStepInProgress);
    }

    #[test]
    fn failing_a_step_records_the_error_and_keeps_the_run_going() {
        test()
            .given(vec![
                started(),
                step_started(0),
                AgentRunEvent::AgentStepFailed {
                    index: 0,
                    error: "timeout".into(),
                    at: at(),
                    transient: false,
                    retry_at: None,
                },
            ])
            .when(AgentRunCommand::StartStep {
                index: 0,
                name: "step-0".into(),
                at: at(),
            })
            .then_expect_events(vec![step_started(0)]);
    }

    #[test]
    fn failing_a_step_without_an_error_is_refused() {
        test()
            .given(vec![started(), step_started(0)])
            .when(AgentRunCommand::FailStep {
                index: 0,
                error: " ".into(),
                at: at(),
            })
            .then_expect_error(AgentRunError::Invalid(TextError::Empty { field: "error" }));
    }

    #[test]
    fn saving_a_checkpoint_records_its_state() {
        test()
            .given(vec![started(), step_started(0), step_completed(0)])
            .when(AgentRunCommand::SaveCheckpoint {
                name: "after-search".into(),
                step_index: 0,
                state: json!({"hits": 3}),
                at: at(),
            })
            .then_expect_events(vec![checkpoint("after-search", 0, json!({"hits": 3}))]);
    }

    #[test]
    fn saving_more_than_the_maximum_of_checkpoints_is_refused() {
        let mut events = vec![started()];
        events.extend((0..MAX_CHECKPOINTS).map(|i| checkpoint(&format!("c{i}"), 0, Value::Null)));
        test()
            .given(events)
            .when(AgentRunCommand::SaveCheckpoint {
                name: "one-more".into(),
                step_index: 0,
                state: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::TooManyCheckpoints {
                max: MAX_CHECKPOINTS,
            });
    }

    #[test]
    fn pausing_a_run_records_the_reason() {
        test()
            .given(vec![started()])
            .when(AgentRunCommand::Pause {
                reason: "waiting for review".into(),
                at: at(),
            })
            .then_expect_events(vec![paused()]);
    }

    #[test]
    fn resuming_from_the_latest_checkpoint_carries_its_state() {
        test()
            .given(vec![
                started(),
                checkpoint("a", 0, json!(1)),
                checkpoint("b", 1, json!(2)),
                paused(),
            ])
            .when(resume(ResumeFrom::Latest))
            .then_expect_events(vec![resumed("b", 1, json!(2))]);
    }

    #[test]
    fn a_checkpoint_saved_again_under_its_name_replaces_it_and_becomes_the_latest() {
        test()
            .given(vec![
                started(),
                checkpoint("a", 0, json!(1)),
                checkpoint("b", 1, json!(2)),
                checkpoint("a", 2, json!(3)),
                paused(),
            ])
            .when(resume(ResumeFrom::Latest))
            .then_expect_events(vec![resumed("a", 2, json!(3))]);
    }

    #[test]
    fn resuming_from_a_named_checkpoint_carries_its_state() {
        test()
            .given(vec![
                started(),
                checkpoint("a", 0, json!(1)),
                checkpoint("b", 1, json!(2)),
                paused(),
            ])
            .when(resume(ResumeFrom::Named("a".into())))
            .then_expect_events(vec![resumed("a", 0, json!(1))]);
    }

    #[test]
    fn resuming_from_a_missing_checkpoint_is_refused() {
        test()
            .given(vec![started(), checkpoint("a", 0, json!(1)), paused()])
            .when(resume(ResumeFrom::Named("zzz".into())))
            .then_expect_error(AgentRunError::CheckpointNotFound("zzz".into()));
    }

    #[test]
    fn resuming_a_run_without_checkpoints_is_refused() {
        test()
            .given(vec![started(), paused()])
            .when(resume(ResumeFrom::Latest))
            .then_expect_error(AgentRunError::NoCheckpoint);
    }

    #[test]
    fn resuming_a_running_run_is_refused() {
        test()
            .given(vec![started(), checkpoint("a", 0, json!(1))])
            .when(resume(ResumeFrom::Latest))
            .then_expect_error(AgentRunError::NotPaused);
    }

    #[test]
    fn resuming_abandons_the_step_in_progress() {
        test()
            .given(vec![
                started(),
                checkpoint("a", 0, json!(1)),
                step_started(1),
                paused(),
                resumed("a", 0, json!(1)),
            ])
            .when(AgentRunCommand::StartStep {
                index: 1,
                name: "step-1".into(),
                at: at(),
            })
            .then_expect_events(vec![step_started(1)]);
    }

    #[test]
    fn completing_a_run_records_its_output() {
        test()
            .given(vec![started(), step_started(0), step_completed(0)])
            .when(AgentRunCommand::Complete {
                output: json!("done"),
                at: at(),
            })
            .then_expect_events(vec![completed()]);
    }

    #[test]
    fn completing_a_paused_run_is_refused() {
        test()
            .given(vec![started(), paused()])
            .when(AgentRunCommand::Complete {
                output: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::Paused);
    }

    #[test]
    fn completing_a_run_with_a_step_in_progress_is_refused() {
        test()
            .given(vec![started(), step_started(3)])
            .when(AgentRunCommand::Complete {
                output: Value::Null,
                at: at(),
            })
            .then_expect_error(AgentRunError::StepInProgress { index: 3 });
    }

    #[test]
    fn failing_a_paused_run_records_the_error() {
        test()
            .given(vec![started(), paused()])
            .when(AgentRunCommand::Fail {
                error: "abandoned".into(),
                at: at(),
            })
            .then_expect_events(vec![AgentRunEvent::AgentRunFailed {
                error: "abandoned".into(),
                at: at(),
            }]);
    }

    #[test]
    fn nothing_happens_to_a_completed_run() {
        test()
            .given(vec![started(), completed()])
            .when(AgentRunCommand::Fail {
                error: "late".into(),
                at: at(),
            })
            .then_expect_error(AgentRunError::Finished(AgentRunStatus::Completed));
    }

    fn prune(keep: u32) -> AgentRunCommand {
        AgentRunCommand::PruneCheckpoints { keep, at: at() }
    }

    #[test]
    fn retention_prunes_all_but_the_latest_checkpoints_of_a_finished_run() {
        test()
            .given(vec![
                started(),
                checkpoint("a", 1, json!(1)),
                checkpoint("b", 2, json!(2)),
                checkpoint("c", 3, json!(3)),
                completed(),
            ])
            .when(prune(1))
            .then_expect_events(vec![AgentRunEvent::AgentCheckpointsPruned {
                names: vec!["a".into(), "b".into()],
                at: at(),
            }]);
        // Pruned checkpoints are gone; the latest remains to fork from.
        let mut run = AgentRun::default();
        for e in [
            started(),
            checkpoint("a", 1, json!(1)),
            checkpoint("b", 2, json!(2)),
            completed(),
            AgentRunEvent::AgentCheckpointsPruned {
                names: vec!["a".into()],
                at: at(),
            },
        ] {
            run.apply(e);
        }
        assert_eq!(
            run.checkpoint(ResumeFrom::Named("a".into())),
            Err(AgentRunError::CheckpointNotFound("a".into()))
        );
        assert_eq!(run.checkpoint(ResumeFrom::Latest).unwrap().name, "b");
        assert_eq!(run.finished_at, Some(at()));
    }

    #[test]
    fn retention_records_nothing_when_nothing_is_left_to_prune() {
        test()
            .given(vec![started(), checkpoint("a", 1, json!(1)), completed()])
            .when(prune(1))
            .then_expect_events(vec![]);
    }

    #[test]
    fn retention_waits_for_the_run_to_finish_and_keeps_at_least_one() {
        test()
            .given(vec![started(), checkpoint("a", 1, json!(1))])
            .when(prune(1))
            .then_expect_error(AgentRunError::NotFinished(AgentRunStatus::Running));
        test()
            .given(vec![started(), checkpoint("a", 1, json!(1)), completed()])
            .when(prune(0))
            .then_expect_error(AgentRunError::KeepNone);
        test()
            .given_no_previous_events()
            .when(prune(1))
            .then_expect_error(AgentRunError::NotFound);
    }

    #[test]
    fn a_pruned_history_drops_the_states_nothing_can_reach() {
        let history = |pruned: bool| {
            let mut events = vec![
                (1, started()),
                (2, checkpoint("a", 1, json!({"big": 1}))),
                (3, checkpoint("b", 2, json!({"big": 2}))),
                (4, checkpoint("b", 3, json!({"big": 3}))),
                (5, checkpoint("c", 4, json!({"big": 4}))),
                (6, completed()),
            ];
            if pruned {
                events.push((
                    7,
                    AgentRunEvent::AgentCheckpointsPruned {
                        names: vec!["a".into()],
                        at: at(),
                    },
                ));
            }
            events
        };
        assert!(scrubbed_saves(&history(false)).is_empty());
        let scrubbed = scrubbed_saves(&history(true));
        // `a` was pruned, `b`'s first save was superseded; `b`'s last save and `c` are kept.
        let sequences: Vec<i64> = scrubbed.iter().map(|(s, _)| *s).collect();
        assert_eq!(sequences, [2, 3]);
        assert!(scrubbed.iter().all(|(_, e)| matches!(
            e,
            AgentRunEvent::AgentCheckpointSaved {
                state: Value::Null,
                ..
            }
        )));
        // Scrubbing again finds nothing left to drop, and the run folds to the same state.
        let mut again = history(true);
        for (sequence, event) in &scrubbed {
            again[(*sequence - 1) as usize].1 = event.clone();
        }
        assert!(scrubbed_saves(&again).is_empty());
        let fold = |events: &[(i64, AgentRunEvent)]| {
            let mut run = AgentRun::default();
            for (_, e) in events {
                run.apply(e.clone());
            }
            run
        };
        assert_eq!(fold(&again), fold(&history(true)));
    }

    #[test]
    fn json_length_is_the_serialized_length() {
        let value = json!({"a": [1, "é"]});
        assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
    }
}
