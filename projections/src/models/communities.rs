//! The graph's communities: what the communities worker computed from a tenant's knowledge
//! graph (hierarchical Leiden with a fixed seed), each with an extractive report and its
//! embedding, for global search.
//!
//! Derived from the graph read model, not from events: the worker replaces a tenant's rows in
//! one transaction whenever the graph has moved on, so a rebuilt graph yields the same
//! communities, and dropping these rows only makes the worker compute them again.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use plasma_domain::TenantId;

use crate::read_models::{from_micros, ReadModels};
use crate::read_store::{on_pool, on_tx};
use crate::{ProjectionError, ReadStore, ReadTx};

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS rm_graph_communities (
        tenant_id  TEXT   NOT NULL,
        level      BIGINT NOT NULL,
        community  BIGINT NOT NULL,
        parent     BIGINT,
        size       BIGINT NOT NULL,
        title      TEXT   NOT NULL,
        report     TEXT   NOT NULL,
        model      TEXT   NOT NULL,
        embedding  TEXT   NOT NULL,
        PRIMARY KEY (tenant_id, level, community)
    )",
    "CREATE TABLE IF NOT EXISTS rm_graph_community_members (
        tenant_id TEXT   NOT NULL,
        level     BIGINT NOT NULL,
        entity_id {uuid} NOT NULL,
        community BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, level, entity_id)
    )",
    "CREATE TABLE IF NOT EXISTS rm_graph_community_runs (
        tenant_id      TEXT             NOT NULL PRIMARY KEY,
        graph_position BIGINT           NOT NULL,
        computed_at    BIGINT           NOT NULL,
        modularity     DOUBLE PRECISION NOT NULL,
        communities    BIGINT           NOT NULL,
        levels         BIGINT           NOT NULL,
        millis         BIGINT           NOT NULL
    )",
];

/// Creates the tables where missing (idempotent, additive).
pub async fn create_tables(read: &ReadStore) -> Result<(), ProjectionError> {
    let mut tx = read.begin().await?;
    let uuid = if tx.is_postgres() { "uuid" } else { "BLOB" };
    if tx.is_postgres() {
        tx.execute(
            "SELECT pg_advisory_xact_lock(7234501)",
            "serialising read-model DDL",
        )
        .await?;
    }
    for ddl in DDL {
        tx.execute(
            &ddl.replace("{uuid}", uuid),
            "creating the community tables",
        )
        .await?;
    }
    tx.commit().await
}

/// An entity of a community, as its report lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityEntity {
    pub entity_id: Uuid,
    pub name: String,
    pub kind: String,
    /// Its weighted degree within the community.
    pub weight: f64,
}

/// A strong link inside a community, with a chunk that shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityRelation {
    pub source: String,
    pub target: String,
    pub weight: f64,
    pub shared_chunks: u64,
    /// Index into the report's `citations`, when a chunk shows the two together.
    pub citation: Option<usize>,
}

/// A chunk a report cites.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub document_id: Uuid,
    pub title: String,
    pub chunk_index: i64,
    pub snippet: String,
}

/// What the worker writes about a community: extractive, every statement backed by the graph
/// or a cited chunk.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityReport {
    /// A paragraph built from the entities, relations and cited chunks below; what global
    /// search compares a question with (through its embedding).
    pub summary: String,
    /// The most connected members first (at most 10).
    pub entities: Vec<CommunityEntity>,
    /// The strongest links between members (at most 5).
    pub relations: Vec<CommunityRelation>,
    /// The chunks mentioning most members, then the relations' evidence.
    pub citations: Vec<Citation>,
    /// Documents the members appear in.
    pub documents: u64,
}

/// One community of one level.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunityView {
    /// 0 is the coarsest; each further level splits the large communities of the one above.
    pub level: i64,
    pub community: i64,
    /// The community of the level above that this one splits.
    pub parent: Option<i64>,
    /// Its members.
    pub size: i64,
    /// Its three most connected members' names.
    pub title: String,
    pub report: CommunityReport,
}

