//! The agent context: runs of agent workflows, step by step, with checkpoints to pause and
//! resume from.

mod run;

pub use run::{
    AgentRun, AgentRunCommand, AgentRunError, AgentRunEvent, AgentRunStatus, Checkpoint,
    ResumeFrom, MAX_JSON_BYTES,
};
