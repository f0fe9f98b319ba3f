//! Reading the read models: tenant-scoped queries the HTTP layer serves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use plasma_domain::agent::AgentRunStatus;
use plasma_domain::brand::SentimentLabel;
use plasma_domain::content::{Channel, DraftStatus};
use plasma_domain::ids::{BrandId, DocumentId, DraftId, RunId};
use plasma_domain::research::DocumentStatus;
use plasma_domain::{AggregateId, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use uuid::Uuid;

use crate::read_store::on_pool;
use crate::{ProjectionError, ReadStore};

/// A page request: at most `limit` items after the `after` cursor.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// Where a page starts: the sort instant (micros) and id of the previous page's last item.
/// Clients see it as an opaque string; it is parsed at the edge, before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    micros: i64,
    id: Uuid,
}

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, ProjectionError> {
        raw.split_once('.')
            .and_then(|(us, id)| {
                Some(Self {
                    micros: us.parse().ok()?,
                    id: Uuid::parse_str(id).ok()?,
                })
            })
            .ok_or_else(|| ProjectionError::BadCursor(raw.chars().take(80).collect()))
    }

    fn key(self) -> (i64, Uuid) {
        (self.micros, self.id)
    }
}

impl Page {
    pub const MAX_LIMIT: u32 = 500;

