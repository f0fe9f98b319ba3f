//! The OpenAPI 3.1 document of the API, generated from the code, and the docs page that renders
//! it.
//!
//! Handlers carry `#[utoipa::path]` and are registered with `utoipa_axum::routes!`, so the
//! router and the document come from the same place: a route registered that way is documented,
//! and a documented route is served. Request and response types derive `utoipa::ToSchema` (the
//! domain and projection crates do so behind their `openapi` feature).
//!
//! What every operation of a kind shares — the bearer token and its 401/403/429 answers on
//! `/v1`, the command headers, `min_position` on queries, the problem+json body of every error
//! — is added by [`finish`] once the paths are collected, so handlers only state what is theirs.
//!
//! - `GET /openapi.json`: the document (no authentication).
//! - `GET /docs`: Swagger UI, served from the binary (its assets are vendored into the build),
//!   loading nothing from elsewhere.

use axum::Router;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Required, Response};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::{Problem, PROBLEM_JSON};
use crate::extract::{CORRELATION_ID, IDEMPOTENCY_KEY, MIN_POSITION};
use crate::state::AppState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where the docs page is served.
pub const DOCS_PATH: &str = "/docs";
/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";

/// The document's fixed parts; the paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Plasma Engine API",
        description = "Event-sourced brand monitoring, content, agent runs and research. \
            Commands answer with the aggregate's id, version and the `position` of its last \
            event; pass that position as `min_position` to a query to read your own write. \
            Every error is `application/problem+json` with a stable `code` (see docs/errors.md).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(Problem)),
    tags(
        (name = "brands", description = "Brands, their keywords and competitors, mentions and stats"),
        (name = "alerts", description = "Spike and surge alerts per brand: rules, evidence, lifecycle and signed webhook deliveries"),
        (name = "mentions", description = "Commands on single mentions"),
        (name = "drafts", description = "Content drafts: generation, voice check, approval, publication"),
        (name = "agent-runs", description = "Agent workflow runs: executed by the agent worker (timeline, input, cancel, resume, fork, live stream) or driven step by step"),
        (name = "workflows", description = "Workflow definitions, versioned per tenant, and the tool registry"),
        (name = "documents", description = "Research documents: chunks, entities and relations"),
        (name = "research", description = "Search over the research documents' chunks"),
        (name = "audit", description = "The recorded history: events and past states"),
        (name = "ops", description = "Liveness, readiness and metrics; no authentication"),
    )
)]
struct ApiDoc;

/// The document's fixed parts, before any route is added.
pub(crate) fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Adds what every operation of a kind shares (see the module docs). Call once all paths are in.
pub(crate) fn finish(openapi: &mut OpenApi) {
    crate::schema_rules::apply(openapi);
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An HS256 JWT with `sub`, `tenant`, `roles` and `exp`; the tenant comes \
                     only from the token.",
                ))
                .build(),
        ),
    );
    for (path, item) in openapi.paths.paths.iter_mut() {
        let v1 = path.starts_with("/v1/");
        let has_path_params = path.contains('{');
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (operation, command) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            if v1 {
                let kind = match (command, QUERIES_BY_POST.contains(&path.as_str())) {
                    (true, true) => Kind::QueryByPost,
                    (true, false) => Kind::Command,
                    (false, _) => Kind::Query,
                };
                shared_v1(operation, kind, has_path_params);
            }
            problem_bodies(operation);
            qualify_operation_id(operation);
        }
    }
}

/// Queries that take their parameters (and `min_position`) in a JSON body: no command
/// headers, nothing appended.
const QUERIES_BY_POST: [&str; 3] = [
    "/v1/research/search",
    "/v1/research/similar",
    "/v1/research/answer",
];

/// What an operation is, for what it shares with the others of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// POST/PUT/DELETE that appends events: the command headers.
    Command,
    /// GET: `min_position` as a query parameter.
    Query,
    /// POST query: `min_position` in its body.
    QueryByPost,
}

