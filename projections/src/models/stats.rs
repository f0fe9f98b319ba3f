use std::collections::BTreeMap;

use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use plasma_commands::RecordedEvent;
use plasma_domain::brand::Mention;
use plasma_domain::brand::{MentionEvent, SentimentLabel};
use plasma_domain::Context;
use uuid::Uuid;

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

#[async_trait]
impl Projection for BrandStatsProjection {
    fn name(&self) -> &'static str {
        "brand_stats"
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
