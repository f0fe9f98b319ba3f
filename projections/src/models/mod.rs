//! The read models: one module each, owning its projection (tables and apply), its views and
//! its queries.

pub mod activity;
pub mod agent_runs;
pub mod alerts;
pub mod brands;
pub mod chunks;
pub mod communities;
pub mod documents;
pub mod drafts;
pub mod graph;
pub mod mentions;
pub mod stats;
pub mod workflows;

use std::sync::Arc;

pub use activity::BrandActivityProjection;
pub use agent_runs::AgentRunsProjection;
pub use alerts::AlertsProjection;
pub use brands::BrandsProjection;
pub use chunks::ChunksProjection;
pub use documents::DocumentsProjection;
pub use drafts::DraftsProjection;
pub use graph::GraphProjection;
pub use mentions::MentionsProjection;
use plasma_commands::RecordedEvent;
pub use stats::BrandStatsProjection;
pub use workflows::WorkflowsProjection;

use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx};

/// Every read model the platform maintains.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(BrandsProjection),
        Arc::new(MentionsProjection),
        Arc::new(BrandStatsProjection),
        Arc::new(AlertsProjection),
        Arc::new(BrandActivityProjection),
        Arc::new(DraftsProjection),
        Arc::new(AgentRunsProjection),
        Arc::new(WorkflowsProjection),
        Arc::new(DocumentsProjection),
        Arc::new(ChunksProjection),
        Arc::new(GraphProjection),
    ]
}

/// The projection called `name`.
pub fn projection_named(name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
    all_projections()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
}

/// Microseconds since the epoch: read models store instants as integers, exact and sortable on
/// both backends.
pub(crate) fn micros(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_micros()
}

/// A list or value as JSON text, for a TEXT column.
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T, empty: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| empty.to_owned())
}

/// The new value of one column in [`update_row`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    /// An SQL expression over the row's current values, e.g. `steps_completed + 1`.
    Expr(&'static str),
}

impl Value {
    pub(crate) fn text(value: impl Into<String>) -> Self {
        Self::Text(Some(value.into()))
    }

    pub(crate) fn int(value: impl Into<i64>) -> Self {
        Self::Int(Some(value.into()))
    }
}

/// Applies one event to the row of its aggregate (`key` names the id column): sets `columns`,
/// `updated_at` to `at`, and the event's sequence and position as `version` and `position`.
///
/// Rows only move forward: an event at or below the row's version (a redelivery, which
/// log-fed subscriptions may do) changes nothing, so non-idempotent changes such as counters
/// stay exact.
pub(crate) async fn update_row(
    tx: &mut ReadTx,
    table: &str,
    key: &str,
    event: &RecordedEvent,
    at: i64,
    columns: &[(&str, Value)],
    context: &'static str,
) -> Result<(), ProjectionError> {
    on_tx!(tx, |c| {
        let mut query = sqlx::QueryBuilder::new(format!("UPDATE {table} SET "));
        for (column, value) in columns {
            query.push(*column).push(" = ");
            match value {
                Value::Text(v) => query.push_bind(v.as_deref()),
                Value::Int(v) => query.push_bind(*v),
                Value::Bool(v) => query.push_bind(*v),
                Value::Expr(sql) => query.push(*sql),
            };
            query.push(", ");
        }
        query.push("updated_at = ").push_bind(at);
        query.push(", version = ").push_bind(event.sequence);
        query.push(", position = ").push_bind(event.position);
        query
            .push(" WHERE tenant_id = ")
            .push_bind(event.tenant.as_str());
        query
            .push(format!(" AND {key} = "))
            .push_bind(event.aggregate_id);
        query.push(" AND version < ").push_bind(event.sequence);
        query
            .build()
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db(context))?
    });
    Ok(())
}
