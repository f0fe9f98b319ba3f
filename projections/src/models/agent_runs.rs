use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use plasma_commands::RecordedEvent;
use plasma_domain::agent::AgentRun;
use plasma_domain::agent::{AgentRunEvent, AgentRunStatus};
use plasma_domain::Context;

use super::{json_text, micros, update_row, Value};
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// Agent runs by status, newest first, with their progress and latest checkpoint.
///
/// The latest checkpoint is the one a `Resume { from: Latest }` would use: the aggregate makes
/// every save (including one replacing a same-named checkpoint) the latest, so it is simply the
/// last one saved. Resuming does not change it; `resumed_from` names the checkpoint the last
/// resume continued from. `steps_completed` and `steps_failed` count step endings, retries
/// included.
#[derive(Debug, Clone, Copy)]
pub struct AgentRunsProjection;

#[async_trait]
impl Projection for AgentRunsProjection {
    fn name(&self) -> &'static str {
        "agent_runs"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Agent]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_agent_runs"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_agent_runs{t} (
                tenant_id           TEXT   NOT NULL,
                run_id              {uuid} NOT NULL,
                workflow            TEXT   NOT NULL,
                status              TEXT   NOT NULL,
                current_step        BIGINT,
                current_step_name   TEXT,
                steps_completed     BIGINT NOT NULL,
                steps_failed        BIGINT NOT NULL,
                last_error          TEXT,
                checkpoint_name     TEXT,
                checkpoint_step     BIGINT,
                checkpoint_state    TEXT,
                checkpoint_saved_at BIGINT,
                resumed_from        TEXT,
                started_at          BIGINT NOT NULL,
                updated_at          BIGINT NOT NULL,
                version             BIGINT NOT NULL,
                position            BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, run_id)
            )",
            // Keyset pagination, newest first: all runs, and by status.
            "CREATE INDEX IF NOT EXISTS rm_agent_runs_by_start_{g} ON rm_agent_runs{t}
                (tenant_id, started_at DESC, run_id DESC)",
            "CREATE INDEX IF NOT EXISTS rm_agent_runs_by_status_{g} ON rm_agent_runs{t}
                (tenant_id, status, started_at DESC, run_id DESC)",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("rm_agent_runs");
        for event in events.iter().filter(|e| e.aggregate_type == AgentRun::TYPE) {
            let no_step = [
                ("current_step", Value::Int(None)),
                ("current_step_name", Value::Text(None)),
            ];
            let status = |s: AgentRunStatus| ("status", Value::text(s.as_str()));
            let (at, columns) = match event.decode::<AgentRunEvent>()? {
                AgentRunEvent::AgentRunStarted { workflow, at, .. } => {
                    let sql = format!(
                        "INSERT INTO {table} (tenant_id, run_id, workflow, status, \
                         steps_completed, steps_failed, started_at, updated_at, version, position) \
                         VALUES ($1, $2, $3, $4, 0, 0, $5, $5, $6, $7) ON CONFLICT DO NOTHING"
                    );
                    on_tx!(tx, |c| sqlx::query(&sql)
                        .bind(event.tenant.as_str())
                        .bind(event.aggregate_id)
                        .bind(&workflow)
                        .bind(AgentRunStatus::Running.as_str())
                        .bind(micros(at))
                        .bind(event.sequence)
                        .bind(event.position)
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(ProjectionError::db("projecting an agent run"))?);
                    continue;
                }
                AgentRunEvent::AgentStepStarted { index, name, at } => (
                    at,
                    vec![
                        ("current_step", Value::int(index)),
                        ("current_step_name", Value::text(name)),
                    ],
                ),
                AgentRunEvent::AgentStepCompleted { at, .. } => {
                    let mut columns = no_step.to_vec();
                    columns.push(("steps_completed", Value::Expr("steps_completed + 1")));
                    (at, columns)
                }
                AgentRunEvent::AgentStepFailed { error, at, .. } => {
                    let mut columns = no_step.to_vec();
                    columns.push(("steps_failed", Value::Expr("steps_failed + 1")));
                    columns.push(("last_error", Value::text(error)));
                    (at, columns)
                }
                AgentRunEvent::AgentCheckpointSaved {
                    name,
                    step_index,
                    state,
                    at,
                } => (
                    at,
                    vec![
                        ("checkpoint_name", Value::text(name)),
                        ("checkpoint_step", Value::int(step_index)),
                        ("checkpoint_state", Value::text(json_text(&state, "null"))),
                        ("checkpoint_saved_at", Value::int(micros(at))),
                    ],
                ),
                AgentRunEvent::AgentRunPaused { at, .. } => {
                    (at, vec![status(AgentRunStatus::Paused)])
                }
                AgentRunEvent::AgentRunResumed { checkpoint, at, .. } => {
                    let mut columns = no_step.to_vec();
                    columns.push(status(AgentRunStatus::Running));
                    columns.push(("resumed_from", Value::text(checkpoint)));
                    (at, columns)
                }
                AgentRunEvent::AgentRunCompleted { at, .. } => {
                    let mut columns = no_step.to_vec();
                    columns.push(status(AgentRunStatus::Completed));
                    (at, columns)
                }
                AgentRunEvent::AgentRunFailed { error, at } => {
                    let mut columns = no_step.to_vec();
                    columns.push(status(AgentRunStatus::Failed));
                    columns.push(("last_error", Value::text(error)));
                    (at, columns)
                }
            };
            update_row(
                tx,
                &table,
                "run_id",
                event,
                micros(at),
                &columns,
                "projecting an agent run change",
            )
            .await?;
        }
        Ok(())
    }
}
