//! The brand context: brands, their keywords and competitors, their mentions and stats.

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json as JsonBody, Router};
use chrono::{DateTime, Days, NaiveDate, Utc};
use plasma_commands::MentionInput;
use plasma_domain::brand::{Brand, BrandCommand, SentimentLabel, VoiceGuidelines};
use plasma_domain::ids::BrandId;
use plasma_domain::AggregateId;
use plasma_projections::{BrandView, MentionFilter, MentionPage, Page, StatsView};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Authorized, Commands, Queries};
use crate::command::{Accepted, BulkOutcome, CommandOutcome, Target};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json, NoParams, PathId, ReadQuery};
use crate::state::AppState;

/// The most mentions one bulk ingest request may carry.
pub const MAX_MENTIONS_PER_REQUEST: usize = 10_000;
/// Default and largest page of mentions.
pub const DEFAULT_MENTION_LIMIT: u32 = 50;
pub const MAX_MENTION_LIMIT: u32 = Page::MAX_LIMIT;
/// Days of stats without `from`/`to`, and the most one request may ask for.
pub const DEFAULT_STATS_DAYS: u64 = 30;
pub const MAX_STATS_DAYS: i64 = 366;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/brands", post(register).get(list))
        .route("/brands/{id}", get(show))
        .route("/brands/{id}/keywords", put(change_keywords))
        .route("/brands/{id}/competitors", put(change_competitors))
        .route("/brands/{id}/archive", post(archive))
        .route("/brands/{id}/mentions", post(ingest_mentions).get(mentions))
        .route("/brands/{id}/stats", get(stats))
}

fn brand_url(id: Uuid) -> String {
    format!("/v1/brands/{id}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBrand {
    name: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    competitors: Vec<String>,
    #[serde(default)]
    voice: VoiceGuidelines,
}

/// Registers a brand under a new, server-minted id (UUIDv7).
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = tracing::field::Empty))]
async fn register(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    meta: CommandMeta,
    Json(body): Json<RegisterBrand>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let id = BrandId::from_uuid(Uuid::now_v7());
    let command = BrandCommand::Register {
        name: body.name,
        keywords: body.keywords,
        competitors: body.competitors,
        voice: body.voice,
        at: state.now(),
    };
    let outcome = state
        .execute::<Brand>(
            caller.tenant(),
            &meta,
            Target::New(id.as_uuid()),
            command,
            &(),
        )
        .await?;
    tracing::Span::current().record("plasma.brand.id", outcome.aggregate_id.to_string());
    let location = brand_url(outcome.aggregate_id);
    Ok(Accepted::created(outcome, location))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keywords {
    keywords: Vec<String>,
}

#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn change_keywords(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<BrandId>,
    meta: CommandMeta,
    Json(body): Json<Keywords>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = BrandCommand::ChangeKeywords {
        keywords: body.keywords,
        at: state.now(),
    };
    let outcome = state
        .execute::<Brand>(
            caller.tenant(),
            &meta,
            Target::Existing(id.as_uuid()),
            command,
            &(),
        )
        .await?;
    Ok(Accepted::ok(outcome).with_location(brand_url(id.as_uuid())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Competitors {
    competitors: Vec<String>,
}

#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn change_competitors(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<BrandId>,
    meta: CommandMeta,
    Json(body): Json<Competitors>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = BrandCommand::ChangeCompetitors {
        competitors: body.competitors,
        at: state.now(),
    };
    let outcome = state
        .execute::<Brand>(
            caller.tenant(),
            &meta,
            Target::Existing(id.as_uuid()),
            command,
            &(),
        )
        .await?;
    Ok(Accepted::ok(outcome).with_location(brand_url(id.as_uuid())))
}

/// Archives a brand; the request needs no body.
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn archive(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<BrandId>,
    meta: CommandMeta,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = BrandCommand::Archive { at: state.now() };
    let outcome = state
        .execute::<Brand>(
            caller.tenant(),
            &meta,
            Target::Existing(id.as_uuid()),
            command,
            &(),
        )
        .await?;
    Ok(Accepted::ok(outcome).with_location(brand_url(id.as_uuid())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestMentions {
    mentions: Vec<MentionBody>,
}

/// One mention as a source delivers it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MentionBody {
    source: String,
    external_id: String,
    #[serde(default)]
    author: String,
    text: String,
    #[serde(default)]
    url: Option<String>,
    published_at: DateTime<Utc>,
    #[serde(default)]
    language: Option<String>,
}

impl From<MentionBody> for MentionInput {
    fn from(m: MentionBody) -> Self {
        Self {
            source: m.source,
            external_id: m.external_id,
            author: m.author,
            text: m.text,
            url: m.url,
            published_at: m.published_at,
            language: m.language,
        }
    }
}

/// Bulk ingest: up to [`MAX_MENTIONS_PER_REQUEST`] mentions in one transaction; one invalid
/// mention refuses the whole request. Already known mentions count as duplicates.
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id, plasma.mentions = tracing::field::Empty))]
async fn ingest_mentions(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<BrandId>,
    meta: CommandMeta,
    Json(body): Json<IngestMentions>,
) -> Result<Accepted<BulkOutcome>, ApiError> {
    let count = body.mentions.len();
    tracing::Span::current().record("plasma.mentions", count);
    if count > MAX_MENTIONS_PER_REQUEST {
        return Err(ApiError::TooManyMentions {
            count,
            max: MAX_MENTIONS_PER_REQUEST,
        });
    }
    if count == 0 {
        return Err(ApiError::Validation {
            field: Some("mentions".to_owned()),
            message: "`mentions` must not be empty".to_owned(),
        });
    }
    let mentions = body.mentions.into_iter().map(MentionInput::from).collect();
    let outcome = state
        .ingest_mentions(caller.tenant(), &meta, id, mentions)
        .await?;
    Ok(Accepted::ok(outcome).with_location(format!("{}/mentions", brand_url(id.as_uuid()))))
}

#[derive(Debug, Serialize)]
struct Items<T> {
    items: Vec<T>,
}

/// The tenant's brands, by name.
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<Items<BrandView>>, ApiError> {
    state.wait_for(query.min_position, &["brands"]).await?;
    let items = state.read().brands(caller.tenant()).await?;
    Ok(JsonBody(Items { items }))
}

#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn show(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<BrandView>, ApiError> {
    state.wait_for(query.min_position, &["brands"]).await?;
    existing_brand(&state, &caller, id).await.map(JsonBody)
}

