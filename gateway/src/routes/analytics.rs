//! Brand analytics: timelines, share of voice, authors, sources and trending terms, from the
//! `brand_activity` read model.

use axum::extract::State;
use axum::Json as JsonBody;
use chrono::{DateTime, Duration, Utc};
use plasma_domain::ids::BrandId;
use plasma_projections::{AuthorsView, Interval, Ranked, TimelinePoint, TrendingTerm, VoicePoint};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authorized, Queries};
use crate::error::ApiError;
use crate::extract::{PathId, ReadQuery};
use crate::state::AppState;

/// The widest range one request may ask for.
const MAX_RANGE_DAYS: i64 = 366;
/// Hourly timelines are at most a month long (744 points).
const MAX_HOURLY_DAYS: i64 = 31;
const DEFAULT_RANGE_DAYS: i64 = 7;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(timeline))
        .routes(routes!(share_of_voice))
        .routes(routes!(authors))
        .routes(routes!(sources))
        .routes(routes!(trending))
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidQuery {
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// `from .. to`, by default the 7 days up to now: at most `max_days` long (the last ones are
/// kept), empty when `from` is not before `to`.
fn range(
    state: &AppState,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    max_days: i64,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    // Every pair the schema allows is answered: a window longer than `max_days` keeps its last
    // `max_days` days, and a `from` at or after `to` is an empty window. The answer states the
    // window it covers.
    let to = to.unwrap_or_else(|| state.now());
    let from = from
        .unwrap_or(to - Duration::days(DEFAULT_RANGE_DAYS))
        .clamp(to - Duration::days(max_days), to);
    Ok((from, to))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RangeQuery {
    /// Published at or after (RFC 3339); 7 days before `to` by default. A window longer than
    /// 366 days keeps its last 366; a `from` at or after `to` is an empty window.
    from: Option<DateTime<Utc>>,
    /// Published before (RFC 3339); now by default.
    to: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// `hour` (at most 31 days) or `day` (the default).
    #[param(inline)]
    interval: Option<Interval>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Timeline {
    interval: Interval,
    /// The window answered: `to` as asked (now by default), `from` within the interval's
    /// longest window (31 days hourly, 366 daily) before it.
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    points: Vec<TimelinePoint>,
}

/// Volume and sentiment per hour or per day (event time: `published_at`, UTC buckets).
#[utoipa::path(
    get,
    path = "/brands/{id}/timeline",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), TimelineQuery),
    responses((status = 200, description = "Buckets with mentions, oldest first", body = Timeline))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn timeline(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<TimelineQuery>,
) -> Result<JsonBody<Timeline>, ApiError> {
    let interval = query.params.interval.unwrap_or(Interval::Day);
    let max = match interval {
        Interval::Hour => MAX_HOURLY_DAYS,
        Interval::Day => MAX_RANGE_DAYS,
    };
    let (from, to) = range(&state, query.params.from, query.params.to, max)?;
    let reads = state.read().after(query.min_position);
    super::brands::existing_brand(&reads, &caller, id).await?;
    let points = reads
        .brand_timeline(caller.tenant(), id, from, to, interval)
        .await?;
    Ok(JsonBody(Timeline {
        interval,
        from,
        to,
        points,
    }))
}

/// Share of voice per day against each competitor: the brand's mentions against the mentions
/// naming the competitor among them.
#[utoipa::path(
    get,
    path = "/brands/{id}/share-of-voice",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), RangeQuery),
    responses((status = 200, description = "Days with mentions, oldest first", body = Vec<VoicePoint>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn share_of_voice(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<RangeQuery>,
) -> Result<JsonBody<Vec<VoicePoint>>, ApiError> {
    let (from, to) = range(&state, query.params.from, query.params.to, MAX_RANGE_DAYS)?;
    let reads = state.read().after(query.min_position);
    super::brands::existing_brand(&reads, &caller, id).await?;
    Ok(JsonBody(
        reads
            .brand_share_of_voice(caller.tenant(), id, from, to)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuthorsQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Page size, 1 ..= 500; 20 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(
        min_length = 1,
        max_length = 2068,
        pattern = r"^[0-9]{1,18}\.([0-9a-f]{2})*$"
    )]
    after: Option<String>,
}

/// Unique authors over whole UTC days of the range, and the most prolific ones, keyset paged.
#[utoipa::path(
    get,
    path = "/brands/{id}/authors",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), AuthorsQuery),
    responses((status = 200, description = "Authors", body = AuthorsView))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn authors(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<AuthorsQuery>,
) -> Result<JsonBody<AuthorsView>, ApiError> {
    let params = query.params;
    let limit = params.limit.unwrap_or(20);
    if !(1..=500).contains(&limit) {
        return Err(invalid("limit", "`limit` must be between 1 and 500"));
    }
    let (from, to) = range(&state, params.from, params.to, MAX_RANGE_DAYS)?;
    let reads = state.read().after(query.min_position);
    super::brands::existing_brand(&reads, &caller, id).await?;
    let view = reads
        .brand_authors(
            caller.tenant(),
            id,
            from,
            to,
            i64::from(limit),
            params.after.as_deref(),
        )
        .await?;
    Ok(JsonBody(view))
}

/// Mentions by source over whole UTC days of the range, most first.
#[utoipa::path(
    get,
    path = "/brands/{id}/sources",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), RangeQuery),
    responses((status = 200, description = "Sources", body = Vec<Ranked>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn sources(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<RangeQuery>,
) -> Result<JsonBody<Vec<Ranked>>, ApiError> {
    let (from, to) = range(&state, query.params.from, query.params.to, MAX_RANGE_DAYS)?;
    let reads = state.read().after(query.min_position);
    super::brands::existing_brand(&reads, &caller, id).await?;
    Ok(JsonBody(
        reads.brand_sources(caller.tenant(), id, from, to).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TrendingQuery {
    /// The window's start; one day before `to` by default.
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Days before the window its baseline covers, 1 ..= 90; 7 by default.
    #[param(minimum = 1, maximum = 90)]
    baseline_days: Option<u32>,
    /// Only hashtags.
    hashtags: Option<bool>,
    /// A term needs at least this many mentions in the window (0 counts as 1); 3 by default.
    #[param(maximum = 1000000)]
    min_mentions: Option<u32>,
    /// At most this many terms, 1 ..= 100; 20 by default.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Terms and hashtags of the window (whole UTC days) that stand out against the days before
/// it: a Poisson z-score with a pseudo-count, so rare noise does not dominate.
#[utoipa::path(
    get,
    path = "/brands/{id}/trending",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), TrendingQuery),
    responses((status = 200, description = "Trending terms, best first", body = Vec<TrendingTerm>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn trending(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<TrendingQuery>,
) -> Result<JsonBody<Vec<TrendingTerm>>, ApiError> {
    let params = query.params;
    let baseline_days = params.baseline_days.unwrap_or(7);
    if !(1..=90).contains(&baseline_days) {
        return Err(invalid(
            "baseline_days",
            "`baseline_days` must be between 1 and 90",
        ));
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "`limit` must be between 1 and 100"));
    }
    let min_mentions = params.min_mentions.unwrap_or(3).max(1);
    let to = params.to.unwrap_or_else(|| state.now());
    let from = params.from.unwrap_or(to - Duration::days(1));
    let (from, to) = range(&state, Some(from), Some(to), 31)?;
    let reads = state.read().after(query.min_position);
    super::brands::existing_brand(&reads, &caller, id).await?;
    let terms = reads
        .brand_trending(
            caller.tenant(),
            id,
            from,
            to,
            i64::from(baseline_days),
            params.hashtags.unwrap_or(false),
            i64::from(min_mentions),
            limit as usize,
        )
        .await?;
    Ok(JsonBody(terms))
}
