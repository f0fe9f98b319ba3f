//! Brand analytics: hourly volume and sentiment, and per day the authors, terms (hashtags
//! included), sources and competitors of a brand's mentions. Timelines, top authors, trending
//! terms, share of voice over time and volume by source are queries over it.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::brand::terms::{terms, trend_score};
use plasma_domain::brand::{Mention, MentionEvent, SentimentLabel};
use plasma_domain::ids::BrandId;
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use crate::read_models::{ratio, ReadModels};
use crate::read_store::{on_pool, on_tx};
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "brand_activity";

const ROWS_PER_UPSERT: usize = 400;
const SECONDS_PER_HOUR: i64 = 3600;
const HOURS_PER_DAY: i64 = 24;

#[derive(Debug, Clone, Copy)]
pub struct BrandActivityProjection;

#[derive(Debug, Default, Clone, Copy)]
struct Hourly {
    volume: i64,
    positive: i64,
    neutral: i64,
    negative: i64,
    sentiment_sum: i64,
}

/// What a per-day count counts.
const AUTHOR: &str = "author";
const TERM: &str = "term";
const SOURCE: &str = "source";
const COMPETITOR: &str = "competitor";

/// (tenant, brand, day, kind, value) → mentions.
type Counts<'a> = BTreeMap<(&'a str, Uuid, i64, &'static str, String), i64>;

#[async_trait]
impl Projection for BrandActivityProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_activity_hourly", "rm_activity_counts"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_activity_hourly{t} (
                tenant_id     TEXT   NOT NULL,
                brand_id      {uuid} NOT NULL,
                hour          BIGINT NOT NULL,
                volume        BIGINT NOT NULL,
                positive      BIGINT NOT NULL,
                neutral       BIGINT NOT NULL,
                negative      BIGINT NOT NULL,
                sentiment_sum BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, brand_id, hour)
            )",
            // Per day: mentions by author, term (hashtags keep their '#'), source and
            // competitor named.
            "CREATE TABLE IF NOT EXISTS rm_activity_counts{t} (
                tenant_id TEXT   NOT NULL,
                brand_id  {uuid} NOT NULL,
                day       BIGINT NOT NULL,
                kind      TEXT   NOT NULL,
                value     TEXT   NOT NULL,
                mentions  BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, brand_id, kind, day, value)
            )",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut hourly: BTreeMap<(&str, Uuid, i64), Hourly> = BTreeMap::new();
        let mut counts: Counts<'_> = BTreeMap::new();
        for event in events
            .iter()
            .filter(|e| e.aggregate_type == Mention::TYPE && e.event_type == "MentionIngested")
        {
            let MentionEvent::MentionIngested(m) = event.decode::<MentionEvent>()? else {
                continue;
            };
            let tenant = event.tenant.as_str();
            let brand = m.brand_id.as_uuid();
            let hour = m.published_at.timestamp().div_euclid(SECONDS_PER_HOUR);
            let day = hour.div_euclid(HOURS_PER_DAY);
            let h = hourly.entry((tenant, brand, hour)).or_default();
            h.volume += 1;
            h.sentiment_sum += i64::from(m.sentiment.score_millis);
            match m.sentiment.label {
                SentimentLabel::Positive => h.positive += 1,
                SentimentLabel::Neutral => h.neutral += 1,
                SentimentLabel::Negative => h.negative += 1,
            }
            let mut count = |kind: &'static str, value: String| {
                *counts.entry((tenant, brand, day, kind, value)).or_default() += 1;
            };
            if !m.author.is_empty() {
                count(AUTHOR, m.author.clone());
            }
            for term in terms(&m.text) {
                count(TERM, term);
            }
            count(SOURCE, m.source.clone());
            for competitor in &m.competitors_mentioned {
                count(COMPETITOR, competitor.clone());
            }
        }
        upsert_hourly(tx, &tables.name("rm_activity_hourly"), hourly).await?;
        upsert_counts(tx, &tables.name("rm_activity_counts"), counts).await
    }
}

async fn upsert_hourly(
    tx: &mut ReadTx,
    table: &str,
    hourly: BTreeMap<(&str, Uuid, i64), Hourly>,
) -> Result<(), ProjectionError> {
    let rows: Vec<_> = hourly.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let head = format!(
            "INSERT INTO {table} (tenant_id, brand_id, hour, volume, positive, neutral, negative, sentiment_sum) "
        );
        let tail = format!(
            " ON CONFLICT (tenant_id, brand_id, hour) DO UPDATE SET \
             volume = {table}.volume + excluded.volume, \
             positive = {table}.positive + excluded.positive, \
             neutral = {table}.neutral + excluded.neutral, \
             negative = {table}.negative + excluded.negative, \
             sentiment_sum = {table}.sentiment_sum + excluded.sentiment_sum"
        );
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(&head);
            query.push_values(chunk, |mut b, ((tenant, brand, hour), h)| {
                b.push_bind(*tenant)
                    .push_bind(*brand)
                    .push_bind(*hour)
                    .push_bind(h.volume)
                    .push_bind(h.positive)
                    .push_bind(h.neutral)
                    .push_bind(h.negative)
                    .push_bind(h.sentiment_sum);
            });
            query.push(&tail);
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting hourly activity"))?
        });
    }
    Ok(())
}

