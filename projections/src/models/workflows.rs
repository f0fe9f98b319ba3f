//! Workflow definitions: every recorded version of every workflow name, per tenant.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;

use plasma_commands::RecordedEvent;
use plasma_domain::agent::{Workflow, WorkflowEvent};
use plasma_domain::{Context, TenantId};

use super::{json_text, micros};
use crate::read_models::{from_micros, json_column, ReadModels};
use crate::read_store::{on_pool, on_tx};
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// One row per (tenant, workflow name, version); a definition never changes once recorded.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowsProjection;

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "workflows";

#[async_trait]
impl Projection for WorkflowsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Agent]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_workflows"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS rm_workflows{t} (
                tenant_id   TEXT   NOT NULL,
                name        TEXT   NOT NULL,
                version     BIGINT NOT NULL,
                description TEXT   NOT NULL,
                steps       BIGINT NOT NULL,
                definition  TEXT   NOT NULL,
                defined_at  BIGINT NOT NULL,
                position    BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, name, version)
            )"]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("rm_workflows");
        let sql = format!(
            "INSERT INTO {table} (tenant_id, name, version, description, steps, definition, \
             defined_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
        );
        for event in events.iter().filter(|e| e.aggregate_type == Workflow::TYPE) {
            let WorkflowEvent::WorkflowDefined {
                name,
                version,
                definition,
                at,
            } = event.decode::<WorkflowEvent>()?;
            let description = definition
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let steps = definition
                .get("steps")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len) as i64;
            on_tx!(tx, |c| sqlx::query(&sql)
                .bind(event.tenant.as_str())
                .bind(&name)
                .bind(i64::from(version))
                .bind(&description)
                .bind(steps)
                .bind(json_text(&definition, "null"))
                .bind(micros(at))
                .bind(event.position)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db(
                    "projecting a workflow definition"
                ))?);
        }
        Ok(())
    }
}

/// A workflow name with its latest version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowView {
    pub name: String,
    pub latest_version: u32,
    pub description: String,
    pub steps: i64,
    pub defined_at: DateTime<Utc>,
}

/// One version of a workflow, with its definition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowVersionView {
    pub name: String,
    pub version: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: serde_json::Value,
    pub defined_at: DateTime<Utc>,
}

impl ReadModels {
    /// The tenant's workflows by name, each with its latest version.
    pub async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let rows: Vec<(String, i64, String, i64, i64)> = on_pool!(&self.store, |p| {
            sqlx::query_as(
                "SELECT w.name, w.version, w.description, w.steps, w.defined_at FROM rm_workflows w \
                 WHERE w.tenant_id = $1 AND w.version = (SELECT MAX(v.version) FROM rm_workflows v \
                 WHERE v.tenant_id = w.tenant_id AND v.name = w.name) ORDER BY w.name",
            )
            .bind(tenant.as_str())
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("querying workflows"))?
        });
        Ok(rows
            .into_iter()
            .map(|(name, version, description, steps, at)| WorkflowView {
                name,
                latest_version: version as u32,
                description,
                steps,
                defined_at: from_micros(at),
            })
            .collect())
    }

    /// Every version of one workflow, oldest first; empty when there is no such workflow.
    pub async fn workflow_versions(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Vec<WorkflowVersionView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let rows: Vec<(i64, String, i64)> = on_pool!(&self.store, |p| {
            sqlx::query_as(
                "SELECT version, definition, defined_at FROM rm_workflows \
                 WHERE tenant_id = $1 AND name = $2 ORDER BY version",
            )
            .bind(tenant.as_str())
            .bind(name)
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("querying workflow versions"))?
        });
        rows.into_iter()
            .map(|(version, definition, at)| {
                Ok(WorkflowVersionView {
                    name: name.to_owned(),
                    version: version as u32,
                    definition: json_column(&definition)
                        .map_err(ProjectionError::db("decoding a workflow definition"))?,
                    defined_at: from_micros(at),
                })
            })
            .collect()
    }
}
