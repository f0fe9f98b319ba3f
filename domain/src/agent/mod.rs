//! The agent context: declarative workflows, versioned per tenant, and their runs: executed
//! step by step by the agent worker with a checkpoint after every step (or driven by an outside
//! runner through the step endpoints), resumable, forkable and cancellable; retention prunes
//! the checkpoints of finished runs.

pub mod builtin;
mod plan;
mod ports;
mod run;
pub mod tools;
mod workflow;

pub use plan::{output, plan, scope, Plan};
pub use ports::{
    DraftPublisher, OutboundError, OutboundHttp, OutboundRequest, OutboundResponse, PublishError,
    PublishRequest,
};
pub use run::{
    scrubbed_saves, AgentRun, AgentRunCommand, AgentRunError, AgentRunEvent, AgentRunStatus,
    Checkpoint, ForkOrigin, ResumeFrom, RunState, StepInProgress, MAX_JSON_BYTES,
};
pub use workflow::{
    unknown_step_field, validate_name, Condition, RetryPolicy, Scope, StepAction, StepDefinition,
    Workflow, WorkflowCommand, WorkflowDefinition, WorkflowError, WorkflowEvent, WorkflowVersion,
    END, MAX_STEPS,
};