/// When a tenant's communities were last computed, and how well they divide the graph.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunityRun {
    /// The graph position they were computed from.
    pub graph_position: i64,
    pub computed_at: chrono::DateTime<chrono::Utc>,
    /// Modularity of level 0.
    pub modularity: f64,
    pub communities: i64,
    pub levels: i64,
    /// How long the computation took.
    pub millis: i64,
}

/// Everything the worker writes for one tenant.
#[derive(Debug, Clone)]
pub struct ComputedCommunities {
    pub run: CommunityRun,
    /// Per community: the view, and its report's embedding (by `model`) if one was computed.
    pub communities: Vec<(CommunityView, Option<Vec<f32>>)>,
    /// (level, entity, community).
    pub members: Vec<(i64, Uuid, i64)>,
    pub model: String,
}

/// Replaces the tenant's communities with `computed`, in one transaction.
pub async fn replace(
    read: &ReadStore,
    tenant: &TenantId,
    computed: &ComputedCommunities,
) -> Result<(), ProjectionError> {
    let mut tx = read.begin().await?;
    for table in [
        "rm_graph_communities",
        "rm_graph_community_members",
        "rm_graph_community_runs",
    ] {
        let sql = format!("DELETE FROM {table} WHERE tenant_id = $1");
        execute(&mut tx, &sql, tenant, "clearing a tenant's communities").await?;
    }
    for (view, embedding) in &computed.communities {
        let report =
            serde_json::to_string(&view.report).map_err(|source| ProjectionError::BadValue {
                what: "community report",
                source,
            })?;
        let embedding = embedding
            .as_ref()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .unwrap_or_default();
        on_tx!(&mut tx, |c| sqlx::query(
            "INSERT INTO rm_graph_communities (tenant_id, level, community, parent, size, title, \
             report, model, embedding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(tenant.as_str())
        .bind(view.level)
        .bind(view.community)
        .bind(view.parent)
        .bind(view.size)
        .bind(&view.title)
        .bind(&report)
        .bind(&computed.model)
        .bind(&embedding)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db("recording a community"))?);
    }
    for (level, entity, community) in &computed.members {
        on_tx!(&mut tx, |c| sqlx::query(
            "INSERT INTO rm_graph_community_members (tenant_id, level, entity_id, community) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        )
        .bind(tenant.as_str())
        .bind(*level)
        .bind(*entity)
        .bind(*community)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db("recording a community member"))?);
    }
    let run = &computed.run;
    on_tx!(&mut tx, |c| sqlx::query(
        "INSERT INTO rm_graph_community_runs (tenant_id, graph_position, computed_at, \
         modularity, communities, levels, millis) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .bind(tenant.as_str())
    .bind(run.graph_position)
    .bind(run.computed_at.timestamp_micros())
    .bind(run.modularity)
    .bind(run.communities)
    .bind(run.levels)
    .bind(run.millis)
    .execute(c)
    .await
    .map(|_| ())
    .map_err(ProjectionError::db("recording a community run"))?);
    tx.commit().await
}

async fn execute(
    tx: &mut ReadTx,
    sql: &str,
    tenant: &TenantId,
    context: &'static str,
) -> Result<(), ProjectionError> {
    on_tx!(tx, |c| sqlx::query(sql)
        .bind(tenant.as_str())
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db(context))?);
    Ok(())
}

type CommunityRow = (i64, i64, Option<i64>, i64, String, String, String, String);

fn view(row: CommunityRow) -> Result<(CommunityView, String, String), ProjectionError> {
    let (level, community, parent, size, title, report, model, embedding) = row;
    let report: CommunityReport =
        serde_json::from_str(&report).map_err(|source| ProjectionError::BadValue {
            what: "community report",
            source,
        })?;
    Ok((
        CommunityView {
            level,
            community,
            parent,
            size,
            title,
            report,
        },
        model,
        embedding,
    ))
}

const SELECT: &str = "SELECT level, community, parent, size, title, report, model, embedding \
                      FROM rm_graph_communities WHERE tenant_id = $1";

