use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use plasma_commands::RecordedEvent;
use plasma_domain::research::Document;
use plasma_domain::research::{DocumentEvent, DocumentStatus};
use plasma_domain::Context;
use serde::Serialize;

use super::{json_text, micros, update_row, Value};
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

#[async_trait]
impl Projection for DocumentsProjection {
    fn name(&self) -> &'static str {
        "documents"
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
                DocumentEvent::DocumentChunked { chunks, at, .. } => (
                    DocumentStatus::Chunked,
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
                        DocumentStatus::EntitiesExtracted,
                        at,
                        vec![
                            ("entity_count", count(entities.len())),
                            ("relation_count", count(relations.len())),
                            ("entities", Value::text(json_text(&listed, "[]"))),
                        ],
                    )
                }
            };
            columns.push(("status", Value::text(status.as_str())));
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