    fn limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT))
    }
}

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
pub struct BrandView {
    pub brand_id: Uuid,
    pub name: String,
    pub keywords: Vec<String>,
    pub competitors: Vec<String>,
    pub archived: bool,
    pub registered_at: DateTime<Utc>,
    pub version: i64,
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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MentionPage {
    pub items: Vec<MentionView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyStats {
    pub day: String,
    pub volume: i64,
    pub positive: i64,
    pub neutral: i64,
    pub negative: i64,
    /// (positive - negative) / volume, in -1 ..= 1.
    pub net_sentiment: f64,
    /// Mean compound score, in -1 ..= 1.
    pub average_sentiment: f64,
    /// Mentions naming each competitor, among this brand's mentions.
    pub competitor_mentions: BTreeMap<String, i64>,
    /// volume / (volume + competitor mentions), in 0 ..= 1.
    pub share_of_voice: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    pub brand_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<DailyStats>,
    pub total: DailyStats,
}

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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftPage {
    pub items: Vec<DraftView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRunPage {
    pub items: Vec<AgentRunView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentPage {
    pub items: Vec<DocumentView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Tenant-scoped queries over every read model.
#[derive(Debug, Clone)]
pub struct ReadModels {
    store: ReadStore,
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn json_list(raw: &str) -> Vec<String> {
    serde_json::from_str(raw).unwrap_or_default()
}

/// Strictly decoded JSON from a TEXT column.
fn json_column<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(raw).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

/// A wire name read back from a column, parsed with the enum's own `parse`.
fn parsed<T>(raw: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, sqlx::Error> {
    parse(raw).ok_or_else(|| {
        sqlx::Error::Decode(
            format!(
                "unknown {what} `{}`",
                raw.chars().take(80).collect::<String>()
            )
            .into(),
        )
    })
}

fn index(value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl DailyStats {
    fn new(day: String, volume: i64, positive: i64, neutral: i64, negative: i64, sum: i64) -> Self {
        Self {
            day,
            volume,
            positive,
            neutral,
            negative,
            net_sentiment: ratio(positive - negative, volume),
            average_sentiment: ratio(sum, volume) / 1000.0,
            competitor_mentions: BTreeMap::new(),
            share_of_voice: 0.0,
        }
    }

    fn with_competitors(mut self, competitors: BTreeMap<String, i64>) -> Self {
        let others: i64 = competitors.values().sum();
        self.share_of_voice = ratio(self.volume, self.volume + others);
        self.competitor_mentions = competitors;
        self
    }
}

impl ReadModels {
    pub fn new(store: ReadStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &ReadStore {
        &self.store
    }

    pub async fn brands(&self, tenant: &TenantId) -> Result<Vec<BrandView>, ProjectionError> {
        self.brands_where(tenant, None).await
    }

    pub async fn brand(
        &self,
        tenant: &TenantId,
        brand: BrandId,
    ) -> Result<Option<BrandView>, ProjectionError> {
        Ok(self
            .brands_where(tenant, Some(brand))
            .await?
            .into_iter()
            .next())
    }

    async fn brands_where(
        &self,
        tenant: &TenantId,
        brand: Option<BrandId>,
    ) -> Result<Vec<BrandView>, ProjectionError> {
        let filter = if brand.is_some() {
            " AND brand_id = $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT brand_id, name, keywords, competitors, archived, registered_at, version \
             FROM rm_brands WHERE tenant_id = $1{filter} ORDER BY name, brand_id"
        );
        let brand = brand.map(|b| b.as_uuid());
        on_pool!(&self.store, |p| {
            let mut query = sqlx::query(&sql).bind(tenant.as_str());
            if let Some(brand) = brand {
                query = query.bind(brand);
            }
            let rows = query
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying brands"))?;
            rows.iter()
                .map(|r| {
                    let keywords: String = r.try_get("keywords")?;
                    let competitors: String = r.try_get("competitors")?;
                    Ok(BrandView {
                        brand_id: r.try_get("brand_id")?,
                        name: r.try_get("name")?,
                        keywords: json_list(&keywords),
                        competitors: json_list(&competitors),
                        archived: r.try_get("archived")?,
                        registered_at: from_micros(r.try_get("registered_at")?),
                        version: r.try_get("version")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding brands"))
        })
    }

    /// A brand's mentions, newest first, with keyset pagination.
    pub async fn mentions(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        filter: &MentionFilter,
        page: &Page,
    ) -> Result<MentionPage, ProjectionError> {
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
            Ok(MentionPage { items, next_cursor })
        })
    }

    /// Daily stats for a brand over `from ..= to` (UTC days), with totals.
    pub async fn brand_stats(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<StatsView, ProjectionError> {
        let (from_day, to_day) = (from.to_string(), to.to_string());
        let (daily, competitors) = on_pool!(&self.store, |p| {
            let daily: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT day, volume, positive, neutral, negative, sentiment_sum FROM rm_brand_daily \
                 WHERE tenant_id = $1 AND brand_id = $2 AND day >= $3 AND day <= $4 ORDER BY day",
            )
            .bind(tenant.as_str())
            .bind(brand.as_uuid())
            .bind(&from_day)
            .bind(&to_day)
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("querying daily stats"))?;
            let competitors: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT day, competitor, mentions FROM rm_brand_competitor_daily \
                 WHERE tenant_id = $1 AND brand_id = $2 AND day >= $3 AND day <= $4",
            )
            .bind(tenant.as_str())
            .bind(brand.as_uuid())
            .bind(&from_day)
            .bind(&to_day)
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("querying competitor mentions"))?;
            (daily, competitors)
        });
        let mut by_day: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        let mut total_competitors: BTreeMap<String, i64> = BTreeMap::new();
        for (day, competitor, n) in competitors {
            *total_competitors.entry(competitor.clone()).or_default() += n;
            by_day.entry(day).or_default().insert(competitor, n);
        }
        let mut totals = (0, 0, 0, 0, 0);
        let days = daily
            .into_iter()
            .map(|(day, volume, positive, neutral, negative, sum)| {
                totals.0 += volume;
                totals.1 += positive;
                totals.2 += neutral;
                totals.3 += negative;
                totals.4 += sum;
                let competitors = by_day.remove(&day).unwrap_or_default();
                DailyStats::new(day, volume, positive, neutral, negative, sum)
                    .with_competitors(competitors)
            })
            .collect();
        let total = DailyStats::new(
            format!("{from}..{to}"),
            totals.0,
            totals.1,
            totals.2,
            totals.3,
            totals.4,
        )
        .with_competitors(total_competitors);
        Ok(StatsView {
            brand_id: brand.as_uuid(),
            from,
            to,
            days,
            total,
        })
    }

    /// A tenant's drafts, most recently changed first, with keyset pagination.
    pub async fn drafts(
        &self,
        tenant: &TenantId,
        filter: &DraftFilter,
        page: &Page,
    ) -> Result<DraftPage, ProjectionError> {
        let after = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = self
            .select_drafts(tenant, None, filter, after, limit + 1)
            .await?;
        let next_cursor = paginate(&mut items, limit, |d| (d.updated_at, d.draft_id));
        Ok(DraftPage { items, next_cursor })
    }

    pub async fn draft(
        &self,
        tenant: &TenantId,
        draft: DraftId,
    ) -> Result<Option<DraftView>, ProjectionError> {
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

    /// A tenant's agent runs, newest started first, with keyset pagination.
    pub async fn agent_runs(
        &self,
        tenant: &TenantId,
        status: Option<AgentRunStatus>,
        page: &Page,
    ) -> Result<AgentRunPage, ProjectionError> {
        let after = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = self
            .select_agent_runs(tenant, None, status, after, limit + 1)
            .await?;
        let next_cursor = paginate(&mut items, limit, |r| (r.started_at, r.run_id));
        Ok(AgentRunPage { items, next_cursor })
    }

    pub async fn agent_run(
        &self,
        tenant: &TenantId,
        run: RunId,
    ) -> Result<Option<AgentRunView>, ProjectionError> {
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

    /// A tenant's research documents, newest ingested first, with keyset pagination.
    pub async fn documents(
        &self,
        tenant: &TenantId,
        page: &Page,
    ) -> Result<DocumentPage, ProjectionError> {
        let after = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = self
            .select_documents(tenant, None, after, limit + 1)
            .await?;
        let next_cursor = paginate(&mut items, limit, |d| (d.ingested_at, d.document_id));
        Ok(DocumentPage { items, next_cursor })
    }

    pub async fn document(
        &self,
        tenant: &TenantId,
        document: DocumentId,
    ) -> Result<Option<DocumentView>, ProjectionError> {
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

    /// The position `projection` has applied up to (0 if it never ran).
    pub async fn position(&self, projection: &str) -> Result<i64, ProjectionError> {
        let position: Option<i64> = on_pool!(&self.store, |p| sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE name = $1"
        )
        .bind(projection)
        .fetch_optional(p)
        .await
        .map_err(ProjectionError::db("reading a projection position"))?);
        Ok(position.unwrap_or(0))
    }

    /// Waits until every projection in `projections` has applied `position`; false on timeout.
    pub async fn wait_for(
        &self,
        projections: &[&str],
        position: i64,
        timeout: Duration,
    ) -> Result<bool, ProjectionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut reached = true;
            for projection in projections {
                if self.position(projection).await? < position {
                    reached = false;
                    break;
                }
            }
            if reached {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A keyset cursor: the sort instant (micros) and id of the last item of a page.
fn cursor_for(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{}", at.timestamp_micros(), id.simple())
}

/// Cuts a page fetched with one extra row down to `limit`, and returns the cursor to the next
/// page when that extra row was there.
fn paginate<T>(
    items: &mut Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> Option<String> {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|item| {
            let (at, id) = key(item);
            cursor_for(at, id)
        })
    } else {
        None
    }
}
