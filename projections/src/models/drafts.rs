use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use plasma_commands::RecordedEvent;
use plasma_domain::content::Draft;
use plasma_domain::content::{DraftEvent, DraftStatus};
use plasma_domain::AggregateId;
use plasma_domain::Context;

use super::{json_text, micros, update_row, Value};
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

#[async_trait]
impl Projection for DraftsProjection {
    fn name(&self) -> &'static str {
        "drafts"
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
