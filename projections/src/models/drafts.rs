use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::content::Channel;
use plasma_domain::content::Draft;
use plasma_domain::content::{DraftEvent, DraftStatus};
use plasma_domain::ids::{BrandId, DraftId};
use plasma_domain::AggregateId;
use plasma_domain::Context;
use plasma_domain::TenantId;

use super::{json_text, micros, update_row, Value};
use crate::read_models::{
    from_micros, json_column, paginate, parsed, Cursor, Page, PageRequest, ReadModels,
};
use crate::read_store::on_pool;
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// Content drafts by status and by brand, most recently changed first.
///
/// Where the Draft aggregate keeps a field (status, text, voice verdict, publication time), the
/// row agrees with it: new text clears the voice verdict and the schedule, and a rejection clears
/// the approval, the schedule and the verdict. `approver` and `rejection_reason` describe the
/// current status: a rejection clears the approver, and new text (the only way out of
/// `rejected`) clears the rejection reason.
#[derive(Debug, Clone, Copy)]
pub struct DraftsProjection;

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "drafts";

#[async_trait]
impl Projection for DraftsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Content]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_drafts"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_drafts{t} (
                tenant_id        TEXT    NOT NULL,
                draft_id         {uuid}  NOT NULL,
                brand_id         {uuid}  NOT NULL,
                channel          TEXT    NOT NULL,
                status           TEXT    NOT NULL,
                brief            TEXT    NOT NULL,
                text             TEXT,
                voice_passed     BOOLEAN,
                voice_issues     TEXT    NOT NULL,
                approver         TEXT,
                rejection_reason TEXT,
                publish_at       BIGINT,
                published_url    TEXT,
                requested_at     BIGINT  NOT NULL,
                updated_at       BIGINT  NOT NULL,
                version          BIGINT  NOT NULL,
                position         BIGINT  NOT NULL,
                PRIMARY KEY (tenant_id, draft_id)
            )",
            // Keyset pagination, most recently changed first: all drafts, by status, by brand.
            "CREATE INDEX IF NOT EXISTS rm_drafts_by_update_{g} ON rm_drafts{t}
                (tenant_id, updated_at DESC, draft_id DESC)",
            "CREATE INDEX IF NOT EXISTS rm_drafts_by_status_{g} ON rm_drafts{t}
                (tenant_id, status, updated_at DESC, draft_id DESC)",
            "CREATE INDEX IF NOT EXISTS rm_drafts_by_brand_{g} ON rm_drafts{t}
                (tenant_id, brand_id, updated_at DESC, draft_id DESC)",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("rm_drafts");
        for event in events.iter().filter(|e| e.aggregate_type == Draft::TYPE) {
            let (status, at, mut columns) = match event.decode::<DraftEvent>()? {
                DraftEvent::DraftRequested {
                    brand_id,
                    brief,
                    channel,
                    at,
                } => {
                    let sql = format!(
                        "INSERT INTO {table} (tenant_id, draft_id, brand_id, channel, status, \
                         brief, voice_issues, requested_at, updated_at, version, position) \
                         VALUES ($1, $2, $3, $4, $5, $6, '[]', $7, $7, $8, $9) \
                         ON CONFLICT DO NOTHING"
                    );
                    on_tx!(tx, |c| sqlx::query(&sql)
                        .bind(event.tenant.as_str())
                        .bind(event.aggregate_id)
                        .bind(brand_id.as_uuid())
                        .bind(channel.as_str())
                        .bind(DraftStatus::Requested.as_str())
                        .bind(&brief)
                        .bind(micros(at))
                        .bind(event.sequence)
                        .bind(event.position)
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(ProjectionError::db("projecting a draft"))?);
                    continue;
                }
                DraftEvent::DraftGenerated { text, at, .. }
                | DraftEvent::DraftRevised { text, at, .. } => (
                    DraftStatus::Generated,
                    at,
                    vec![
                        ("text", Value::text(text)),
                        ("voice_passed", Value::Bool(None)),
                        ("voice_issues", Value::text("[]")),
                        ("rejection_reason", Value::Text(None)),
                        ("publish_at", Value::Int(None)),
                    ],
                ),
                DraftEvent::DraftVoiceChecked {
                    passed, issues, at, ..
                } => (
                    DraftStatus::VoiceChecked,
                    at,
                    vec![
                        ("voice_passed", Value::Bool(Some(passed))),
                        ("voice_issues", Value::text(json_text(&issues, "[]"))),
                    ],
                ),
                DraftEvent::DraftApproved { approver, at } => (
                    DraftStatus::Approved,
                    at,
                    vec![("approver", Value::text(approver))],
                ),
                DraftEvent::DraftRejected { reason, at } => (
                    DraftStatus::Rejected,
                    at,
                    vec![
                        ("rejection_reason", Value::text(reason)),
                        ("approver", Value::Text(None)),
                        ("publish_at", Value::Int(None)),
                        ("voice_passed", Value::Bool(None)),
                        ("voice_issues", Value::text("[]")),
                    ],
                ),
                DraftEvent::DraftScheduled { publish_at, at } => (
                    DraftStatus::Scheduled,
                    at,
                    vec![("publish_at", Value::int(micros(publish_at)))],
                ),
                DraftEvent::DraftPublished { url, at } => (
                    DraftStatus::Published,
                    at,
                    vec![("published_url", Value::Text(url))],
                ),
            };
            columns.push(("status", Value::text(status.as_str())));
            update_row(
                tx,
                &table,
                "draft_id",
                event,
                micros(at),
                &columns,
                "projecting a draft change",
            )
            .await?;
        }
        Ok(())
    }
}