async fn existing_brand(
    state: &AppState,
    caller: &Authorized<Queries>,
    id: BrandId,
) -> Result<BrandView, ApiError> {
    state
        .read()
        .brand(caller.tenant(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("brand {id} does not exist")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MentionsQuery {
    /// Published at or after (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Published before (RFC 3339).
    to: Option<DateTime<Utc>>,
    sentiment: Option<SentimentLabel>,
    source: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// A brand's mentions, newest first, filtered and paged.
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn mentions(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<MentionsQuery>,
) -> Result<JsonBody<MentionPage>, ApiError> {
    let params = query.params;
    let limit = params.limit.unwrap_or(DEFAULT_MENTION_LIMIT);
    if !(1..=MAX_MENTION_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery {
            field: Some("limit".to_owned()),
            message: format!("`limit` must be between 1 and {MAX_MENTION_LIMIT}"),
        });
    }
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if from > to {
            return Err(ApiError::InvalidQuery {
                field: Some("from".to_owned()),
                message: "`from` must not be later than `to`".to_owned(),
            });
        }
    }
    state
        .wait_for(query.min_position, &["brands", "mentions"])
        .await?;
    existing_brand(&state, &caller, id).await?;
    let filter = MentionFilter {
        published_from: params.from,
        published_to: params.to,
        sentiment: params.sentiment,
        source: params.source,
    };
    let page = Page {
        limit,
        after: params.after,
    };
    let page = state
        .read()
        .mentions(caller.tenant(), id, &filter, &page)
        .await?;
    Ok(JsonBody(page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// First day (YYYY-MM-DD, UTC), inclusive.
    from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD, UTC), inclusive.
    to: Option<NaiveDate>,
}

/// Daily volume, sentiment and share of voice; the last 30 days by default.
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn stats(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<StatsQuery>,
) -> Result<JsonBody<StatsView>, ApiError> {
    let today = state.now().date_naive();
    let to = query.params.to.unwrap_or(today);
    let from = match query.params.from {
        Some(from) => from,
        None => to
            .checked_sub_days(Days::new(DEFAULT_STATS_DAYS - 1))
            .unwrap_or(to),
    };
    if from > to {
        return Err(ApiError::InvalidQuery {
            field: Some("from".to_owned()),
            message: "`from` must not be later than `to`".to_owned(),
        });
    }
    if (to - from).num_days() >= MAX_STATS_DAYS {
        return Err(ApiError::InvalidQuery {
            field: Some("from".to_owned()),
            message: format!("at most {MAX_STATS_DAYS} days per request"),
        });
    }
    state
        .wait_for(query.min_position, &["brands", "brand_stats"])
        .await?;
    existing_brand(&state, &caller, id).await?;
    let stats = state
        .read()
        .brand_stats(caller.tenant(), id, from, to)
        .await?;
    Ok(JsonBody(stats))
}
