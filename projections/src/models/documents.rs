use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Deserialize;
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::ids::DocumentId;
use plasma_domain::research::Document;
use plasma_domain::research::{DocumentEvent, DocumentStatus};
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use super::{json_text, micros, update_row, Value};
use crate::read_models::{
    from_micros, json_column, paginate, parsed, Cursor, Page, PageRequest, ReadModels,
};
use crate::read_store::on_pool;
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// Research documents, newest first, with their chunk and entity counts and the entities found.
///
/// The text itself is not kept: it lives in the `DocumentIngested` event, and chunk texts follow
/// from it and the recorded chunk spans. An extraction replaces the previous one.
#[derive(Debug, Clone, Copy)]
pub struct DocumentsProjection;

/// What the `entities` column lists.
#[derive(Serialize)]
struct EntityRow<'a> {
    name: &'a str,
    kind: &'a str,
}

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "documents";

#[async_trait]
impl Projection for DocumentsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Research]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_documents"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_documents{t} (
                tenant_id      TEXT   NOT NULL,
                document_id    {uuid} NOT NULL,
                title          TEXT   NOT NULL,
                source         TEXT   NOT NULL,
                status         TEXT   NOT NULL,
                char_count     BIGINT NOT NULL,
                chunk_count    BIGINT NOT NULL,
                entity_count   BIGINT NOT NULL,
                relation_count BIGINT NOT NULL,
                entities       TEXT   NOT NULL,
                ingested_at    BIGINT NOT NULL,
                updated_at     BIGINT NOT NULL,
                version        BIGINT NOT NULL,
                position       BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, document_id)
            )",
            // Keyset pagination, newest first.
            "CREATE INDEX IF NOT EXISTS rm_documents_by_ingest_{g} ON rm_documents{t}
                (tenant_id, ingested_at DESC, document_id DESC)",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("rm_documents");
        let count = |n: usize| Value::int(i64::try_from(n).unwrap_or(i64::MAX));
        for event in events.iter().filter(|e| e.aggregate_type == Document::TYPE) {
            let (status, at, mut columns) = match event.decode::<DocumentEvent>()? {
                DocumentEvent::DocumentIngested {
                    title,
                    source,
                    text,
                    at,
                } => {
                    let chars = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
                    let sql = format!(
                        "INSERT INTO {table} (tenant_id, document_id, title, source, status, \
                         char_count, chunk_count, entity_count, relation_count, entities, \
                         ingested_at, updated_at, version, position) \
                         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, '[]', $7, $7, $8, $9) \
                         ON CONFLICT DO NOTHING"
                    );
                    on_tx!(tx, |c| sqlx::query(&sql)
                        .bind(event.tenant.as_str())
                        .bind(event.aggregate_id)
                        .bind(&title)
                        .bind(&source)
                        .bind(DocumentStatus::Ingested.as_str())
                        .bind(chars)
                        .bind(micros(at))
                        .bind(event.sequence)
                        .bind(event.position)
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(ProjectionError::db("projecting a document"))?);
                    continue;
                }
                // The vectors belong to the vector read model; here only the row's version and
                // position move on.
                DocumentEvent::DocumentChunksEmbedded { at, .. }
                | DocumentEvent::DocumentEmbeddingRequested { at, .. } => (None, at, Vec::new()),
                // The row stays, marked, so the document's history can still be found.
                DocumentEvent::DocumentRemoved { at } => {
                    (Some(DocumentStatus::Removed), at, Vec::new())
                }
                DocumentEvent::DocumentChunked { chunks, at, .. } => (
                    Some(DocumentStatus::Chunked),
                    at,
                    vec![("chunk_count", count(chunks.len()))],
                ),
                DocumentEvent::DocumentEntitiesExtracted {
                    entities,
                    relations,
                    at,
                    ..
                } => {
                    let listed: Vec<EntityRow<'_>> = entities
                        .iter()
                        .map(|e| EntityRow {
                            name: &e.name,
                            kind: &e.kind,
                        })
                        .collect();
                    (
                        Some(DocumentStatus::EntitiesExtracted),
                        at,
                        vec![
                            ("entity_count", count(entities.len())),
                            ("relation_count", count(relations.len())),
                            ("entities", Value::text(json_text(&listed, "[]"))),
                        ],
                    )
                }
            };
            if let Some(status) = status {
                columns.push(("status", Value::text(status.as_str())));
            }
            update_row(
                tx,
                &table,
                "document_id",
                event,
                micros(at),
                &columns,
                "projecting a document change",
            )
            .await?;
        }
        Ok(())
    }
}

// Queries.

/// An entity the latest extraction found in a document.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentEntityView {
    pub name: String,
    pub kind: String,
}

/// A research document as it stands (without its text).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentView {
    pub document_id: Uuid,
    pub title: String,
    pub source: String,
    pub status: DocumentStatus,
    /// Characters in the ingested text.
    pub char_count: i64,
    pub chunk_count: i64,
    pub entity_count: i64,
    pub relation_count: i64,
    pub entities: Vec<DocumentEntityView>,
    pub ingested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub position: i64,
}

impl ReadModels {
    /// A tenant's research documents, newest ingested first, with keyset pagination.
    pub async fn documents(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DocumentView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let after = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = self
            .select_documents(tenant, None, after, limit + 1)
            .await?;
        let next_cursor = paginate(&mut items, limit, |d| (d.ingested_at, d.document_id));
        Ok(Page { items, next_cursor })
    }

    pub async fn document(
        &self,
        tenant: &TenantId,
        document: DocumentId,
    ) -> Result<Option<DocumentView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        Ok(self
            .select_documents(tenant, Some(document), None, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn select_documents(
        &self,
        tenant: &TenantId,
        document: Option<DocumentId>,
        after: Option<(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<DocumentView>, ProjectionError> {
        on_pool!(&self.store, |p| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT document_id, title, source, status, char_count, chunk_count, \
                 entity_count, relation_count, entities, ingested_at, updated_at, version, \
                 position FROM rm_documents WHERE tenant_id = ",
            );
            query.push_bind(tenant.as_str());
            if let Some(document) = document {
                query
                    .push(" AND document_id = ")
                    .push_bind(document.as_uuid());
            }
            if let Some((ingested, id)) = after {
                query.push(" AND (ingested_at, document_id) < (");
                query.push_bind(ingested).push(", ").push_bind(id).push(")");
            }
            query.push(" ORDER BY ingested_at DESC, document_id DESC LIMIT ");
            query.push_bind(limit);
            let rows = query
                .build()
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying documents"))?;
            rows.iter()
                .map(|r| {
                    let status: String = r.try_get("status")?;
                    let entities: String = r.try_get("entities")?;
                    Ok(DocumentView {
                        document_id: r.try_get("document_id")?,
                        title: r.try_get("title")?,
                        source: r.try_get("source")?,
                        status: parsed(&status, DocumentStatus::parse, "document status")?,
                        char_count: r.try_get("char_count")?,
                        chunk_count: r.try_get("chunk_count")?,
                        entity_count: r.try_get("entity_count")?,
                        relation_count: r.try_get("relation_count")?,
                        entities: json_column(&entities)?,
                        ingested_at: from_micros(r.try_get("ingested_at")?),
                        updated_at: from_micros(r.try_get("updated_at")?),
                        version: r.try_get("version")?,
                        position: r.try_get("position")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding documents"))
        })
    }
}
