//! The HTTP routes: ops endpoints, `/openapi.json` and `/docs` at the root, the API under `/v1`.
//!
//! # Adding a route module
//!
//! 1. Create `routes/<context>.rs` with `pub(crate) fn routes() -> OpenApiRouter<AppState>`
//!    registering each handler with `utoipa_axum::routes!` (handlers of one path together),
//!    and add it to [`v1`]. Paths are relative to `/v1` (e.g. `/drafts/{id}/approve`) and come
//!    from the handler's `#[utoipa::path]`, so the route and its OpenAPI entry cannot drift
//!    apart (see [`crate::openapi`]).
//! 2. Handlers take, in this order: `State(state)`, the caller as
//!    [`Authorized<Commands>`](crate::auth::Authorized) / `Authorized<Queries>` /
//!    `Authorized<Audit>` (the permission is the type), path ids as
//!    [`PathId<DraftId>`](crate::extract::PathId), then [`CommandMeta`](crate::extract::CommandMeta)
//!    for commands or [`ReadQuery<T>`](crate::extract::ReadQuery) for queries, and a JSON body
//!    last as [`Json<T>`](crate::extract::Json) (DTO with `#[serde(deny_unknown_fields)]`), or
//!    `Option<Json<T>>` when the body may be left out. Several path parameters (e.g.
//!    `/agent-runs/{id}/steps/{index}/start`) come as one
//!    [`PathParams<T>`](crate::extract::PathParams), parsed field by field.
//! 3. Commands: stamp `at` with `state.now()`, run with
//!    [`AppState::execute`](crate::state::AppState::execute), answer
//!    [`Accepted`](crate::command::Accepted). Queries: read through
//!    `state.read().after(query.min_position)`: each query waits for the read models it reads
//!    (read your writes); a missing (or other tenant's) thing is `ApiError::NotFound`.
//! 4. Return `Result<_, ApiError>`; domain errors convert with `?` (see `error/domain.rs`).
//! 5. Put `#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), …))]` on
//!    each handler, and add the route to the API tests (and to the route list in
//!    `tests/api/openapi.rs`).
//! 6. Put `#[utoipa::path]` on each handler: method, `path`, `tag`, path `params`, the query
//!    struct (`IntoParams`), `request_body` (`ToSchema` DTO), the success answer and the error
//!    codes specific to it. Shared answers (401, 403, 429, bodies, headers, `min_position`)
//!    are added for you.

mod admin;
mod agent_runs;
mod alerts;
mod analytics;
mod audit;
mod brands;
mod documents;
mod drafts;
mod graph;
mod mentions;
mod ops;
mod research;
mod workflows;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use plasma_projections::PageRequest;

use crate::error::{ApiError, InternalError};
use crate::state::AppState;
use crate::{auth, metrics, openapi};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router, with `/openapi.json` and `/docs` describing it.
pub fn router(state: AppState, request_timeout: std::time::Duration) -> Router {
    let body_limit = state.body_limit();
    let v1 = v1().layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    let (api, mut openapi) = api(v1).split_for_parts();
    openapi::finish(&mut openapi);
    let models: Vec<String> = state
        .embedders()
        .iter()
        .map(|e| e.model().name.clone())
        .collect();
    crate::schema_rules::loaded_models(&mut openapi, &models);
    let mut router = Router::new().merge(api).merge(openapi::routes(openapi));
    if let Some(tools) = state.tools() {
        // MCP over streamable HTTP, behind the same authentication and rate limit as /v1.
        router = router.merge(
            Router::new()
                .nest_service("/v1/mcp", crate::mcp::http_service(tools))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::authenticate,
                )),
        );
    }
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run outside-in from the last one added.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            timeout(request_timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(metrics::track_http))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// The OpenAPI document of every route the router serves (what `GET /openapi.json` answers).
pub fn openapi_document() -> OpenApi {
    let mut openapi = api(v1()).into_openapi();
    openapi::finish(&mut openapi);
    openapi
}

/// The ops routes and `v1` under `/v1`.
fn api(v1: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(ops::routes())
        .nest("/v1", v1)
}

/// Every `/v1` route; [`router`] authenticates them and rate limits them per tenant.
fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(brands::routes())
        .merge(mentions::routes())
        .merge(alerts::routes())
        .merge(analytics::routes())
        .merge(drafts::routes())
        .merge(agent_runs::routes())
        .merge(workflows::routes())
        .merge(documents::routes())
        .merge(research::routes())
        .merge(graph::routes())
        .merge(admin::routes())
        .merge(audit::routes())
}

/// Default page size of the list endpoints (drafts, agent runs, documents); the largest is
/// [`PageRequest::MAX_LIMIT`].
pub const DEFAULT_PAGE_LIMIT: u32 = 50;

/// A page request from a list endpoint's `limit` and `after`; 400 `invalid_query` for a
/// `limit` out of range or a cursor this API did not hand out. Handlers call it before any
/// lookup, so a bad request is a 400 whatever the state of the read models.
pub(crate) fn page(limit: Option<u32>, after: Option<String>) -> Result<PageRequest, ApiError> {
    page_up_to(
        limit.unwrap_or(DEFAULT_PAGE_LIMIT),
        PageRequest::MAX_LIMIT,
        after,
    )
}

/// [`page`] with a list's own default and maximum `limit` already applied.
pub(crate) fn page_up_to(
    limit: u32,
    max: u32,
    after: Option<String>,
) -> Result<PageRequest, ApiError> {
    let after = after
        .as_deref()
        .map(plasma_projections::Cursor::parse)
        .transpose()?;
    if !(1..=max).contains(&limit) {
        return Err(ApiError::InvalidQuery {
            field: Some("limit".to_owned()),
            message: format!("`limit` must be between 1 and {max}"),
        });
    }
    Ok(PageRequest { limit, after })
}

/// The HTTP server span (OpenTelemetry's semantic conventions), a child of the caller's trace
/// when the request carries a `traceparent`.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = route.as_deref().unwrap_or("unmatched");
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.route = route,
        http.request.id = request_id,
        http.response.status_code = tracing::field::Empty,
        plasma.tenant = tracing::field::Empty,
    );
    if let Some(traceparent) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        plasma_commands::trace::set_parent(&span, traceparent);
    }
    span
}

async fn timeout(
    after: std::time::Duration,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    tokio::time::timeout(after, next.run(request))
        .await
        .map_err(|_| ApiError::Timeout { after })
}

fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    axum::response::IntoResponse::into_response(ApiError::Internal(InternalError::Panic(message)))
}

async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().chars().take(200).collect(),
    }
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}