async fn upsert_counts(
    tx: &mut ReadTx,
    table: &str,
    counts: Counts<'_>,
) -> Result<(), ProjectionError> {
    let rows: Vec<_> = counts.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let head =
            format!("INSERT INTO {table} (tenant_id, brand_id, day, kind, value, mentions) ");
        let tail = format!(
            " ON CONFLICT (tenant_id, brand_id, kind, day, value) DO UPDATE SET \
             mentions = {table}.mentions + excluded.mentions"
        );
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(&head);
            query.push_values(chunk, |mut b, ((tenant, brand, day, kind, value), n)| {
                b.push_bind(*tenant)
                    .push_bind(*brand)
                    .push_bind(*day)
                    .push_bind(*kind)
                    .push_bind(value.as_str())
                    .push_bind(*n);
            });
            query.push(&tail);
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting daily activity"))?
        });
    }
    Ok(())
}

// Queries.

/// Buckets of a timeline.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    fn hours(self) -> i64 {
        match self {
            Self::Hour => 1,
            Self::Day => HOURS_PER_DAY,
        }
    }
}

/// One bucket of a brand's timeline.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    pub start: DateTime<Utc>,
    pub volume: i64,
    pub positive: i64,
    pub neutral: i64,
    pub negative: i64,
    /// (positive - negative) / volume.
    pub net_sentiment: f64,
    /// Mean compound score, -1 ..= 1.
    pub average_sentiment: f64,
}

/// One bucket of share of voice: the brand's mentions against the mentions naming each
/// competitor among them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoicePoint {
    pub start: DateTime<Utc>,
    pub volume: i64,
    pub competitor_mentions: BTreeMap<String, i64>,
    /// volume / (volume + mentions naming the competitor), per competitor.
    pub share_against: BTreeMap<String, f64>,
    /// volume / (volume + all competitor mentions).
    pub share_of_voice: f64,
}

/// A value (an author, a term, a source) and its mentions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub value: String,
    pub mentions: i64,
    /// Of the range's mentions, 0 ..= 1.
    pub share: f64,
}

/// Authors in a range: how many, and who wrote most.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorsView {
    pub unique_authors: i64,
    pub mentions: i64,
    pub top: Vec<Ranked>,
    /// The `after` of the next page of `top`, if there is one.
    pub next_cursor: Option<String>,
}

/// A term whose mentions in the window stand out against its baseline.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendingTerm {
    pub term: String,
    pub hashtag: bool,
    /// Mentions containing it in the window.
    pub mentions: i64,
    /// Mentions containing it in the baseline days.
    pub baseline_mentions: i64,
    /// What the baseline rate predicts for the window.
    pub expected: f64,
    /// (mentions - expected) / sqrt(expected + 1): rare noise does not dominate.
    pub score: f64,
}

fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour * SECONDS_PER_HOUR, 0).unwrap_or_default()
}

fn day_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SECONDS_PER_HOUR * HOURS_PER_DAY)
}

fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SECONDS_PER_HOUR)
}

/// A keyset cursor over a ranking: the last row's count and value.
fn rank_cursor(mentions: i64, value: &str) -> String {
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{mentions}.{hex}")
}