// Queries.

/// Filters on a tenant's drafts; all optional.
#[derive(Debug, Clone, Default)]
pub struct DraftFilter {
    pub status: Option<DraftStatus>,
    pub brand: Option<BrandId>,
}

/// A content draft as it stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftView {
    pub draft_id: Uuid,
    pub brand_id: Uuid,
    pub channel: Channel,
    pub status: DraftStatus,
    pub brief: String,
    /// The latest generated or revised text; absent until there is one.
    pub text: Option<String>,
    /// The voice check's verdict on the current text; absent until checked, and again after new
    /// text or a rejection.
    pub voice_passed: Option<bool>,
    pub voice_issues: Vec<String>,
    /// Who approved it, while approved, scheduled or published.
    pub approver: Option<String>,
    /// Why it was rejected, while rejected.
    pub rejection_reason: Option<String>,
    pub publish_at: Option<DateTime<Utc>>,
    pub published_url: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub position: i64,
}

impl ReadModels {
    /// A tenant's drafts, most recently changed first, with keyset pagination.
    pub async fn drafts(
        &self,
        tenant: &TenantId,
        filter: &DraftFilter,
        page: &PageRequest,
    ) -> Result<Page<DraftView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let after = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = self
            .select_drafts(tenant, None, filter, after, limit + 1)
            .await?;
        let next_cursor = paginate(&mut items, limit, |d| (d.updated_at, d.draft_id));
        Ok(Page { items, next_cursor })
    }

    pub async fn draft(
        &self,
        tenant: &TenantId,
        draft: DraftId,
    ) -> Result<Option<DraftView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        Ok(self
            .select_drafts(tenant, Some(draft), &DraftFilter::default(), None, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn select_drafts(
        &self,
        tenant: &TenantId,
        draft: Option<DraftId>,
        filter: &DraftFilter,
        after: Option<(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<DraftView>, ProjectionError> {
        on_pool!(&self.store, |p| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT draft_id, brand_id, channel, status, brief, text, voice_passed, \
                 voice_issues, approver, rejection_reason, publish_at, published_url, \
                 requested_at, updated_at, version, position FROM rm_drafts WHERE tenant_id = ",
            );
            query.push_bind(tenant.as_str());
            if let Some(draft) = draft {
                query.push(" AND draft_id = ").push_bind(draft.as_uuid());
            }
            if let Some(status) = filter.status {
                query.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(brand) = filter.brand {
                query.push(" AND brand_id = ").push_bind(brand.as_uuid());
            }
            if let Some((updated, id)) = after {
                query.push(" AND (updated_at, draft_id) < (");
                query.push_bind(updated).push(", ").push_bind(id).push(")");
            }
            query.push(" ORDER BY updated_at DESC, draft_id DESC LIMIT ");
            query.push_bind(limit);
            let rows = query
                .build()
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying drafts"))?;
            rows.iter()
                .map(|r| {
                    let channel: String = r.try_get("channel")?;
                    let status: String = r.try_get("status")?;
                    let issues: String = r.try_get("voice_issues")?;
                    let publish_at: Option<i64> = r.try_get("publish_at")?;
                    Ok(DraftView {
                        draft_id: r.try_get("draft_id")?,
                        brand_id: r.try_get("brand_id")?,
                        channel: parsed(&channel, Channel::parse, "channel")?,
                        status: parsed(&status, DraftStatus::parse, "draft status")?,
                        brief: r.try_get("brief")?,
                        text: r.try_get("text")?,
                        voice_passed: r.try_get("voice_passed")?,
                        voice_issues: json_column(&issues)?,
                        approver: r.try_get("approver")?,
                        rejection_reason: r.try_get("rejection_reason")?,
                        publish_at: publish_at.map(from_micros),
                        published_url: r.try_get("published_url")?,
                        requested_at: from_micros(r.try_get("requested_at")?),
                        updated_at: from_micros(r.try_get("updated_at")?),
                        version: r.try_get("version")?,
                        position: r.try_get("position")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding drafts"))
        })
    }
}
