//! Reading the read models: tenant-scoped queries the HTTP layer serves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use plasma_domain::brand::SentimentLabel;
use plasma_domain::ids::BrandId;
use plasma_domain::{AggregateId, TenantId};
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use crate::read_store::on_pool;
use crate::{ProjectionError, ReadStore};

/// A page request: at most `limit` items after the opaque `after` cursor.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: u32,
    pub after: Option<String>,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MentionPage {
    pub items: Vec<MentionView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    pub brand_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<DailyStats>,
    pub total: DailyStats,
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
        let cursor = page.after.as_deref().map(parse_cursor).transpose()?;
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
                items.last().map(|m| {
                    format!(
                        "{}.{}",
                        m.published_at.timestamp_micros(),
                        m.mention_id.simple()
                    )
                })
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

fn parse_cursor(raw: &str) -> Result<(i64, Uuid), ProjectionError> {
    raw.split_once('.')
        .and_then(|(us, id)| Some((us.parse().ok()?, Uuid::parse_str(id).ok()?)))
        .ok_or_else(|| ProjectionError::BadCursor(raw.chars().take(80).collect()))
}
