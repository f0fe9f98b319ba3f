use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::agent::AgentRun;
use plasma_domain::agent::{AgentRunEvent, AgentRunStatus};
use plasma_domain::ids::RunId;
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use super::{json_text, micros, update_row, Value};
use crate::read_models::{
    from_micros, index, json_column, paginate, parsed, Cursor, Page, PageRequest, ReadModels,
};
use crate::read_store::on_pool;
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

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "agent_runs";

#[async_trait]
impl Projection for AgentRunsProjection {
    fn name(&self) -> &'static str {
        NAME
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
                AgentRunEvent::AgentStepStarted {
                    index, name, at, ..
                } => (
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
                    ..
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
                AgentRunEvent::AgentStepItemCompleted { at, .. }
                | AgentRunEvent::AgentStepOutputStreamed { at, .. }
                | AgentRunEvent::AgentCheckpointsPruned { at, .. } => (at, Vec::new()),
                AgentRunEvent::AgentRunCancelled { reason, at } => {
                    let mut columns = no_step.to_vec();
                    columns.push(status(AgentRunStatus::Cancelled));
                    columns.push(("last_error", Value::text(format!("cancelled: {reason}"))));
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

// Queries.

/// A saved agent checkpoint.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentCheckpointView {
    pub name: String,
    pub step_index: u32,
    pub state: serde_json::Value,
    pub saved_at: DateTime<Utc>,
}

/// An agent run as it stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRunView {
    pub run_id: Uuid,
    pub workflow: String,
    pub status: AgentRunStatus,
    /// The step started and not yet ended.
    pub current_step: Option<u32>,
    pub current_step_name: Option<String>,
    /// Steps ended by completing / by failing, retries included.
    pub steps_completed: i64,
    pub steps_failed: i64,
    /// The latest step or run error.
    pub last_error: Option<String>,
    /// The checkpoint a resume from the latest checkpoint would use.
    pub latest_checkpoint: Option<AgentCheckpointView>,
    /// The checkpoint the last resume continued from.
    pub resumed_from: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub position: i64,
}

impl ReadModels {
    /// A tenant's agent runs, newest started first, with keyset pagination.
    pub async fn agent_runs(
        &self,
        tenant: &TenantId,
        status: Option<AgentRunStatus>,
        page: &PageRequest,
    ) -> Result<Page<AgentRunView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let after = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = self
            .select_agent_runs(tenant, None, status, after, limit + 1)
            .await?;
        let next_cursor = paginate(&mut items, limit, |r| (r.started_at, r.run_id));
        Ok(Page { items, next_cursor })
    }

    pub async fn agent_run(
        &self,
        tenant: &TenantId,
        run: RunId,
    ) -> Result<Option<AgentRunView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        Ok(self
            .select_agent_runs(tenant, Some(run), None, None, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn select_agent_runs(
        &self,
        tenant: &TenantId,
        run: Option<RunId>,
        status: Option<AgentRunStatus>,
        after: Option<(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<AgentRunView>, ProjectionError> {
        on_pool!(&self.store, |p| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT run_id, workflow, status, current_step, current_step_name, \
                 steps_completed, steps_failed, last_error, checkpoint_name, checkpoint_step, \
                 checkpoint_state, checkpoint_saved_at, resumed_from, started_at, updated_at, \
                 version, position FROM rm_agent_runs WHERE tenant_id = ",
            );
            query.push_bind(tenant.as_str());
            if let Some(run) = run {
                query.push(" AND run_id = ").push_bind(run.as_uuid());
            }
            if let Some(status) = status {
                query.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some((started, id)) = after {
                query.push(" AND (started_at, run_id) < (");
                query.push_bind(started).push(", ").push_bind(id).push(")");
            }
            query.push(" ORDER BY started_at DESC, run_id DESC LIMIT ");
            query.push_bind(limit);
            let rows = query
                .build()
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying agent runs"))?;
            rows.iter()
                .map(|r| {
                    let status: String = r.try_get("status")?;
                    let current_step: Option<i64> = r.try_get("current_step")?;
                    let checkpoint: Option<String> = r.try_get("checkpoint_name")?;
                    let latest_checkpoint = match checkpoint {
                        None => None,
                        Some(name) => {
                            let state: Option<String> = r.try_get("checkpoint_state")?;
                            let step: Option<i64> = r.try_get("checkpoint_step")?;
                            let saved_at: Option<i64> = r.try_get("checkpoint_saved_at")?;
                            Some(AgentCheckpointView {
                                name,
                                step_index: index(step.unwrap_or_default())?,
                                state: json_column(state.as_deref().unwrap_or("null"))?,
                                saved_at: from_micros(saved_at.unwrap_or_default()),
                            })
                        }
                    };
                    Ok(AgentRunView {
                        run_id: r.try_get("run_id")?,
                        workflow: r.try_get("workflow")?,
                        status: parsed(&status, AgentRunStatus::parse, "agent run status")?,
                        current_step: current_step.map(index).transpose()?,
                        current_step_name: r.try_get("current_step_name")?,
                        steps_completed: r.try_get("steps_completed")?,
                        steps_failed: r.try_get("steps_failed")?,
                        last_error: r.try_get("last_error")?,
                        latest_checkpoint,
                        resumed_from: r.try_get("resumed_from")?,
                        started_at: from_micros(r.try_get("started_at")?),
                        updated_at: from_micros(r.try_get("updated_at")?),
                        version: r.try_get("version")?,
                        position: r.try_get("position")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding agent runs"))
        })
    }
}
