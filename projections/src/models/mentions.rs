use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::brand::Mention;
use plasma_domain::brand::SentimentLabel;
use plasma_domain::brand::{MentionEvent, MentionIngested};
use plasma_domain::ids::BrandId;
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use super::micros;
use crate::read_models::{
    cursor_for, from_micros, json_list, Cursor, Page, PageRequest, ReadModels,
};
use crate::read_store::on_pool;
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

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "mentions";

#[async_trait]
impl Projection for MentionsProjection {
    fn name(&self) -> &'static str {
        NAME
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

// Queries.

/// Filters on a brand's mentions; all optional.
#[derive(Debug, Clone, Default)]
pub struct MentionFilter {
    pub published_from: Option<DateTime<Utc>>,
    pub published_to: Option<DateTime<Utc>>,
    pub sentiment: Option<SentimentLabel>,
    pub source: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MentionView {
    pub mention_id: Uuid,
    pub brand_id: Uuid,
    pub source: String,
    pub external_id: String,
    pub author: String,
    pub text: String,
    pub url: Option<String>,
    pub language: Option<String>,
    pub published_at: DateTime<Utc>,
    pub sentiment_score: f64,
    pub sentiment: String,
    pub competitors_mentioned: Vec<String>,
    pub flagged: bool,
    pub escalated: bool,
    pub position: i64,
}

impl ReadModels {
    /// A brand's mentions, newest first, with keyset pagination.
    pub async fn mentions(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        filter: &MentionFilter,
        page: &PageRequest,
    ) -> Result<Page<MentionView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let cursor = page.after.map(Cursor::key);
        let limit = page.limit();
        on_pool!(&self.store, |p| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT mention_id, brand_id, source, external_id, author, body, url, language, \
                 published_at, sentiment_millis, sentiment, competitors, flagged, escalated, position \
                 FROM rm_mentions WHERE tenant_id = ",
            );
            query.push_bind(tenant.as_str());
            query.push(" AND brand_id = ").push_bind(brand.as_uuid());
            if let Some(from) = filter.published_from {
                query
                    .push(" AND published_at >= ")
                    .push_bind(from.timestamp_micros());
            }
            if let Some(to) = filter.published_to {
                query
                    .push(" AND published_at < ")
                    .push_bind(to.timestamp_micros());
            }
            if let Some(sentiment) = filter.sentiment {
                query
                    .push(" AND sentiment = ")
                    .push_bind(sentiment.as_str());
            }
            if let Some(source) = &filter.source {
                query
                    .push(" AND source = ")
                    .push_bind(source.to_lowercase());
            }
            if let Some((published, id)) = cursor {
                query.push(" AND (published_at, mention_id) < (");
                query
                    .push_bind(published)
                    .push(", ")
                    .push_bind(id)
                    .push(")");
            }
            query.push(" ORDER BY published_at DESC, mention_id DESC LIMIT ");
            query.push_bind(limit + 1);
            let rows = query
                .build()
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying mentions"))?;
            let mut items = rows
                .iter()
                .map(|r| {
                    let competitors: String = r.try_get("competitors")?;
                    let millis: i32 = r.try_get("sentiment_millis")?;
                    Ok(MentionView {
                        mention_id: r.try_get("mention_id")?,
                        brand_id: r.try_get("brand_id")?,
                        source: r.try_get("source")?,
                        external_id: r.try_get("external_id")?,
                        author: r.try_get("author")?,
                        text: r.try_get("body")?,
                        url: r.try_get("url")?,
                        language: r.try_get("language")?,
                        published_at: from_micros(r.try_get("published_at")?),
                        sentiment_score: f64::from(millis) / 1000.0,
                        sentiment: r.try_get("sentiment")?,
                        competitors_mentioned: json_list(&competitors),
                        flagged: r.try_get("flagged")?,
                        escalated: r.try_get("escalated")?,
                        position: r.try_get("position")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding mentions"))?;
            let next_cursor = if items.len() as i64 > limit {
                items.truncate(limit as usize);
                items
                    .last()
                    .map(|m| cursor_for(m.published_at, m.mention_id))
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
    }
}
