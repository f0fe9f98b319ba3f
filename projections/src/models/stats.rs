use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use cqrs_es::Aggregate as _;
use serde::Serialize;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::brand::Mention;
use plasma_domain::brand::{MentionEvent, SentimentLabel};
use plasma_domain::ids::BrandId;
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use crate::read_models::{ratio, ReadModels};
use crate::read_store::on_pool;
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

const ROWS_PER_UPSERT: usize = 500;

/// Daily volume and sentiment per brand, and competitor mentions for share of voice.
///
/// A batch is folded in memory first, so thousands of mentions become a handful of upserts.
#[derive(Debug, Clone, Copy)]
pub struct BrandStatsProjection;

#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    volume: i64,
    positive: i64,
    neutral: i64,
    negative: i64,
    sentiment_sum: i64,
}

type DayKey<'a> = (&'a str, Uuid, String);

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "brand_stats";

#[async_trait]
impl Projection for BrandStatsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_brand_daily", "rm_brand_competitor_daily"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_brand_daily{t} (
                tenant_id     TEXT   NOT NULL,
                brand_id      {uuid} NOT NULL,
                day           TEXT   NOT NULL,
                volume        BIGINT NOT NULL,
                positive      BIGINT NOT NULL,
                neutral       BIGINT NOT NULL,
                negative      BIGINT NOT NULL,
                sentiment_sum BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, brand_id, day)
            )",
            "CREATE TABLE IF NOT EXISTS rm_brand_competitor_daily{t} (
                tenant_id  TEXT   NOT NULL,
                brand_id   {uuid} NOT NULL,
                day        TEXT   NOT NULL,
                competitor TEXT   NOT NULL,
                mentions   BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, brand_id, day, competitor)
            )",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut days: BTreeMap<DayKey<'_>, Delta> = BTreeMap::new();
        let mut competitors: BTreeMap<(DayKey<'_>, String), i64> = BTreeMap::new();
        for event in events.iter().filter(|e| e.aggregate_type == Mention::TYPE) {
            let MentionEvent::MentionIngested(m) = event.decode::<MentionEvent>()? else {
                continue;
            };
            let key: DayKey<'_> = (
                event.tenant.as_str(),
                plasma_domain::AggregateId::as_uuid(&m.brand_id),
                m.published_at.format("%Y-%m-%d").to_string(),
            );
            let delta = days.entry(key.clone()).or_default();
            delta.volume += 1;
            delta.sentiment_sum += i64::from(m.sentiment.score_millis);
            match m.sentiment.label {
                SentimentLabel::Positive => delta.positive += 1,
                SentimentLabel::Neutral => delta.neutral += 1,
                SentimentLabel::Negative => delta.negative += 1,
            }
            for competitor in m.competitors_mentioned {
                *competitors.entry((key.clone(), competitor)).or_default() += 1;
            }
        }

        let daily = tables.name("rm_brand_daily");
        let days: Vec<_> = days.into_iter().collect();
        for chunk in days.chunks(ROWS_PER_UPSERT) {
            let head = format!(
                "INSERT INTO {daily} (tenant_id, brand_id, day, volume, positive, neutral, negative, sentiment_sum) "
            );
            let tail = format!(
                " ON CONFLICT (tenant_id, brand_id, day) DO UPDATE SET \
                 volume = {daily}.volume + excluded.volume, \
                 positive = {daily}.positive + excluded.positive, \
                 neutral = {daily}.neutral + excluded.neutral, \
                 negative = {daily}.negative + excluded.negative, \
                 sentiment_sum = {daily}.sentiment_sum + excluded.sentiment_sum"
            );
            on_tx!(tx, |c| {
                let mut query = sqlx::QueryBuilder::new(&head);
                query.push_values(chunk, |mut b, ((tenant, brand, day), d)| {
                    b.push_bind(*tenant)
                        .push_bind(*brand)
                        .push_bind(day.as_str())
                        .push_bind(d.volume)
                        .push_bind(d.positive)
                        .push_bind(d.neutral)
                        .push_bind(d.negative)
                        .push_bind(d.sentiment_sum);
                });
                query.push(&tail);
                query
                    .build()
                    .execute(c)
                    .await
                    .map(|_| ())
                    .map_err(ProjectionError::db("projecting daily stats"))?
            });
        }

        let per_competitor = tables.name("rm_brand_competitor_daily");
        let competitors: Vec<_> = competitors.into_iter().collect();
        for chunk in competitors.chunks(ROWS_PER_UPSERT) {
            let head = format!(
                "INSERT INTO {per_competitor} (tenant_id, brand_id, day, competitor, mentions) "
            );
            let tail = format!(
                " ON CONFLICT (tenant_id, brand_id, day, competitor) DO UPDATE SET \
                 mentions = {per_competitor}.mentions + excluded.mentions"
            );
            on_tx!(tx, |c| {
                let mut query = sqlx::QueryBuilder::new(&head);
                query.push_values(chunk, |mut b, (((tenant, brand, day), competitor), n)| {
                    b.push_bind(*tenant)
                        .push_bind(*brand)
                        .push_bind(day.as_str())
                        .push_bind(competitor.as_str())
                        .push_bind(*n);
                });
                query.push(&tail);
                query
                    .build()
                    .execute(c)
                    .await
                    .map(|_| ())
                    .map_err(ProjectionError::db("projecting competitor mentions"))?
            });
        }
        Ok(())
    }
}

// Queries.

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
    /// Daily stats for a brand over `from ..= to` (UTC days), with totals.
    pub async fn brand_stats(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<StatsView, ProjectionError> {
        self.settle(&[NAME]).await?;
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
}
