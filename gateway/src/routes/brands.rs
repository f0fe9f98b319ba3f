//! The brand context: brands, their keywords and competitors, their mentions and stats.

use axum::extract::State;
use axum::Json as JsonBody;
use chrono::{DateTime, Days, NaiveDate, Utc};
use plasma_domain::brand::{Brand, BrandCommand, MentionInput, SentimentLabel, VoiceGuidelines};
use plasma_domain::ids::BrandId;
use plasma_domain::AggregateId;
use plasma_projections::{
    BrandView, MentionFilter, MentionView, Page, PageRequest, ReadModels, StatsView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Authorized, Commands, Queries};
use crate::command::{Accepted, BulkOutcome, CommandOutcome};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json, NoParams, PathId, ReadQuery};
use crate::state::AppState;

/// The most mentions one bulk ingest request may carry.
pub const MAX_MENTIONS_PER_REQUEST: usize = 10_000;
/// Default and largest page of mentions.
pub const DEFAULT_MENTION_LIMIT: u32 = 50;
pub const MAX_MENTION_LIMIT: u32 = PageRequest::MAX_LIMIT;
/// Days of stats without `from`/`to`, and the most one request may ask for.
pub const DEFAULT_STATS_DAYS: u64 = 30;
pub const MAX_STATS_DAYS: i64 = 366;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(show))
        .routes(routes!(change_keywords))
        .routes(routes!(change_competitors))
        .routes(routes!(archive))
        .routes(routes!(ingest_mentions, mentions))
        .routes(routes!(stats))
}

fn brand_url(id: Uuid) -> String {
    format!("/v1/brands/{id}")
}

#[derive(Debug, Deserialize, ToSchema)]
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

/// Registers a brand under a new server-minted id: a UUIDv7, or derived from the
/// `Idempotency-Key` when one is sent, so a retry lands on the same aggregate.
#[utoipa::path(
    post,
    path = "/brands",
    tag = "brands",
    request_body = RegisterBrand,
    responses(
        (status = 201, description = "Registered; `Location` is the brand's URL", body = CommandOutcome),
        (status = 422, description = "`validation_failed`: a name, keyword, competitor or voice guideline was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = tracing::field::Empty))]
async fn register(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    meta: CommandMeta,
    Json(body): Json<RegisterBrand>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let id = BrandId::from_uuid(meta.new_aggregate_id());
    let command = BrandCommand::Register {
        name: body.name,
        keywords: body.keywords,
        competitors: body.competitors,
        voice: body.voice,
        at: state.now(),
    };
    let outcome = state
        .execute::<Brand>(caller.tenant(), &meta, id, command)
        .await?;
    tracing::Span::current().record("plasma.brand.id", outcome.aggregate_id.to_string());
    let location = brand_url(outcome.aggregate_id);
    Ok(Accepted::created(outcome, location))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Keywords {
    keywords: Vec<String>,
}

/// Replaces the brand's keywords (trimmed, deduplicated); the same list again changes nothing.
#[utoipa::path(
    put,
    path = "/brands/{id}/keywords",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id")),
    request_body = Keywords,
    responses(
        (status = 200, description = "Changed (or already so: `events_appended` 0)", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the brand is archived"),
        (status = 422, description = "`validation_failed`: a keyword was refused"),
    )
)]
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
        .execute::<Brand>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(brand_url(id.as_uuid())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Competitors {
    competitors: Vec<String>,
}

/// Replaces the brand's competitors; the same list again changes nothing.
#[utoipa::path(
    put,
    path = "/brands/{id}/competitors",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id")),
    request_body = Competitors,
    responses(
        (status = 200, description = "Changed (or already so: `events_appended` 0)", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the brand is archived"),
        (status = 422, description = "`validation_failed`: a competitor was refused, or is the brand itself"),
    )
)]
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
        .execute::<Brand>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(brand_url(id.as_uuid())))
}