impl ReadModels {
    /// Graph positions of the tenants whose graph moved on since their communities were
    /// computed: (tenant, graph position).
    pub async fn stale_community_tenants(&self) -> Result<Vec<(String, i64)>, ProjectionError> {
        let rows: Vec<(String, i64)> = on_pool!(&self.store, |p| sqlx::query_as(
            "SELECT d.tenant_id, MAX(d.position) FROM rm_graph_documents d \
             GROUP BY d.tenant_id \
             HAVING MAX(d.position) > COALESCE((SELECT r.graph_position \
               FROM rm_graph_community_runs r WHERE r.tenant_id = d.tenant_id), 0) \
             ORDER BY d.tenant_id"
        )
        .fetch_all(p)
        .await
        .map_err(ProjectionError::db("finding stale communities"))?);
        Ok(rows)
    }

    /// The tenant's last community computation, if any.
    pub async fn community_run(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<CommunityRun>, ProjectionError> {
        let row: Option<(i64, i64, f64, i64, i64, i64)> = on_pool!(&self.store, |p| {
            sqlx::query_as(
                "SELECT graph_position, computed_at, modularity, communities, levels, millis \
                 FROM rm_graph_community_runs WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(p)
            .await
            .map_err(ProjectionError::db("reading a community run"))?
        });
        Ok(row.map(
            |(graph_position, computed_at, modularity, communities, levels, millis)| CommunityRun {
                graph_position,
                computed_at: from_micros(computed_at),
                modularity,
                communities,
                levels,
                millis,
            },
        ))
    }

    /// The tenant's communities of `level`, largest first.
    pub async fn communities(
        &self,
        tenant: &TenantId,
        level: i64,
        limit: u32,
    ) -> Result<Vec<CommunityView>, ProjectionError> {
        let sql = format!("{SELECT} AND level = $2 ORDER BY size DESC, community LIMIT $3");
        let rows: Vec<CommunityRow> = on_pool!(&self.store, |p| sqlx::query_as(&sql)
            .bind(tenant.as_str())
            .bind(level)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("reading communities"))?);
        rows.into_iter()
            .map(|row| view(row).map(|(v, _, _)| v))
            .collect()
    }

    pub async fn community(
        &self,
        tenant: &TenantId,
        level: i64,
        community: i64,
    ) -> Result<Option<CommunityView>, ProjectionError> {
        let sql = format!("{SELECT} AND level = $2 AND community = $3");
        let row: Option<CommunityRow> = on_pool!(&self.store, |p| sqlx::query_as(&sql)
            .bind(tenant.as_str())
            .bind(level)
            .bind(community)
            .fetch_optional(p)
            .await
            .map_err(ProjectionError::db("reading a community"))?);
        row.map(|row| view(row).map(|(v, _, _)| v)).transpose()
    }

    /// Every community of the tenant with a report embedded by `model`, with its vector.
    pub async fn embedded_communities(
        &self,
        tenant: &TenantId,
        model: &str,
    ) -> Result<Vec<(CommunityView, Vec<f32>)>, ProjectionError> {
        let sql = format!("{SELECT} AND model = $2 AND embedding <> ''");
        let rows: Vec<CommunityRow> = on_pool!(&self.store, |p| sqlx::query_as(&sql)
            .bind(tenant.as_str())
            .bind(model)
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("reading communities"))?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (view, _, embedding) = view(row)?;
            if let Ok(vector) = serde_json::from_str::<Vec<f32>>(&embedding) {
                out.push((view, vector));
            }
        }
        Ok(out)
    }

    /// The communities (per level) `entity` belongs to.
    pub async fn entity_communities(
        &self,
        tenant: &TenantId,
        entity: Uuid,
    ) -> Result<Vec<(i64, i64)>, ProjectionError> {
        let rows: Vec<(i64, i64)> = on_pool!(&self.store, |p| sqlx::query_as(
            "SELECT level, community FROM rm_graph_community_members \
             WHERE tenant_id = $1 AND entity_id = $2 ORDER BY level"
        )
        .bind(tenant.as_str())
        .bind(entity)
        .fetch_all(p)
        .await
        .map_err(ProjectionError::db("reading an entity's communities"))?);
        Ok(rows)
    }
}