/// Security, parameters and error answers every `/v1` operation of its kind has.
fn shared_v1(operation: &mut Operation, kind: Kind, has_path_params: bool) {
    operation.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
    add_response(operation, 401, "unauthorized", "no valid bearer token");
    add_response(
        operation,
        403,
        "forbidden",
        "the token's roles lack the permission",
    );
    add_response(
        operation,
        429,
        "rate_limited",
        "the tenant's request budget is spent",
    );
    add_response(operation, 500, "internal", "an unexpected failure (logged)");
    add_response(
        operation,
        503,
        "timeout",
        "the request did not finish in time",
    );
    add_response(
        operation,
        503,
        "auth_unavailable",
        "the OIDC issuer's signing keys cannot be fetched",
    );
    if has_path_params {
        add_response(operation, 400, "invalid_id", "a path id is malformed");
        add_response(
            operation,
            404,
            "not_found",
            "it does not exist for this tenant",
        );
    }
    if operation.request_body.is_some() {
        add_response(
            operation,
            400,
            "invalid_body",
            "the body is not what the route takes",
        );
        add_response(
            operation,
            413,
            "payload_too_large",
            "the body is over the limit",
        );
        add_response(
            operation,
            415,
            "unsupported_media_type",
            "the body is not JSON",
        );
    }
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    if kind == Kind::QueryByPost {
        min_position_answers(operation);
    } else if kind == Kind::Command {
        parameters.push(uuid_header(
            IDEMPOTENCY_KEY,
            "Makes the command safe to retry: the same key answers the first outcome again \
             (with `Idempotent-Replayed: true`) and appends nothing.",
        ));
        parameters.push(uuid_header(
            CORRELATION_ID,
            "Recorded on every event the command appends.",
        ));
        add_response(
            operation,
            400,
            "invalid_header",
            "a command header is not a UUID",
        );
        add_response(
            operation,
            409,
            "version_conflict",
            "concurrent commands kept changing the aggregate; retry",
        );
        add_response(
            operation,
            409,
            "idempotency_key_reused",
            "the Idempotency-Key was used for a different request",
        );
    } else {
        parameters.push(
            ParameterBuilder::new()
                .name(MIN_POSITION)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "Wait (bounded) until the read models have applied this position: pass a \
                     command's `position` to read your own write.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        )))
                        .minimum(Some(0)),
                ))
                .build(),
        );
        add_response(
            operation,
            400,
            "invalid_query",
            "a query parameter is malformed",
        );
        min_position_answers(operation);
    }
}

/// What a query with `min_position` may answer besides its result.
fn min_position_answers(operation: &mut Operation) {
    add_response(
        operation,
        409,
        "position_not_written",
        "`min_position` is beyond the event store's head",
    );
    add_response(
        operation,
        503,
        "not_yet_consistent",
        "the read models did not reach `min_position` in time",
    );
}

fn uuid_header(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).format(
            Some(SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Uuid,
            )),
        )))
        .build()
}

/// Documents error `code` under `status`; codes sharing a status are listed together.
fn add_response(operation: &mut Operation, status: u16, code: &str, why: &str) {
    let line = format!("`{code}`: {why}");
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status.to_string()) {
        Some(RefOr::T(response)) => {
            if !response.description.contains(&format!("`{code}`")) {
                response.description = format!("{}; {line}", response.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_string(), RefOr::T(Response::new(line)));
        }
    }
}

/// Operation ids default to the handler's name, which repeats across modules (`list`,
/// `show`); prefixing the tag makes them unique, as OpenAPI requires (`drafts_list`).
fn qualify_operation_id(operation: &mut Operation) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .map(|tag| tag.replace('-', "_"));
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
        if !id.starts_with(&format!("{tag}_")) {
            *id = format!("{tag}_{id}");
        }
    }
}

/// Every 4xx and 5xx answer is problem+json with the [`Problem`] schema.
fn problem_bodies(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response) {
            if response.content.is_empty() {
                response.content.insert(
                    PROBLEM_JSON.to_owned(),
                    Content::new(Some(Ref::from_schema_name("Problem"))),
                );
            }
        }
    }
}

/// `GET /openapi.json` and the Swagger UI under `GET /docs`, both without authentication.
pub(crate) fn routes(openapi: OpenApi) -> Router<AppState> {
    let config = Config::new([OPENAPI_PATH])
        // No validator badge: it would send the document to a third party.
        .validator_url("none")
        .persist_authorization(false)
        .try_it_out_enabled(true);
    SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, openapi)
        .config(config)
        .into()
}
