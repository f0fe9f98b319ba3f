use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use plasma_commands::RecordedEvent;
use plasma_domain::brand::Mention;
use plasma_domain::brand::{MentionEvent, MentionIngested};
use plasma_domain::Context;
use uuid::Uuid;

use super::micros;
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// Rows per multi-row INSERT: 17 values a row stays under SQLite's and PostgreSQL's bind limits.
const ROWS_PER_INSERT: usize = 500;

/// Mentions by brand, newest first, filterable by time, sentiment and source.
#[derive(Debug, Clone, Copy)]
pub struct MentionsProjection;

struct Row<'a> {
    event: &'a RecordedEvent,
    mention: Box<MentionIngested>,
}

#[async_trait]
impl Projection for MentionsProjection {
    fn name(&self) -> &'static str {
        "mentions"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_mentions"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_mentions{t} (
                tenant_id        TEXT    NOT NULL,
                mention_id       {uuid}  NOT NULL,
                brand_id         {uuid}  NOT NULL,
                source           TEXT    NOT NULL,
                external_id      TEXT    NOT NULL,
                author           TEXT    NOT NULL,
                body             TEXT    NOT NULL,
                url              TEXT,
                language         TEXT,
                published_at     BIGINT  NOT NULL,
                sentiment_millis INTEGER NOT NULL,
                sentiment        TEXT    NOT NULL,
                competitors      TEXT    NOT NULL,
                flagged          BOOLEAN NOT NULL,
                escalated        BOOLEAN NOT NULL,
                ingested_at      BIGINT  NOT NULL,
                position         BIGINT  NOT NULL,
                PRIMARY KEY (tenant_id, mention_id)
            )",
            // Keyset pagination: newest first within a brand.
            "CREATE INDEX IF NOT EXISTS rm_mentions_by_brand_{g} ON rm_mentions{t}
                (tenant_id, brand_id, published_at DESC, mention_id DESC)",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("rm_mentions");
        let mut pending: Vec<Row<'_>> = Vec::new();
        for event in events.iter().filter(|e| e.aggregate_type == Mention::TYPE) {
            let (column, reason) = match event.decode::<MentionEvent>()? {
                MentionEvent::MentionIngested(mention) => {
                    pending.push(Row { event, mention });
                    continue;
                }
                MentionEvent::MentionFlagged { reason, .. } => ("flagged", reason),
                MentionEvent::MentionEscalated { reason, .. } => ("escalated", reason),
            };
            // Updates are rare: flush inserts first so the row they touch exists.
            insert(tx, &table, &pending).await?;
            pending.clear();
            tracing::trace!(%reason, "mention {column}");
            let sql = format!(
                "UPDATE {table} SET {column} = TRUE, position = $1 WHERE tenant_id = $2 AND mention_id = $3"
            );
            on_tx!(tx, |c| sqlx::query(&sql)
                .bind(event.position)
                .bind(event.tenant.as_str())
                .bind(event.aggregate_id)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting a mention change"))?);
        }
        insert(tx, &table, &pending).await
    }
}

async fn insert(tx: &mut ReadTx, table: &str, rows: &[Row<'_>]) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let head = format!(
            "INSERT INTO {table} (tenant_id, mention_id, brand_id, source, external_id, author, \
             body, url, language, published_at, sentiment_millis, sentiment, competitors, flagged, \
             escalated, ingested_at, position) "
        );
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(head);
            query.push_values(chunk, |mut b, row| {
                let m = &row.mention;
                let brand: Uuid = plasma_domain::AggregateId::as_uuid(&m.brand_id);
                b.push_bind(row.event.tenant.as_str())
                    .push_bind(row.event.aggregate_id)
                    .push_bind(brand)
                    .push_bind(m.source.as_str())
                    .push_bind(m.external_id.as_str())
                    .push_bind(m.author.as_str())
                    .push_bind(m.text.as_str())
                    .push_bind(m.url.as_deref())
                    .push_bind(m.language.as_deref())
                    .push_bind(micros(m.published_at))
                    .push_bind(i32::from(m.sentiment.score_millis))
                    .push_bind(m.sentiment.label.as_str())
                    .push_bind(serde_json::to_string(&m.competitors_mentioned).unwrap_or_default())
                    .push_bind(false)
                    .push_bind(false)
                    .push_bind(micros(m.at))
                    .push_bind(row.event.position);
            });
            // A redelivered event (log-fed subscriptions are at-least-once) changes nothing.
            query.push(" ON CONFLICT DO NOTHING");
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting mentions"))?
        });
    }
    Ok(())
}