/// Archives a brand; the request needs no body.
#[utoipa::path(
    post,
    path = "/brands/{id}/archive",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id")),
    responses(
        (status = 200, description = "Archived", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the brand is already archived"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn archive(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<BrandId>,
    meta: CommandMeta,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = BrandCommand::Archive { at: state.now() };
    let outcome = state
        .execute::<Brand>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(brand_url(id.as_uuid())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IngestMentions {
    mentions: Vec<MentionInput>,
}

/// Bulk ingest: up to 10,000 mentions (`MAX_MENTIONS_PER_REQUEST`) in one transaction; one
/// invalid mention refuses the whole request. Already known mentions count as duplicates.
#[utoipa::path(
    post,
    path = "/brands/{id}/mentions",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id")),
    request_body = IngestMentions,
    responses(
        (status = 200, description = "Ingested; `Location` lists the brand's mentions", body = BulkOutcome),
        (status = 409, description = "`illegal_transition`: the brand is archived"),
        (status = 413, description = "`too_many_mentions`: more than 10,000 in one request"),
        (status = 422, description = "`validation_failed`: a mention was refused (`field` is `mentions[i].<field>`), or the list is empty"),
    )
)]
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
    let outcome = state
        .ingest_mentions(caller.tenant(), &meta, id, body.mentions)
        .await?;
    Ok(Accepted::ok(outcome).with_location(format!("{}/mentions", brand_url(id.as_uuid()))))
}

/// The tenant's brands.
#[derive(Debug, Serialize, ToSchema)]
struct BrandList {
    items: Vec<BrandView>,
}

/// The tenant's brands, by name.
#[utoipa::path(
    get,
    path = "/brands",
    tag = "brands",
    responses((status = 200, description = "Every brand of the tenant", body = BrandList))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<BrandList>, ApiError> {
    let reads = state.read().after(query.min_position);
    let items = reads.brands(caller.tenant()).await?;
    Ok(JsonBody(BrandList { items }))
}

/// One brand as it stands.
#[utoipa::path(
    get,
    path = "/brands/{id}",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id")),
    responses((status = 200, description = "The brand", body = BrandView))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn show(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<BrandView>, ApiError> {
    let reads = state.read().after(query.min_position);
    existing_brand(&reads, &caller, id).await.map(JsonBody)
}

pub(crate) async fn existing_brand(
    reads: &ReadModels,
    caller: &Authorized<Queries>,
    id: BrandId,
) -> Result<BrandView, ApiError> {
    reads
        .brand(caller.tenant(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("brand {id} does not exist")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MentionsQuery {
    /// Published at or after (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Published before (RFC 3339).
    to: Option<DateTime<Utc>>,
    #[param(inline)]
    sentiment: Option<SentimentLabel>,
    source: Option<String>,
    /// Page size, 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$")]
    after: Option<String>,
}

/// A brand's mentions, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/brands/{id}/mentions",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), MentionsQuery),
    responses((status = 200, description = "A page of mentions", body = Page<MentionView>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn mentions(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    query: ReadQuery<MentionsQuery>,
) -> Result<JsonBody<Page<MentionView>>, ApiError> {
    let params = query.params;
    let page = super::page_up_to(
        params.limit.unwrap_or(DEFAULT_MENTION_LIMIT),
        MAX_MENTION_LIMIT,
        params.after,
    )?;
    // A `from` after `to` is an empty window: the page comes back empty, like any filter
    // nothing matches.
    let reads = state.read().after(query.min_position);
    existing_brand(&reads, &caller, id).await?;
    let filter = MentionFilter {
        published_from: params.from,
        published_to: params.to,
        sentiment: params.sentiment,
        source: params.source,
    };
    let page = reads.mentions(caller.tenant(), id, &filter, &page).await?;
    Ok(JsonBody(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// First day (YYYY-MM-DD, UTC), inclusive.
    from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD, UTC), inclusive.
    to: Option<NaiveDate>,
}

/// Daily volume, sentiment and share of voice; the last 30 days by default.
#[utoipa::path(
    get,
    path = "/brands/{id}/stats",
    tag = "brands",
    params(("id" = Uuid, Path, description = "The brand's id"), StatsQuery),
    responses((status = 200, description = "Daily and total stats", body = StatsView))
)]
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
    // A longer range keeps its last MAX_STATS_DAYS days; a `from` after `to` has no days.
    let earliest = to
        .checked_sub_days(Days::new(MAX_STATS_DAYS as u64 - 1))
        .unwrap_or(to);
    let from = from.max(earliest);
    let reads = state.read().after(query.min_position);
    existing_brand(&reads, &caller, id).await?;
    let stats = reads.brand_stats(caller.tenant(), id, from, to).await?;
    Ok(JsonBody(stats))
}
