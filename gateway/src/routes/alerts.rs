//! Brand alerts: each brand's rules, the alerts its detectors raise (with their evidence and
//! lifecycle), and the webhook deliveries that notify them.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json as JsonBody;
use chrono::{DateTime, Utc};
use plasma_domain::brand::{
    Alert, AlertCommand, AlertKind, AlertRules, AlertStatus, Brand, BrandCommand, Delivery,
    DeliveryCommand,
};
use plasma_domain::ids::{AlertId, BrandId, DeliveryId};
use plasma_domain::AggregateId;
use plasma_projections::{AlertDetailView, AlertFilter, AlertView, DeliveryView, Page};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Authorized, Commands, Queries};
use crate::command::{Accepted, CommandOutcome};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json, NoParams, PathId, ReadQuery};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alert_rules, set_alert_rules))
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(snooze))
        .routes(routes!(delivery))
        .routes(routes!(redeliver))
}

/// A brand's alert rules as they stand, with each webhook channel's signing secret.
#[derive(Debug, Serialize, ToSchema)]
struct AlertRulesView {
    brand_id: Uuid,
    /// How many times the rules were set; 0 while they are the defaults.
    version: u32,
    rules: AlertRules,
    /// Each channel's `whsec_…` secret, by channel id: verify `Plasma-Signature` with it.
    signing_secrets: BTreeMap<String, String>,
}

async fn rules_view(
    state: &AppState,
    caller: &impl CallerTenant,
    id: BrandId,
) -> Result<AlertRulesView, ApiError> {
    let brand = state.load::<Brand>(caller.tenant(), id).await?;
    if !brand.registered {
        return Err(ApiError::NotFound(format!("brand {id} does not exist")));
    }
    let signing_secrets = brand
        .alert_rules
        .channels
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                state.channel_secrets().secret(caller.tenant(), id, &c.id),
            )
        })
        .collect();
    Ok(AlertRulesView {
        brand_id: id.as_uuid(),
        version: brand.alert_rules_version,
        rules: brand.alert_rules,
        signing_secrets,
    })
}

/// Both kinds of caller name their tenant.
trait CallerTenant {
    fn tenant(&self) -> &plasma_domain::TenantId;
}

impl<P> CallerTenant for Authorized<P> {
    fn tenant(&self) -> &plasma_domain::TenantId {
        Authorized::tenant(self)
    }
}

/// A brand's alert rules: which detectors run, their sensitivity, and the webhooks told.
#[utoipa::path(
    get,
    path = "/brands/{id}/alert-rules",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The brand's id")),
    responses((status = 200, description = "The rules and the channels' signing secrets", body = AlertRulesView))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn alert_rules(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<BrandId>,
    _query: ReadQuery<NoParams>,
) -> Result<JsonBody<AlertRulesView>, ApiError> {
    rules_view(&state, &caller, id).await.map(JsonBody)
}

