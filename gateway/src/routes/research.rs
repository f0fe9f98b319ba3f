//! Research search: the chunks of a tenant's documents nearest to a question, by the meaning
//! an embedding model gives them, each with what a citation needs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonBody;
use chrono::{DateTime, Utc};
use plasma_domain::ids::{CommandId, DocumentId};
use plasma_domain::research::cosine;
use plasma_domain::research::{
    Document, DocumentCommand, DocumentStatus, Embedder, EmbeddingModel,
};
use plasma_domain::AggregateId;
use plasma_domain::TenantId;
use plasma_projections::{
    fuse_by_rank, fuse_by_weighted_rank, ChunkFilter, ChunkHit, CommunityView, Cursor, EntityView,
    PageRequest, ReadModels,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Authorized, Commands, Queries};
use crate::error::ApiError;
use crate::extract::{CommandMeta, Json};
use crate::retrieval::{compose_answer, graph_ranking, AnswerSentence};
use crate::state::AppState;

/// Results a search answers with unless asked otherwise, and at most.
const DEFAULT_K: u32 = 10;
const MAX_K: u32 = 100;
/// How much each ranking counts when the graph modes fuse them (reciprocal rank, weighted):
/// the question's own meaning first, the graph's pointers after, the communities' last. With
/// equal weights the graph lists outvoted a clear vector hit (docs/benchmarks.md).
const VECTOR_WEIGHT: f64 = 1.0;
const GRAPH_WEIGHT: f64 = 0.5;
const COMMUNITY_WEIGHT: f64 = 0.25;
/// The longest question accepted, in characters.
const MAX_QUERY_CHARS: usize = 2000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(answer))
        .routes(routes!(similar))
        .routes(routes!(request_embeddings))
}

/// How a search finds chunks for the question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum SearchMode {
    /// By meaning: the embedding model's vectors, cosine similarity.
    #[default]
    Vector,
    /// By words: full-text search (PostgreSQL text search, SQLite FTS5), any of the words.
    Lexical,
    /// Vector and lexical, fused by reciprocal rank.
    VectorLexical,
    /// Through the knowledge graph: the entities the question names and those in the best
    /// vector hits, their neighbours, and the chunks mentioning them, fused with the vector
    /// ranking (relevance and graph proximity).
    Local,
    /// Through the graph's communities: those whose reports are nearest the question, and the
    /// chunks their reports cite.
    Global,
    /// Vector, local and global fused by reciprocal rank (LightRAG's "mix").
    Hybrid,
}

