//! The research context: documents ingested for research, cut into chunks, with the entities
//! and relations an extractor (outside the platform) found in them.

use axum::extract::State;
use axum::Json as JsonBody;
use plasma_domain::ids::DocumentId;
use plasma_domain::research::{
    Chunking, Document, DocumentCommand, Entity, ExtractorInfo, Relation,
};
use plasma_domain::AggregateId;
use plasma_projections::{DocumentView, Page};
use serde::Deserialize;
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
        .routes(routes!(ingest, list))
        .routes(routes!(show, remove))
        .routes(routes!(chunk))
        .routes(routes!(record_entities))
        .routes(routes!(request_embedding))
}

/// `model` when the platform indexes a model of that name, else a validation error listing
/// the ones it does.
pub(crate) fn indexed_model(model: &str) -> Result<String, ApiError> {
    let known = plasma_projections::models::chunks::INDEXED_MODELS;
    if known.iter().any(|(name, _, _)| *name == model) {
        return Ok(model.to_owned());
    }
    let names: Vec<&str> = known.iter().map(|(name, _, _)| *name).collect();
    Err(ApiError::Validation {
        field: Some("model".to_owned()),
        message: format!(
            "`{model}` is not a model the platform indexes; one of: {}",
            names.join(", ")
        ),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingRequest {
    /// The model to embed with: `all-MiniLM-L6-v2` or `wordllama-l2-supercat-256`.
    pub(crate) model: String,
}

/// Asks the model's embedding worker to embed the document's chunks (again): after a new
/// version of the model's weights, or with a model enabled after the document was embedded.
/// The worker records `DocumentChunksEmbedded` unless the model's current version already did;
/// the new vectors replace the old in the index.
#[utoipa::path(
    post,
    path = "/documents/{id}/embeddings",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "Requested (`DocumentEmbeddingRequested`)", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such document"),
        (status = 409, description = "`illegal_transition`: the document is not chunked yet"),
        (status = 422, description = "`validation_failed`: `model` is not a model the platform indexes"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = %id))]
async fn request_embedding(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DocumentId>,
    meta: CommandMeta,
    Json(body): Json<EmbeddingRequest>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DocumentCommand::RequestEmbedding {
        model: indexed_model(body.model.trim())?,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

fn document_url(id: Uuid) -> String {
    format!("/v1/documents/{id}")
}

/// Runs `command` on an existing document and answers 200 with the document's URL.
async fn run(
    state: &AppState,
    caller: &Authorized<Commands>,
    meta: &CommandMeta,
    id: DocumentId,
    command: DocumentCommand,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let outcome = state
        .execute::<Document>(caller.tenant(), meta, id, command)
        .await?;
    Ok(Accepted::ok(outcome).with_location(document_url(id.as_uuid())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IngestDocument {
    title: String,
    /// Where the text came from: a URL, a file name.
    source: String,
    /// The whole text (at most 1,000,000 characters).
    text: String,
    /// Chunk the document now (default), so it is embedded without a further call; `false`
    /// leaves it for an explicit `POST /documents/{id}/chunk`.
    chunk: Option<bool>,
    /// The most characters per chunk when chunking now (200 ..= 100,000); 1,000 by default.
    max_chars: Option<usize>,
    /// Characters shared with the previous chunk, at most half of `max_chars`; 100 by default.
    overlap: Option<usize>,
}

/// Ingests a document under a new server-minted id: a UUIDv7, or derived from the
/// `Idempotency-Key` when one is sent, so a retry lands on the same aggregate.
#[utoipa::path(
    post,
    path = "/documents",
    tag = "documents",
    request_body = IngestDocument,
    responses(
        (status = 201, description = "Ingested; `Location` is the document's URL", body = CommandOutcome),
        (status = 422, description = "`validation_failed`: the title, source or text was refused, or `max_chars` or `overlap` is out of range"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = tracing::field::Empty))]
async fn ingest(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    meta: CommandMeta,
    Json(body): Json<IngestDocument>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let id = DocumentId::from_uuid(meta.new_aggregate_id());
    let chunking = body.chunk.unwrap_or(true).then(|| Chunking {
        max_chars: body.max_chars.unwrap_or(Chunking::DEFAULT.max_chars),
        overlap: body.overlap.unwrap_or(Chunking::DEFAULT.overlap),
    });
    let command = DocumentCommand::Ingest {
        title: body.title,
        source: body.source,
        text: body.text,
        chunking,
        at: state.now(),
    };
    let outcome = state
        .execute::<Document>(caller.tenant(), &meta, id, command)
        .await?;
    tracing::Span::current().record("plasma.document.id", outcome.aggregate_id.to_string());
    let location = document_url(outcome.aggregate_id);
    Ok(Accepted::created(outcome, location))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Chunk {
    /// The most characters per chunk (200 ..= 100,000).
    max_chars: usize,
    /// Characters shared with the previous chunk, at most half of `max_chars`; 0 when left out.
    #[serde(default)]
    overlap: usize,
}

/// Cuts the document into chunks, once: the same parameters again change nothing (a safe
/// retry, 0 events appended); other parameters are 409 `illegal_transition`, since recorded
/// entities point at chunk indexes.
#[utoipa::path(
    post,
    path = "/documents/{id}/chunk",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    request_body = Chunk,
    responses(
        (status = 200, description = "Chunked (or already so with these parameters: `events_appended` 0)", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: already chunked with other parameters"),
        (status = 422, description = "`validation_failed`: `max_chars` out of range, or `overlap` over half of it"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = %id))]
async fn chunk(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DocumentId>,
    meta: CommandMeta,
    Json(body): Json<Chunk>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DocumentCommand::Chunk {
        max_chars: body.max_chars,
        overlap: body.overlap,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

/// Something the extractor found.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EntityBody {
    /// Unique within the request; relations name entities by it.
    name: String,
    /// A person, an organisation, a product...
    kind: String,
    /// The chunks it appears in.
    #[serde(default)]
    chunk_indexes: Vec<usize>,
    /// Other spellings of it (at most 20); the graph finds the entity by these too.
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RelationBody {
    from: String,
    to: String,
    kind: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ExtractorBody {
    name: String,
    version: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Entities {
    entities: Vec<EntityBody>,
    #[serde(default)]
    relations: Vec<RelationBody>,
    extractor: ExtractorBody,
}

/// Records what an extractor found in a chunked document; it replaces any earlier extraction
/// (e.g. by an older extractor).
#[utoipa::path(
    post,
    path = "/documents/{id}/entities",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    request_body = Entities,
    responses(
        (status = 200, description = "Recorded; replaces any earlier extraction", body = CommandOutcome),
        (status = 409, description = "`illegal_transition`: the document is not chunked yet"),
        (status = 422, description = "`validation_failed`: an entity names a missing chunk or is listed twice, a relation names an unlisted entity, or a name was refused"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = %id))]
async fn record_entities(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DocumentId>,
    meta: CommandMeta,
    Json(body): Json<Entities>,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DocumentCommand::RecordEntities {
        entities: body
            .entities
            .into_iter()
            .map(|e| Entity {
                name: e.name,
                kind: e.kind,
                chunk_indexes: e.chunk_indexes,
                aliases: e.aliases,
            })
            .collect(),
        relations: body
            .relations
            .into_iter()
            .map(|r| Relation {
                from: r.from,
                to: r.to,
                kind: r.kind,
            })
            .collect(),
        extractor: ExtractorInfo {
            name: body.extractor.name,
            version: body.extractor.version,
        },
        replace: true,
        at: state.now(),
    };
    run(&state, &caller, &meta, id, command).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DocumentsQuery {
    /// Page size, 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$")]
    after: Option<String>,
}

/// The tenant's documents (without their text), newest ingested first, paged.
#[utoipa::path(
    get,
    path = "/documents",
    tag = "documents",
    params(DocumentsQuery),
    responses((status = 200, description = "A page of documents", body = Page<DocumentView>))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<DocumentsQuery>,
) -> Result<JsonBody<Page<DocumentView>>, ApiError> {
    let params = query.params;
    let page = super::page(params.limit, params.after)?;
    let reads = state.read().after(query.min_position);
    let documents = reads.documents(caller.tenant(), &page).await?;
    Ok(JsonBody(documents))
}

/// Takes the document out of research: search, the knowledge graph and its communities forget
/// its chunks, vectors and entities; the workers leave it alone. Its events stay, for audit,
/// and the document answers with status `removed`. Removing it again changes nothing.
#[utoipa::path(
    delete,
    path = "/documents/{id}",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    responses(
        (status = 200, description = "Removed (or already so: `events_appended` 0)", body = CommandOutcome),
        (status = 404, description = "`not_found`: no such document"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = %id))]
async fn remove(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    PathId(id): PathId<DocumentId>,
    meta: CommandMeta,
) -> Result<Accepted<CommandOutcome>, ApiError> {
    let command = DocumentCommand::Remove { at: state.now() };
    run(&state, &caller, &meta, id, command).await
}

/// One document as it stands (without its text), with the entities of the latest extraction.
#[utoipa::path(
    get,
    path = "/documents/{id}",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    responses((status = 200, description = "The document", body = DocumentView))
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = %id))]
async fn show(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<DocumentId>,
    query: ReadQuery<NoParams>,
) -> Result<JsonBody<DocumentView>, ApiError> {
    let reads = state.read().after(query.min_position);
    reads
        .document(caller.tenant(), id)
        .await?
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("document {id} does not exist")))
}