/// Replaces a brand's alert rules; alerts raised from now on record the new version.
#[utoipa::path(
    put,
    path = "/brands/{id}/alert-rules",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The brand's id")),
    request_body = AlertRules,
    responses(
        (status = 200, description = "Set", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such brand"),
        (status = 409, description = "`illegal_transition`: the brand is archived"),
        (status = 422, description = "`validation_failed`: `k`, `min_volume` or a channel was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.brand.id = %id))]
async fn set_alert_rules(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<BrandId>,
    meta: CommandMeta,
    Json(rules): Json<AlertRules>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = BrandCommand::SetAlertRules {
        rules,
        at: state.now(),
    };
    let outcome = state
        .execute::<Brand>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(format!("/v1/brands/{id}/alert-rules")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AlertsQuery {
    brand_id: Option<Uuid>,
    #[param(inline)]
    status: Option<AlertStatus>,
    #[param(inline)]
    kind: Option<AlertKind>,
    /// Page size, 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$")]
    after: Option<String>,
}

/// The tenant's alerts, newest window first, filtered and paged.
#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    params(AlertsQuery),
    responses((status = 200, description = "A page of alerts", body = Page<AlertView>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<AlertsQuery>,
) -> Result<JsonBody<Page<AlertView>>, ApiError> {
    let params = query.params;
    let page = super::page(params.limit, params.after)?;
    let filter = AlertFilter {
        brand: params.brand_id.map(BrandId::from_uuid),
        status: params.status,
        kind: params.kind,
    };
    let reads = state.read().after(query.min_position);
    Ok(JsonBody(
        reads.alerts(caller.tenant(), &filter, &page).await?,
    ))
}

/// One alert with its evidence and the deliveries that notified it, each with its log.
#[utoipa::path(
    get,
    path = "/alerts/{id}",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert", body = AlertDetailView),
        (status = 404, description = "`not_found`: no such alert"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.alert.id = %id))]
async fn show(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<AlertId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<AlertDetailView>, ApiError> {
    let reads = state.read().after(query.min_position);
    reads
        .alert(caller.tenant(), id)
        .await?
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("alert {id} does not exist")))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Note {
    /// What you want on record; may be empty.
    #[serde(default)]
    note: String,
}

/// Acknowledges an open alert: someone is on it.
#[utoipa::path(
    post,
    path = "/alerts/{id}/acknowledge",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The alert's id")),
    request_body(content = Note, description = "Optional"),
    responses(
        (status = 200, description = "Acknowledged", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such alert"),
        (status = 409, description = "`illegal_transition`: already acknowledged or resolved"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.alert.id = %id))]
async fn acknowledge(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<AlertId>,
    meta: CommandMeta,
    body: Option<Json<Note>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let note = body.map(|Json(b)| b.note).unwrap_or_default();
    let command = AlertCommand::Acknowledge {
        note,
        at: state.now(),
    };
    let outcome = state
        .execute::<Alert>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome))
}

/// Resolves an alert by hand.
#[utoipa::path(
    post,
    path = "/alerts/{id}/resolve",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The alert's id")),
    request_body(content = Note, description = "Optional"),
    responses(
        (status = 200, description = "Resolved", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such alert"),
        (status = 409, description = "`illegal_transition`: already resolved"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.alert.id = %id))]
async fn resolve(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<AlertId>,
    meta: CommandMeta,
    body: Option<Json<Note>>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let note = body.map(|Json(b)| b.note).unwrap_or_default();
    let command = AlertCommand::Resolve {
        automatically: false,
        note,
        at: state.now(),
    };
    let outcome = state
        .execute::<Alert>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Snooze {
    /// Quiet until then (RFC 3339): no notifications of this alert, and new alerts of its brand
    /// and kind are recorded without notifying.
    until: DateTime<Utc>,
}

/// Snoozes an alert, and its brand and kind, until a time.
#[utoipa::path(
    post,
    path = "/alerts/{id}/snooze",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The alert's id")),
    request_body = Snooze,
    responses(
        (status = 200, description = "Snoozed", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such alert"),
        (status = 409, description = "`illegal_transition`: already resolved"),
        (status = 422, description = "`validation_failed`: `until` is not in the future"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.alert.id = %id))]
async fn snooze(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<AlertId>,
    meta: CommandMeta,
    Json(body): Json<Snooze>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = AlertCommand::Snooze {
        until: body.until,
        at: state.now(),
    };
    let outcome = state
        .execute::<Alert>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome))
}

/// One webhook delivery with every attempt.
#[utoipa::path(
    get,
    path = "/deliveries/{id}",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The delivery's id (the `Plasma-Delivery` header)")),
    responses(
        (status = 200, description = "The delivery and its log", body = DeliveryView),
        (status = 404, description = "`not_found`: no such delivery"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.delivery.id = %id))]
async fn delivery(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<DeliveryId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<DeliveryView>, ApiError> {
    let reads = state.read().after(query.min_position);
    reads
        .delivery(caller.tenant(), id)
        .await?
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("delivery {id} does not exist")))
}

/// Sends a delivered or dead-lettered notification again, under the same delivery id, with a
/// fresh budget of attempts.
#[utoipa::path(
    post,
    path = "/deliveries/{id}/redeliver",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "Redelivery requested", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such delivery"),
        (status = 409, description = "`illegal_transition`: the delivery is still pending"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.delivery.id = %id))]
async fn redeliver(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DeliveryId>,
    meta: CommandMeta,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DeliveryCommand::Redeliver { at: state.now() };
    let outcome = state
        .execute::<Delivery>(caller.tenant(), &meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome))
}