impl SearchMode {
    fn needs_vector(self) -> bool {
        !matches!(self, Self::Lexical)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    /// What to look for, in words (1 to 2,000 characters).
    query: String,
    /// `vector` (default), `lexical`, `vector_lexical`, `local`, `global` or `hybrid`.
    mode: Option<SearchMode>,
    /// How many chunks to answer with (1 ..= 100); 10 by default.
    k: Option<u32>,
    /// The embedding model to search with (vector and hybrid); the first loaded one by default.
    model: Option<String>,
    /// Only this document's chunks.
    document_id: Option<Uuid>,
    /// Only documents from this source.
    source: Option<String>,
    /// Only documents ingested at or after this instant (RFC 3339).
    ingested_from: Option<DateTime<Utc>>,
    /// Only documents ingested before this instant (RFC 3339).
    ingested_to: Option<DateTime<Utc>>,
    /// Read your writes: wait until the chunks index has applied this position.
    min_position: Option<i64>,
}

/// The chunks found, best first.
#[derive(Debug, Serialize, ToSchema)]
struct SearchAnswer {
    mode: SearchMode,
    /// The model whose vectors were compared; absent for a lexical search.
    model: Option<EmbeddingModel>,
    results: Vec<ChunkHit>,
    /// Local and hybrid: the graph's entities the search started from, strongest first (at
    /// most 10).
    entities: Vec<EntityView>,
    /// Global and hybrid: the communities whose reports are nearest the question (at most 3).
    communities: Vec<RankedCommunity>,
}

/// A community global search picked, with its similarity to the question.
#[derive(Debug, Serialize, ToSchema)]
struct RankedCommunity {
    /// Cosine similarity of the question and the community's report.
    score: f64,
    #[serde(flatten)]
    community: CommunityView,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Validation {
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// A body's `min_position`: like the query parameter of GET queries, never negative.
fn min_position(position: Option<i64>) -> Result<Option<i64>, ApiError> {
    match position {
        Some(p) if p < 0 => Err(invalid(
            "min_position",
            "`min_position` must be a non-negative integer",
        )),
        other => Ok(other),
    }
}

/// The embedder called `name`, or the first one; an error naming the models there are.
fn embedder(state: &AppState, name: Option<&str>) -> Result<Arc<dyn Embedder>, ApiError> {
    let embedders = state.embedders();
    let available = || {
        let names: Vec<&str> = embedders.iter().map(|e| e.model().name.as_str()).collect();
        if names.is_empty() {
            "no embedding model is loaded here (PLASMA_EMBEDDERS, scripts/install-models.sh)"
                .to_owned()
        } else {
            format!("the models loaded here: {}", names.join(", "))
        }
    };
    match name {
        None => embedders
            .first()
            .cloned()
            .ok_or_else(|| invalid("model", available())),
        Some(name) => embedders
            .iter()
            .find(|e| e.model().name == name)
            .cloned()
            .ok_or_else(|| invalid("model", format!("`{name}` is not loaded; {}", available()))),
    }
}

/// The chunks of the caller's documents closest to `query` by meaning (vector), by words
/// (lexical) or both fused (hybrid), each with its document, place in the text and a snippet
/// to cite.
#[utoipa::path(
    post,
    path = "/research/search",
    tag = "research",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "The nearest chunks, best first", body = SearchAnswer),
        (status = 422, description = "`validation_failed`: an empty or too long `query`, `k` out of range, or a `model` that is not loaded"),
        (status = 503, description = "`not_yet_consistent`: the index has not reached `min_position` in time"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn search(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    Json(body): Json<SearchRequest>,
) -> Result<JsonBody<SearchAnswer>, ApiError> {
    let query = body.query.trim().to_owned();
    if query.is_empty() {
        return Err(invalid("query", "`query` must not be empty"));
    }
    let chars = query.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(invalid(
            "query",
            format!("`query` is too long: {chars} characters, at most {MAX_QUERY_CHARS}"),
        ));
    }
    let k = body.k.unwrap_or(DEFAULT_K);
    if !(1..=MAX_K).contains(&k) {
        return Err(invalid(
            "k",
            format!("`k` must be between 1 and {MAX_K}, not {k}"),
        ));
    }
    let filter = ChunkFilter {
        document: body.document_id.map(DocumentId::from_uuid),
        source: body.source,
        ingested_from: body.ingested_from,
        ingested_to: body.ingested_to,
    };
    let reads = state.read().after(min_position(body.min_position)?);
    let mode = body.mode.unwrap_or_default();
    let found = retrieve(
        &state,
        &reads,
        caller.tenant(),
        &query,
        mode,
        k,
        body.model.as_deref(),
        &filter,
    )
    .await?;
    Ok(JsonBody(found))
}

/// Retrieved chunks and what led to them, by `mode`.
#[allow(clippy::too_many_arguments)]
async fn retrieve(
    state: &AppState,
    reads: &ReadModels,
    tenant: &TenantId,
    query: &str,
    mode: SearchMode,
    k: u32,
    model: Option<&str>,
    filter: &ChunkFilter,
) -> Result<SearchAnswer, ApiError> {
    let take = k as usize;
    let lexical = match mode {
        // Twice as deep for fusion, so a chunk ranked lower in one list can still surface.
        SearchMode::Lexical | SearchMode::VectorLexical => {
            Some(reads.matching_chunks(tenant, query, k * 2, filter).await?)
        }
        _ => None,
    };
    let (model, probe, vector) = if mode.needs_vector() {
        let embedder = embedder(state, model)?;
        let model = embedder.model().clone();
        let probe = embed_query(embedder, query.to_owned()).await?;
        // Deeper for the graph modes: their lists are fused with this one.
        let depth = if matches!(mode, SearchMode::Vector) {
            k
        } else {
            (k * 3).max(30)
        };
        let hits = reads
            .nearest_chunks(tenant, &model.name, &probe, depth, filter)
            .await?
            .ok_or_else(|| invalid("model", format!("`{}` has no index here", model.name)))?;
        (Some(model), Some(probe), Some(hits))
    } else {
        (None, None, None)
    };
    let mut entities = Vec::new();
    let local = if matches!(mode, SearchMode::Local | SearchMode::Hybrid) {
        let graph = reads.graph(tenant).await?;
        let ranking = graph_ranking(&graph, query, vector.as_deref().unwrap_or_default());
        entities = ranking
            .seeds
            .iter()
            .take(10)
            .filter_map(|&n| graph.entity(n).cloned())
            .collect();
        let keys: Vec<(Uuid, i64)> = ranking
            .chunks
            .iter()
            .take((take * 3).max(30))
            .map(|(key, _)| *key)
            .collect();
        let scores: Vec<f64> = ranking.chunks.iter().map(|(_, s)| *s).collect();
        let mut hits = reads
            .chunks_at(tenant, &keys, |i| scores.get(i).copied().unwrap_or(0.0))
            .await?;
        hits.retain(|hit| filter.admits(hit));
        Some(hits)
    } else {
        None
    };
    let mut communities = Vec::new();
    let global = match (&model, &probe) {
        (Some(model), Some(probe)) if matches!(mode, SearchMode::Global | SearchMode::Hybrid) => {
            let mut ranked: Vec<(f64, CommunityView)> = reads
                .embedded_communities(tenant, &model.name)
                .await?
                .into_iter()
                .map(|(view, vector)| (f64::from(cosine(probe, &vector)), view))
                .collect();
            ranked.sort_by(|a, b| {
                b.0.total_cmp(&a.0)
                    .then(a.1.level.cmp(&b.1.level))
                    .then(a.1.community.cmp(&b.1.community))
            });
            ranked.truncate(3);
            let mut keys = Vec::new();
            let mut scores = Vec::new();
            for (score, view) in &ranked {
                for citation in &view.report.citations {
                    let key = (citation.document_id, citation.chunk_index);
                    if !keys.contains(&key) {
                        keys.push(key);
                        scores.push(*score);
                    }
                }
            }
            let mut hits = reads
                .chunks_at(tenant, &keys, |i| scores.get(i).copied().unwrap_or(0.0))
                .await?;
            hits.retain(|hit| filter.admits(hit));
            communities = ranked
                .into_iter()
                .map(|(score, community)| RankedCommunity { score, community })
                .collect();
            Some(hits)
        }
        _ => None,
    };
    let results = match mode {
        SearchMode::Vector | SearchMode::Lexical => {
            let mut hits = vector.or(lexical).unwrap_or_default();
            hits.truncate(take);
            hits
        }
        SearchMode::VectorLexical => fuse_by_rank(
            &[vector.unwrap_or_default(), lexical.unwrap_or_default()],
            take,
        ),
        SearchMode::Local => fuse_by_weighted_rank(
            &[
                (vector.as_deref().unwrap_or_default(), VECTOR_WEIGHT),
                (local.as_deref().unwrap_or_default(), GRAPH_WEIGHT),
            ],
            take,
        ),
        SearchMode::Global => {
            let mut hits = global.unwrap_or_default();
            hits.truncate(take);
            hits
        }
        SearchMode::Hybrid => fuse_by_weighted_rank(
            &[
                (vector.as_deref().unwrap_or_default(), VECTOR_WEIGHT),
                (local.as_deref().unwrap_or_default(), GRAPH_WEIGHT),
                (global.as_deref().unwrap_or_default(), COMMUNITY_WEIGHT),
            ],
            take,
        ),
    };
    Ok(SearchAnswer {
        mode,
        model,
        results,
        entities,
        communities,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AnswerRequest {
    /// The question (1 to 2,000 characters).
    question: String,
    /// How to retrieve the evidence: `hybrid` by default; any search mode.
    mode: Option<SearchMode>,
    /// Chunks retrieved as evidence (1 ..= 50); 8 by default.
    k: Option<u32>,
    /// The embedding model to search with; the first loaded one by default.
    model: Option<String>,
    /// Read your writes: wait until the read models have applied this position.
    min_position: Option<i64>,
}

/// A chunk an answer cites.
#[derive(Debug, Serialize, ToSchema)]
struct AnswerCitation {
    /// The number sentences cite it by (1-based).
    n: usize,
    #[serde(flatten)]
    chunk: ChunkHit,
}

/// An answer composed from retrieved chunks.
#[derive(Debug, Serialize, ToSchema)]
struct Answer {
    question: String,
    mode: SearchMode,
    /// How the answer was written: `extractive` (sentences quoted from the evidence).
    method: String,
    /// The sentences joined, each followed by its citation marks, e.g. `... [2]`; empty when
    /// the evidence holds nothing that shares a term with the question.
    answer: String,
    /// Every sentence with the numbers of the chunks it cites.
    sentences: Vec<AnswerSentence>,
    /// The retrieved chunks, numbered; sentences cite only these.
    citations: Vec<AnswerCitation>,
    /// The graph's entities and communities retrieval started from (local, global, hybrid).
    entities: Vec<EntityView>,
    communities: Vec<RankedCommunity>,
}

/// Answers a question from the caller's documents: retrieves evidence (hybrid by default:
/// vector, graph neighbourhood and community reports fused), then composes an answer of
/// sentences quoted from it, each citing the chunk it comes from. Extractive: no sentence is
/// generated, so none can state what the evidence does not.
#[utoipa::path(
    post,
    path = "/research/answer",
    tag = "research",
    request_body = AnswerRequest,
    responses(
        (status = 200, description = "The answer, its sentences and their citations", body = Answer),
        (status = 422, description = "`validation_failed`: an empty or too long `question`, `k` out of range, or a `model` that is not loaded"),
        (status = 503, description = "`not_yet_consistent`: the read models have not reached `min_position` in time"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn answer(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    Json(body): Json<AnswerRequest>,
) -> Result<JsonBody<Answer>, ApiError> {
    let question = body.question.trim().to_owned();
    if question.is_empty() {
        return Err(invalid("question", "`question` must not be empty"));
    }
    let chars = question.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(invalid(
            "question",
            format!("`question` is too long: {chars} characters, at most {MAX_QUERY_CHARS}"),
        ));
    }
    let k = body.k.unwrap_or(8);
    if !(1..=50).contains(&k) {
        return Err(invalid(
            "k",
            format!("`k` must be between 1 and 50, not {k}"),
        ));
    }
    let mode = body.mode.unwrap_or(SearchMode::Hybrid);
    let reads = state.read().after(min_position(body.min_position)?);
    let tenant = caller.tenant();
    let found = retrieve(
        &state,
        &reads,
        tenant,
        &question,
        mode,
        k,
        body.model.as_deref(),
        &ChunkFilter::default(),
    )
    .await?;
    let keys: Vec<(Uuid, i64)> = found
        .results
        .iter()
        .map(|hit| (hit.document_id, hit.chunk_index))
        .collect();
    let bodies = reads.chunk_bodies(tenant, &keys).await?;
    let sentences = compose_answer(&question, &found.results, &bodies);
    let answer = sentences
        .iter()
        .map(|s| {
            let marks: Vec<String> = s.citations.iter().map(|n| format!("[{n}]")).collect();
            format!("{} {}", s.text, marks.join(""))
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(JsonBody(Answer {
        question,
        mode,
        method: "extractive".to_owned(),
        answer,
        sentences,
        citations: found
            .results
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| AnswerCitation { n: i + 1, chunk })
            .collect(),
        entities: found.entities,
        communities: found.communities,
    }))
}

/// The question's vector, computed off the async runtime (a model run is CPU work).
async fn embed_query(embedder: Arc<dyn Embedder>, query: String) -> Result<Vec<f32>, ApiError> {
    let task = |e: String| ApiError::Internal(crate::error::InternalError::Task(e));
    tokio::task::spawn_blocking(move || embedder.embed(&[query.as_str()]))
        .await
        .map_err(|e| task(e.to_string()))?
        .map_err(|e| task(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| task("the model answered no vector".into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SimilarRequest {
    /// The document to find more like.
    document_id: Uuid,
    /// One of its chunks; the whole document (its chunks' mean vector) when left out.
    chunk_index: Option<i64>,
    /// How many chunks to answer with (1 ..= 100); 10 by default.
    k: Option<u32>,
    /// The embedding model whose vectors are compared; the first loaded one by default.
    model: Option<String>,
    /// Read your writes: wait until the chunks index has applied this position.
    min_position: Option<i64>,
}

/// "More like this": the chunks nearest to one chunk, or to a whole document, by the model's
/// stored vectors (no model run). The source itself is left out: its own chunks for a
/// document, the chunk for a chunk.
#[utoipa::path(
    post,
    path = "/research/similar",
    tag = "research",
    request_body = SimilarRequest,
    responses(
        (status = 200, description = "The nearest other chunks, best first", body = SearchAnswer),
        (status = 404, description = "`not_found`: the document (or chunk) has no vectors of this model"),
        (status = 422, description = "`validation_failed`: `k` out of range, or a `model` that is not loaded"),
        (status = 503, description = "`not_yet_consistent`: the index has not reached `min_position` in time"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant(), plasma.document.id = %body.document_id))]
async fn similar(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    Json(body): Json<SimilarRequest>,
) -> Result<JsonBody<SearchAnswer>, ApiError> {
    let k = body.k.unwrap_or(DEFAULT_K);
    if !(1..=MAX_K).contains(&k) {
        return Err(invalid(
            "k",
            format!("`k` must be between 1 and {MAX_K}, not {k}"),
        ));
    }
    let model = embedder(&state, body.model.as_deref())?.model().clone();
    let document = DocumentId::from_uuid(body.document_id);
    let reads = state.read().after(min_position(body.min_position)?);
    let vectors = reads
        .chunk_vectors(
            caller.tenant(),
            &model.name,
            model.dimension,
            document,
            body.chunk_index,
        )
        .await?;
    if vectors.is_empty() {
        return Err(ApiError::NotFound(format!(
            "document {} has no {} vectors{}",
            body.document_id,
            model.name,
            body.chunk_index
                .map(|c| format!(" for chunk {c}"))
                .unwrap_or_default()
        )));
    }
    let probe = mean_direction(&vectors);
    let skip = if body.chunk_index.is_some() {
        1
    } else {
        vectors.len()
    };
    let fetch = (k as usize + skip).min(1000) as u32;
    let hits = reads
        .nearest_chunks(
            caller.tenant(),
            &model.name,
            &probe,
            fetch,
            &ChunkFilter::default(),
        )
        .await?
        .unwrap_or_default();
    let results: Vec<ChunkHit> = hits
        .into_iter()
        .filter(|hit| {
            hit.document_id != body.document_id
                || body
                    .chunk_index
                    .is_some_and(|chunk| hit.chunk_index != chunk)
        })
        .take(k as usize)
        .collect();
    Ok(JsonBody(SearchAnswer {
        mode: SearchMode::Vector,
        model: Some(model),
        results,
        entities: Vec::new(),
        communities: Vec::new(),
    }))
}

/// The unit vector along the mean of `vectors`.
fn mean_direction(vectors: &[Vec<f32>]) -> Vec<f32> {
    let dimension = vectors.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f32; dimension];
    for vector in vectors {
        for (acc, x) in mean.iter_mut().zip(vector) {
            *acc += x;
        }
    }
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        mean.iter_mut().for_each(|x| *x /= norm);
    }
    mean
}

/// What a re-embedding of every document asked for.
#[derive(Debug, Serialize, ToSchema)]
struct EmbeddingsRequested {
    /// The model asked for.
    model: String,
    /// Chunked documents whose worker was asked to embed them.
    requested: u64,
    /// Documents not chunked yet (they are embedded when they are).
    not_chunked: u64,
    /// The position of the last request recorded; 0 when none was.
    position: i64,
}

/// Asks the model's embedding worker to embed every chunked document of the caller's (again):
/// after a new version of the model's weights, or with a model enabled after the documents
/// were embedded. One `DocumentEmbeddingRequested` per document, each with a command id
/// derived from this request's and the document's, so a retry with the same
/// `Idempotency-Key` asks nothing twice. Documents are listed from the documents read model.
#[utoipa::path(
    post,
    path = "/research/embeddings",
    tag = "research",
    request_body = crate::routes::documents::EmbeddingRequest,
    responses(
        (status = 202, description = "Requested; the worker embeds in the background", body = EmbeddingsRequested),
        (status = 422, description = "`validation_failed`: `model` is not a model the platform indexes"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn request_embeddings(
    State(state): State<AppState>,
    caller: Authorized<Commands>,
    meta: CommandMeta,
    Json(body): Json<crate::routes::documents::EmbeddingRequest>,
) -> Result<(StatusCode, JsonBody<EmbeddingsRequested>), ApiError> {
    const NAMESPACE: Uuid = Uuid::from_u128(0x2f6e_91a4_0c3b_4d7e_b58a_6d12_e4f9_73c0);
    let model = crate::routes::documents::indexed_model(body.model.trim())?;
    let reads = state.read().clone();
    let mut answer = EmbeddingsRequested {
        model: model.clone(),
        requested: 0,
        not_chunked: 0,
        position: 0,
    };
    let mut page = PageRequest {
        limit: PageRequest::MAX_LIMIT,
        after: None,
    };
    loop {
        let documents = reads.documents(caller.tenant(), &page).await?;
        for document in &documents.items {
            if document.status == DocumentStatus::Ingested {
                answer.not_chunked += 1;
                continue;
            }
            let key = [
                meta.command_id.as_uuid().as_bytes().as_slice(),
                document.document_id.as_bytes().as_slice(),
            ]
            .concat();
            let per_document = CommandMeta {
                command_id: CommandId::from_uuid(Uuid::new_v5(&NAMESPACE, &key)),
                ..meta
            };
            let command = DocumentCommand::RequestEmbedding {
                model: model.clone(),
                at: state.now(),
            };
            let outcome = state
                .execute::<Document>(
                    caller.tenant(),
                    &per_document,
                    DocumentId::from_uuid(document.document_id),
                    command,
                )
                .await?;
            answer.requested += 1;
            answer.position = answer.position.max(outcome.position.unwrap_or(0));
        }
        match documents.next_cursor {
            Some(cursor) => page.after = Some(Cursor::parse(&cursor)?),
            None => break,
        }
    }
    Ok((StatusCode::ACCEPTED, JsonBody(answer)))
}