fn parse_rank_cursor(raw: &str) -> Result<(i64, String), ProjectionError> {
    let bad = || ProjectionError::BadCursor(raw.chars().take(80).collect());
    let (count, hex) = raw.split_once('.').ok_or_else(bad)?;
    let count: i64 = count.parse().map_err(|_| bad())?;
    if hex.len() % 2 != 0 || hex.len() > 2048 {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    // Only this API writes cursors; a hand-made one that is not UTF-8 still names a place.
    Ok((count, String::from_utf8_lossy(&bytes).into_owned()))
}

impl ReadModels {
    /// Volume and sentiment per hour or day over `from .. to`.
    pub async fn brand_timeline(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: Interval,
    ) -> Result<Vec<TimelinePoint>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let width = interval.hours();
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = on_pool!(&self.store, |p| {
            let sql = format!(
                "SELECT (hour - (((hour % {width}) + {width}) % {width})) AS bucket, \
                 CAST(SUM(volume) AS BIGINT), CAST(SUM(positive) AS BIGINT), \
                 CAST(SUM(neutral) AS BIGINT), CAST(SUM(negative) AS BIGINT), \
                 CAST(SUM(sentiment_sum) AS BIGINT) \
                 FROM rm_activity_hourly WHERE tenant_id = $1 AND brand_id = $2 \
                 AND hour >= $3 AND hour < $4 GROUP BY bucket ORDER BY bucket"
            );
            sqlx::query_as(&sql)
                .bind(tenant.as_str())
                .bind(brand.as_uuid())
                .bind(hour_of(from))
                .bind(hour_of(to))
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying a timeline"))?
        });
        Ok(rows
            .into_iter()
            .map(
                |(bucket, volume, positive, neutral, negative, sum)| TimelinePoint {
                    start: hour_start(bucket),
                    volume,
                    positive,
                    neutral,
                    negative,
                    net_sentiment: ratio(positive - negative, volume),
                    average_sentiment: ratio(sum, volume) / 1000.0,
                },
            )
            .collect())
    }

    /// Share of voice per day over `from .. to`. Competitors are counted per day: an hourly
    /// series would cost a row per (hour, competitor) for a number people read per day.
    pub async fn brand_share_of_voice(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<VoicePoint>, ProjectionError> {
        let points = self
            .brand_timeline(tenant, brand, from, to, Interval::Day)
            .await?;
        let rows: Vec<(i64, String, i64)> = on_pool!(&self.store, |p| {
            sqlx::query_as(
                "SELECT day, value, CAST(SUM(mentions) AS BIGINT) FROM rm_activity_counts \
                 WHERE tenant_id = $1 AND brand_id = $2 AND kind = 'competitor' \
                 AND day >= $3 AND day < $4 \
                 GROUP BY day, value",
            )
            .bind(tenant.as_str())
            .bind(brand.as_uuid())
            .bind(day_of(from))
            .bind(day_of(
                to + chrono::Duration::days(1) - chrono::Duration::seconds(1),
            ))
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("querying competitor mentions"))?
        });
        let mut by_day: HashMap<i64, BTreeMap<String, i64>> = HashMap::new();
        for (day, competitor, n) in rows {
            by_day.entry(day).or_default().insert(competitor, n);
        }
        Ok(points
            .into_iter()
            .map(|point| {
                let competitors = by_day.remove(&day_of(point.start)).unwrap_or_default();
                let all: i64 = competitors.values().sum();
                VoicePoint {
                    start: point.start,
                    volume: point.volume,
                    share_against: competitors
                        .iter()
                        .map(|(c, n)| (c.clone(), ratio(point.volume, point.volume + n)))
                        .collect(),
                    share_of_voice: ratio(point.volume, point.volume + all),
                    competitor_mentions: competitors,
                }
            })
            .collect())
    }

    /// Unique authors and the most prolific ones over the days of `from .. to`, keyset paged.
    pub async fn brand_authors(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<AuthorsView, ProjectionError> {
        self.settle(&[NAME]).await?;
        let after = after.map(parse_rank_cursor).transpose()?;
        let (first, last) = (day_of(from), day_of(to - chrono::Duration::seconds(1)));
        let (unique, mentions, mut top): (i64, i64, Vec<(String, i64)>) = on_pool!(
            &self.store,
            |p| {
                let (unique, mentions): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(DISTINCT value), CAST(SUM(mentions) AS BIGINT) FROM rm_activity_counts \
                 WHERE tenant_id = $1 AND brand_id = $2 AND kind = 'author' \
                 AND day >= $3 AND day <= $4",
            )
            .bind(tenant.as_str())
            .bind(brand.as_uuid())
            .bind(first)
            .bind(last)
            .fetch_one(p)
            .await
            .map_err(ProjectionError::db("counting authors"))?;
                let mut query = sqlx::QueryBuilder::new(
                "SELECT value, total FROM (SELECT value, CAST(SUM(mentions) AS BIGINT) AS total FROM rm_activity_counts \
                 WHERE kind = 'author' AND tenant_id = ",
            );
                query.push_bind(tenant.as_str());
                query.push(" AND brand_id = ").push_bind(brand.as_uuid());
                query.push(" AND day >= ").push_bind(first);
                query.push(" AND day <= ").push_bind(last);
                query.push(" GROUP BY value) ranked");
                if let Some((count, value)) = &after {
                    query.push(" WHERE total < ").push_bind(*count);
                    query.push(" OR (total = ").push_bind(*count);
                    query
                        .push(" AND value > ")
                        .push_bind(value.clone())
                        .push(")");
                }
                query
                    .push(" ORDER BY total DESC, value LIMIT ")
                    .push_bind(limit + 1);
                let top: Vec<(String, i64)> = query
                    .build_query_as()
                    .fetch_all(p)
                    .await
                    .map_err(ProjectionError::db("ranking authors"))?;
                (unique, mentions.unwrap_or(0), top)
            }
        );
        let next_cursor = if top.len() as i64 > limit {
            top.truncate(limit as usize);
            top.last().map(|(value, n)| rank_cursor(*n, value))
        } else {
            None
        };
        Ok(AuthorsView {
            unique_authors: unique,
            mentions,
            top: top
                .into_iter()
                .map(|(value, n)| Ranked {
                    share: ratio(n, mentions),
                    value,
                    mentions: n,
                })
                .collect(),
            next_cursor,
        })
    }

    /// Mentions by source over the days of `from .. to`, most first.
    pub async fn brand_sources(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Ranked>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let rows: Vec<(String, i64)> = on_pool!(&self.store, |p| {
            sqlx::query_as(
                "SELECT value, CAST(SUM(mentions) AS BIGINT) AS total FROM rm_activity_counts \
                 WHERE tenant_id = $1 AND brand_id = $2 AND kind = 'source' \
                 AND day >= $3 AND day <= $4 \
                 GROUP BY value ORDER BY total DESC, value",
            )
            .bind(tenant.as_str())
            .bind(brand.as_uuid())
            .bind(day_of(from))
            .bind(day_of(to - chrono::Duration::seconds(1)))
            .fetch_all(p)
            .await
            .map_err(ProjectionError::db("querying sources"))?
        });
        let all: i64 = rows.iter().map(|(_, n)| n).sum();
        Ok(rows
            .into_iter()
            .map(|(value, mentions)| Ranked {
                share: ratio(mentions, all),
                value,
                mentions,
            })
            .collect())
    }

    /// Terms (or only hashtags) of the window's days that stand out against the `baseline_days`
    /// before it, best first; a term needs at least `min_mentions` in the window.
    #[allow(clippy::too_many_arguments)]
    pub async fn brand_trending(
        &self,
        tenant: &TenantId,
        brand: BrandId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        baseline_days: i64,
        hashtags_only: bool,
        min_mentions: i64,
        limit: usize,
    ) -> Result<Vec<TrendingTerm>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let (first, last) = (day_of(from), day_of(to - chrono::Duration::seconds(1)));
        let window_days = (last - first + 1).max(1);
        let base_first = first - baseline_days;
        let filter = if hashtags_only {
            " AND value LIKE '#%'"
        } else {
            ""
        };
        let rows: Vec<(String, i64, i64)> = on_pool!(&self.store, |p| {
            let sql = format!(
                "SELECT value, \
                 CAST(SUM(CASE WHEN day >= $3 THEN mentions ELSE 0 END) AS BIGINT) AS window_count, \
                 CAST(SUM(CASE WHEN day < $3 THEN mentions ELSE 0 END) AS BIGINT) AS base_count \
                 FROM rm_activity_counts WHERE tenant_id = $1 AND brand_id = $2 AND kind = 'term' \
                 AND day >= $4 AND day <= $5{filter} GROUP BY value \
                 HAVING SUM(CASE WHEN day >= $3 THEN mentions ELSE 0 END) >= $6"
            );
            sqlx::query_as(&sql)
                .bind(tenant.as_str())
                .bind(brand.as_uuid())
                .bind(first)
                .bind(base_first)
                .bind(last)
                .bind(min_mentions)
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying trending terms"))?
        });
        let scale = window_days as f64 / baseline_days.max(1) as f64;
        let mut terms: Vec<TrendingTerm> = rows
            .into_iter()
            .map(|(term, mentions, base)| {
                let expected = base as f64 * scale;
                TrendingTerm {
                    hashtag: term.starts_with('#'),
                    score: trend_score(mentions.max(0) as u64, expected),
                    term,
                    mentions,
                    baseline_mentions: base,
                    expected,
                }
            })
            .filter(|t| t.score > 0.0)
            .collect();
        terms.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.term.cmp(&b.term)));
        terms.truncate(limit);
        Ok(terms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rank_cursors_round_trip_any_text_and_refuse_garbage() {
        let cursor = rank_cursor(7, "@ana.b ü");
        assert_eq!(
            parse_rank_cursor(&cursor).unwrap(),
            (7, "@ana.b ü".to_owned())
        );
        for bad in ["", "x.00", "7.0", "7.zz", "7"] {
            assert!(parse_rank_cursor(bad).is_err(), "{bad}");
        }
    }
}
