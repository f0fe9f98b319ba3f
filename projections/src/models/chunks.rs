//! The vector read model: every chunk of every research document, with its text for citations,
//! and each known embedding model's vectors in an index of their own (vectors of different
//! models never share one): pgvector's HNSW with cosine distance in server mode, sqlite-vec's
//! `vec0` tables in embedded mode. Built only from events, so a rebuild or a replay never runs
//! a model.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::ids::DocumentId;
use plasma_domain::research::{Document, DocumentEvent};
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use super::micros;
use crate::read_models::{from_micros, ReadModels};
use crate::read_store::{on_pool, on_tx};
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "chunks";

/// Characters of a chunk's text a search answer quotes.
const SNIPPET_CHARS: usize = 240;

/// Candidates an HNSW search considers (pgvector's `hnsw.ef_search`; its default is 40): more
/// is slower and closer to exact. `plasma bench search` measures recall@10 against exact
/// search for a range of values; this one keeps it at or above 0.95.
const HNSW_EF_SEARCH: i64 = 100;
/// pgvector's upper bound for `hnsw.ef_search`.
const HNSW_EF_SEARCH_MAX: i64 = 1000;

/// The models whose vectors are indexed: name, dimension, and the table their vectors live in.
pub const INDEXED_MODELS: [(&str, u32, &str); 2] = [
    ("all-MiniLM-L6-v2", 384, "rm_chunk_vectors_minilm"),
    (
        "wordllama-l2-supercat-256",
        256,
        "rm_chunk_vectors_wordllama",
    ),
];

fn vector_table(model: &str, dimension: u32) -> Option<&'static str> {
    INDEXED_MODELS
        .iter()
        .find(|(name, dim, _)| *name == model && *dim == dimension)
        .map(|(_, _, table)| *table)
}

/// A vector as pgvector and sqlite-vec both read it: `[0.1,0.2,...]`.
fn vector_text(vector: &[f32]) -> String {
    let mut text = String::with_capacity(vector.len() * 12);
    text.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&x.to_string());
    }
    text.push(']');
    text
}

/// Chunks with their text and each indexed model's vectors.
#[derive(Debug, Clone, Copy)]
pub struct ChunksProjection;

const TABLES: &[&str] = &[
    "rm_chunk_documents",
    "rm_chunks",
    "rm_chunk_embeddings",
    "rm_chunks_text",
    "rm_chunk_vectors_minilm",
    "rm_chunk_vectors_wordllama",
];

const COMMON_DDL: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS rm_chunk_documents{t} (
        tenant_id   TEXT   NOT NULL,
        document_id {uuid} NOT NULL,
        title       TEXT   NOT NULL,
        source      TEXT   NOT NULL,
        ingested_at BIGINT NOT NULL,
        body        TEXT   NOT NULL,
        PRIMARY KEY (tenant_id, document_id)
    )",
    "CREATE TABLE IF NOT EXISTS rm_chunks{t} (
        tenant_id   TEXT   NOT NULL,
        document_id {uuid} NOT NULL,
        chunk_index BIGINT NOT NULL,
        start_char  BIGINT NOT NULL,
        end_char    BIGINT NOT NULL,
        body        TEXT   NOT NULL,
        PRIMARY KEY (tenant_id, document_id, chunk_index)
    )",
    // Which version of each model a document's indexed vectors are from: a re-embedding with
    // a new version replaces the old vectors instead of adding to them.
    "CREATE TABLE IF NOT EXISTS rm_chunk_embeddings{t} (
        tenant_id     TEXT   NOT NULL,
        document_id   {uuid} NOT NULL,
        vector_table  TEXT   NOT NULL,
        model_version TEXT   NOT NULL,
        PRIMARY KEY (tenant_id, document_id, vector_table)
    )",
];

const POSTGRES_DDL: &[&str] = &[
    // Needs the extension installed in the server (pgvector); creating it needs the right to.
    "CREATE EXTENSION IF NOT EXISTS vector",
    COMMON_DDL[0],
    COMMON_DDL[1],
    COMMON_DDL[2],
    // The lexical index: English stemming, ranked by ts_rank_cd.
    "CREATE TABLE IF NOT EXISTS rm_chunks_text{t} (
        tenant_id   TEXT     NOT NULL,
        document_id uuid     NOT NULL,
        chunk_index BIGINT   NOT NULL,
        search      tsvector NOT NULL,
        PRIMARY KEY (tenant_id, document_id, chunk_index)
    )",
    "CREATE INDEX IF NOT EXISTS rm_chunks_text_search_{g} ON rm_chunks_text{t} USING gin (search)",
    "CREATE TABLE IF NOT EXISTS rm_chunk_vectors_minilm{t} (
        tenant_id     TEXT        NOT NULL,
        document_id   uuid        NOT NULL,
        chunk_index   BIGINT      NOT NULL,
        model_version TEXT        NOT NULL,
        embedding     vector(384) NOT NULL,
        PRIMARY KEY (tenant_id, document_id, chunk_index)
    )",
    "CREATE INDEX IF NOT EXISTS rm_chunk_vectors_minilm_hnsw_{g} ON rm_chunk_vectors_minilm{t}
        USING hnsw (embedding vector_cosine_ops)",
    "CREATE TABLE IF NOT EXISTS rm_chunk_vectors_wordllama{t} (
        tenant_id     TEXT        NOT NULL,
        document_id   uuid        NOT NULL,
        chunk_index   BIGINT      NOT NULL,
        model_version TEXT        NOT NULL,
        embedding     vector(256) NOT NULL,
        PRIMARY KEY (tenant_id, document_id, chunk_index)
    )",
    "CREATE INDEX IF NOT EXISTS rm_chunk_vectors_wordllama_hnsw_{g} ON rm_chunk_vectors_wordllama{t}
        USING hnsw (embedding vector_cosine_ops)",
];

const SQLITE_DDL: &[&str] = &[
    COMMON_DDL[0],
    COMMON_DDL[1],
    COMMON_DDL[2],
    // The lexical index: FTS5 with Porter stemming, ranked by BM25.
    "CREATE VIRTUAL TABLE IF NOT EXISTS rm_chunks_text{t} USING fts5(
        body,
        tenant_id UNINDEXED,
        document_id UNINDEXED,
        chunk_index UNINDEXED,
        tokenize = 'porter unicode61'
    )",
    // One partition per tenant: a tenant's search never scans another's vectors.
    "CREATE VIRTUAL TABLE IF NOT EXISTS rm_chunk_vectors_minilm{t} USING vec0(
        tenant_id TEXT PARTITION KEY,
        embedding float[384] distance_metric=cosine,
        +document_id BLOB,
        +chunk_index INTEGER,
        +model_version TEXT
    )",
    "CREATE VIRTUAL TABLE IF NOT EXISTS rm_chunk_vectors_wordllama{t} USING vec0(
        tenant_id TEXT PARTITION KEY,
        embedding float[256] distance_metric=cosine,
        +document_id BLOB,
        +chunk_index INTEGER,
        +model_version TEXT
    )",
];

#[async_trait]
impl Projection for ChunksProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Research]
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn ddl(&self) -> &'static [&'static str] {
        SQLITE_DDL
    }

    fn ddl_for(&self, postgres: bool) -> &'static [&'static str] {
        if postgres {
            POSTGRES_DDL
        } else {
            SQLITE_DDL
        }
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let postgres = tx.is_postgres();
        for event in events.iter().filter(|e| e.aggregate_type == Document::TYPE) {
            match event.decode::<DocumentEvent>()? {
                DocumentEvent::DocumentIngested {
                    title,
                    source,
                    text,
                    at,
                } => {
                    let sql = format!(
                        "INSERT INTO {} (tenant_id, document_id, title, source, ingested_at, body) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        tables.name("rm_chunk_documents")
                    );
                    on_tx!(tx, |c| sqlx::query(&sql)
                        .bind(event.tenant.as_str())
                        .bind(event.aggregate_id)
                        .bind(&title)
                        .bind(&source)
                        .bind(micros(at))
                        .bind(&text)
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(ProjectionError::db(
                            "projecting a chunked document"
                        ))?);
                }
                DocumentEvent::DocumentChunked { chunks, .. } => {
                    let body_sql = format!(
                        "SELECT body FROM {} WHERE tenant_id = $1 AND document_id = $2",
                        tables.name("rm_chunk_documents")
                    );
                    let body: Option<String> = on_tx!(tx, |c| sqlx::query_scalar(&body_sql)
                        .bind(event.tenant.as_str())
                        .bind(event.aggregate_id)
                        .fetch_optional(c)
                        .await
                        .map_err(ProjectionError::db("reading a document's text"))?);
                    let Some(body) = body else { continue };
                    let sql = format!(
                        "INSERT INTO {} (tenant_id, document_id, chunk_index, start_char, \
                         end_char, body) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        tables.name("rm_chunks")
                    );
                    let text_sql = if postgres {
                        format!(
                            "INSERT INTO {} (tenant_id, document_id, chunk_index, search) \
                             VALUES ($1, $2, $3, to_tsvector('english', $4)) ON CONFLICT DO NOTHING",
                            tables.name("rm_chunks_text")
                        )
                    } else {
                        format!(
                            "INSERT INTO {} (tenant_id, document_id, chunk_index, body) \
                             VALUES ($1, $2, $3, $4)",
                            tables.name("rm_chunks_text")
                        )
                    };
                    for chunk in &chunks {
                        let text = chunk.slice(&body);
                        on_tx!(tx, |c| sqlx::query(&text_sql)
                            .bind(event.tenant.as_str())
                            .bind(event.aggregate_id)
                            .bind(i64::try_from(chunk.index).unwrap_or(i64::MAX))
                            .bind(text)
                            .execute(c)
                            .await
                            .map(|_| ())
                            .map_err(ProjectionError::db("indexing a chunk's words"))?);
                        on_tx!(tx, |c| sqlx::query(&sql)
                            .bind(event.tenant.as_str())
                            .bind(event.aggregate_id)
                            .bind(i64::try_from(chunk.index).unwrap_or(i64::MAX))
                            .bind(i64::try_from(chunk.start).unwrap_or(i64::MAX))
                            .bind(i64::try_from(chunk.end).unwrap_or(i64::MAX))
                            .bind(text)
                            .execute(c)
                            .await
                            .map(|_| ())
                            .map_err(ProjectionError::db("projecting a chunk"))?);
                    }
                }
                DocumentEvent::DocumentChunksEmbedded { model, vectors, .. } => {
                    // Only the models with an index of their own are searchable.
                    let Some(table) = vector_table(&model.name, model.dimension) else {
                        continue;
                    };
                    replace_vectors(tx, tables, event, table, &model.version).await?;
                    let sql = if postgres {
                        format!(
                            "INSERT INTO {} (tenant_id, document_id, chunk_index, model_version, \
                             embedding) VALUES ($1, $2, $3, $4, $5::vector) ON CONFLICT (tenant_id, document_id, \
                             chunk_index) DO UPDATE SET model_version = excluded.model_version, \
                             embedding = excluded.embedding",
                            tables.name(table)
                        )
                    } else {
                        format!(
                            "INSERT INTO {} (tenant_id, document_id, chunk_index, model_version, \
                             embedding) VALUES ($1, $2, $3, $4, $5)",
                            tables.name(table)
                        )
                    };
                    for chunk in &vectors {
                        let embedding = vector_text(&chunk.vector);
                        on_tx!(tx, |c| sqlx::query(&sql)
                            .bind(event.tenant.as_str())
                            .bind(event.aggregate_id)
                            .bind(i64::try_from(chunk.chunk).unwrap_or(i64::MAX))
                            .bind(&model.version)
                            .bind(&embedding)
                            .execute(c)
                            .await
                            .map(|_| ())
                            .map_err(ProjectionError::db("projecting a chunk vector"))?);
                    }
                }
                DocumentEvent::DocumentRemoved { .. } => remove_document(tx, tables, event).await?,
                DocumentEvent::DocumentEntitiesExtracted { .. }
                | DocumentEvent::DocumentEmbeddingRequested { .. } => {}
            }
        }
        Ok(())
    }
}

/// Deletes every row of `event`'s document: text, chunks, words and vectors.
async fn remove_document(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let postgres = tx.is_postgres();
    for base in TABLES {
        let table = tables.name(base);
        // SQLite's virtual tables (FTS5, vec0) delete by rowid.
        let virtual_table = matches!(
            *base,
            "rm_chunks_text" | "rm_chunk_vectors_minilm" | "rm_chunk_vectors_wordllama"
        );
        let sql = if postgres || !virtual_table {
            format!("DELETE FROM {table} WHERE tenant_id = $1 AND document_id = $2")
        } else {
            format!(
                "DELETE FROM {table} WHERE rowid IN \
                 (SELECT rowid FROM {table} WHERE tenant_id = $1 AND document_id = $2)"
            )
        };
        on_tx!(tx, |c| sqlx::query(&sql)
            .bind(event.tenant.as_str())
            .bind(event.aggregate_id)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db("removing a document's chunks"))?);
    }
    Ok(())
}

/// Records that `event`'s document now has `table`'s vectors from `version`, deleting the
/// vectors of an earlier version first (a re-embedding replaces, never adds).
async fn replace_vectors(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
    table: &str,
    version: &str,
) -> Result<(), ProjectionError> {
    let embeddings = tables.name("rm_chunk_embeddings");
    let vectors = tables.name(table);
    let previous_sql = format!(
        "SELECT model_version FROM {embeddings} \
         WHERE tenant_id = $1 AND document_id = $2 AND vector_table = $3"
    );
    let previous: Option<String> = on_tx!(tx, |c| sqlx::query_scalar(&previous_sql)
        .bind(event.tenant.as_str())
        .bind(event.aggregate_id)
        .bind(table)
        .fetch_optional(c)
        .await
        .map_err(ProjectionError::db("reading a document's vector version"))?);
    if previous.is_some() {
        // By rowid on SQLite: a vec0 table deletes only that way.
        let delete = if tx.is_postgres() {
            format!("DELETE FROM {vectors} WHERE tenant_id = $1 AND document_id = $2")
        } else {
            format!(
                "DELETE FROM {vectors} WHERE rowid IN \
                 (SELECT rowid FROM {vectors} WHERE tenant_id = $1 AND document_id = $2)"
            )
        };
        on_tx!(tx, |c| sqlx::query(&delete)
            .bind(event.tenant.as_str())
            .bind(event.aggregate_id)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db(
                "deleting a document's earlier vectors"
            ))?);
    }
    let record = format!(
        "INSERT INTO {embeddings} (tenant_id, document_id, vector_table, model_version) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, document_id, vector_table) \
         DO UPDATE SET model_version = excluded.model_version"
    );
    on_tx!(tx, |c| sqlx::query(&record)
        .bind(event.tenant.as_str())
        .bind(event.aggregate_id)
        .bind(table)
        .bind(version)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db(
            "recording a document's vector version"
        ))?);
    Ok(())
}

// Queries.

/// What a vector search is restricted to; all optional.
#[derive(Debug, Clone, Default)]
pub struct ChunkFilter {
    pub document: Option<DocumentId>,
    pub source: Option<String>,
    pub ingested_from: Option<DateTime<Utc>>,
    pub ingested_to: Option<DateTime<Utc>>,
}

impl ChunkFilter {
    /// Whether `hit` passes the filter (for results found other than through the index).
    pub fn admits(&self, hit: &ChunkHit) -> bool {
        self.document.is_none_or(|d| d.as_uuid() == hit.document_id)
            && self.source.as_ref().is_none_or(|s| *s == hit.source)
            && self.ingested_from.is_none_or(|t| hit.ingested_at >= t)
            && self.ingested_to.is_none_or(|t| hit.ingested_at < t)
    }

    fn is_empty(&self) -> bool {
        self.document.is_none()
            && self.source.is_none()
            && self.ingested_from.is_none()
            && self.ingested_to.is_none()
    }
}

/// One chunk a search found, with what a citation needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkHit {
    /// Higher is closer: cosine similarity (vector), the text rank (lexical: ts_rank_cd on
    /// PostgreSQL, −BM25 on SQLite) or the reciprocal-rank-fusion score (hybrid).
    pub score: f64,
    pub document_id: Uuid,
    pub title: String,
    pub source: String,
    pub chunk_index: i64,
    /// The chunk's place in the document's text, in characters, end exclusive.
    pub start_char: i64,
    pub end_char: i64,
    /// The chunk's first characters.
    pub snippet: String,
    pub ingested_at: DateTime<Utc>,
}

impl ReadModels {
    /// The `k` chunks of `tenant`'s documents closest to `query` (a vector of `model`), best
    /// first. `None` when the model has no index.
    pub async fn nearest_chunks(
        &self,
        tenant: &TenantId,
        model: &str,
        query: &[f32],
        k: u32,
        filter: &ChunkFilter,
    ) -> Result<Option<Vec<ChunkHit>>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let dimension = u32::try_from(query.len()).unwrap_or(u32::MAX);
        let Some(table) = vector_table(model, dimension) else {
            return Ok(None);
        };
        let postgres = self.store.is_postgres();
        let (nearest, ef_search) = if postgres {
            let hnsw = format!(
                "SELECT document_id, chunk_index, 1.0 - (embedding <=> $1::vector) AS rank \
                 FROM {table} WHERE tenant_id = $2 ORDER BY embedding <=> $1::vector LIMIT $3"
            );
            (hnsw, Some(HNSW_EF_SEARCH))
        } else {
            // vec0 compares with every vector of the tenant's partition: exact.
            let partition = format!(
                "SELECT document_id, chunk_index, 1.0 - distance AS rank FROM {table} \
                 WHERE embedding MATCH $1 AND k = $3 AND tenant_id = $2"
            );
            (partition, None)
        };
        let hits = self
            .ranked_chunks(tenant, &nearest, vector_text(query), k, filter, ef_search)
            .await?;
        if hits.len() >= k as usize || (!postgres && filter.is_empty()) {
            return Ok(Some(hits));
        }
        // Both indexes filter after finding the nearest: the HNSW graph holds every tenant's
        // vectors, and neither can restrict its scan to a document, source or time. A small
        // tenant among large ones, or a narrow filter, can leave fewer than k. Then compare
        // with each of the tenant's vectors that pass the filters (on PostgreSQL, `+ 0` keeps
        // the index out).
        let (distance, order) = if postgres {
            (
                "v.embedding <=> $1::vector",
                "(v.embedding <=> $1::vector) + 0",
            )
        } else {
            (
                "vec_distance_cosine(v.embedding, $1)",
                "vec_distance_cosine(v.embedding, $1)",
            )
        };
        let filters = filter_clause(postgres, "v.document_id");
        let exact = format!(
            "SELECT v.document_id, v.chunk_index, 1.0 - ({distance}) AS rank \
             FROM {table} v \
             JOIN rm_chunk_documents d ON d.tenant_id = $2 AND d.document_id = v.document_id \
             WHERE v.tenant_id = $2 AND {filters} ORDER BY {order} LIMIT $3"
        );
        self.ranked_chunks(tenant, &exact, vector_text(query), k, filter, None)
            .await
            .map(Some)
    }

    /// The `k` chunks of `tenant`'s documents whose words best match `query` (any of its
    /// words, stemmed), best first.
    pub async fn matching_chunks(
        &self,
        tenant: &TenantId,
        query: &str,
        k: u32,
        filter: &ChunkFilter,
    ) -> Result<Vec<ChunkHit>, ProjectionError> {
        self.settle(&[NAME]).await?;
        // Plain words only: neither tsquery nor FTS5 syntax can reach the index from a query.
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let (best, any) = if self.store.is_postgres() {
            // Ranked by all of the words (to_tsquery's |; stop words drop out), but first
            // only the chunks holding one of the uncommon ones: PostgreSQL ranks every match,
            // and a word in most chunks ("python" in Python's docs) would make that the whole
            // table. Common means in more than 1% of the chunks by the table's statistics
            // (ANALYZE's most common elements; a word the statistics do not list counts as
            // uncommon); when every word is common, the two least common stand in. A ranking
            // by BM25 would weigh such words little anyway. When that finds fewer than k
            // chunks, every word's matches are ranked.
            (
                "WITH lexemes AS ( \
                   SELECT l.lexeme, COALESCE(f.freq, 0) AS freq \
                   FROM unnest(tsvector_to_array(to_tsvector('english', $1))) AS l(lexeme) \
                   LEFT JOIN ( \
                     SELECT e.elem, e.freq FROM pg_stats s, \
                       unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) \
                         AS e(elem, freq) \
                     WHERE s.schemaname = current_schema() AND s.tablename = 'rm_chunks_text' \
                       AND s.attname = 'search' \
                   ) f ON f.elem = l.lexeme \
                   WHERE strpos(l.lexeme, '''') = 0 AND strpos(l.lexeme, E'\\\\') = 0 \
                 ), uncommon AS ( \
                   SELECT lexeme FROM lexemes ORDER BY freq >= 0.01, freq \
                   LIMIT GREATEST(2, (SELECT count(*) FROM lexemes WHERE freq < 0.01)) \
                 ) \
                 SELECT t.document_id, t.chunk_index, \
                   ts_rank_cd(t.search, to_tsquery('english', $1))::float8 AS rank \
                 FROM rm_chunks_text t \
                 WHERE t.tenant_id = $2 AND t.search @@ \
                   (SELECT string_agg(quote_literal(lexeme), ' | ') FROM uncommon)::tsquery \
                 ORDER BY rank DESC LIMIT $3",
                words.join(" | "),
            )
        } else {
            // Each word quoted (a phrase of one), any of them: FTS5's own syntax is inert.
            let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
            (
                "SELECT document_id, chunk_index, -bm25(rm_chunks_text) AS rank \
                 FROM rm_chunks_text WHERE rm_chunks_text MATCH $1 AND tenant_id = $2 \
                 ORDER BY bm25(rm_chunks_text) LIMIT $3",
                quoted.join(" OR "),
            )
        };
        let hits = self
            .ranked_chunks(tenant, best, any.clone(), k, filter, None)
            .await?;
        let postgres = self.store.is_postgres();
        if hits.len() >= k as usize || (!postgres && filter.is_empty()) {
            return Ok(hits);
        }
        // Fewer than k: the uncommon words' chunks were too few (PostgreSQL), or the filters,
        // applied after ranking, left too few. Rank every word's matches that pass them.
        let filters = filter_clause(postgres, "m.document_id");
        let matches = if postgres {
            "SELECT t.document_id, t.chunk_index, \
               ts_rank_cd(t.search, to_tsquery('english', $1))::float8 AS rank \
             FROM rm_chunks_text t \
             WHERE t.tenant_id = $2 AND t.search @@ to_tsquery('english', $1)"
        } else {
            "SELECT document_id, chunk_index, -bm25(rm_chunks_text) AS rank \
             FROM rm_chunks_text WHERE rm_chunks_text MATCH $1 AND tenant_id = $2"
        };
        let every_word = format!(
            "SELECT m.document_id, m.chunk_index, m.rank FROM ({matches}) m \
             JOIN rm_chunk_documents d ON d.tenant_id = $2 AND d.document_id = m.document_id \
             WHERE {filters} ORDER BY m.rank DESC LIMIT $3"
        );
        self.ranked_chunks(tenant, &every_word, any, k, filter, None)
            .await
    }

    /// The chunks `best` ranks (a query of `document_id, chunk_index, rank` over `$1` the
    /// probe, `$2` the tenant and `$3` how many), with their text and document, filtered, best
    /// first. Filters apply after ranking, so it ranks further when there are any. With
    /// `ef_search` (PostgreSQL), the HNSW scan considers that many candidates.
    /// The chunks at `keys` (document, chunk index) that exist, in the order given, each
    /// with score `score(position in keys)`.
    pub async fn chunks_at(
        &self,
        tenant: &TenantId,
        keys: &[(Uuid, i64)],
        score: impl Fn(usize) -> f64,
    ) -> Result<Vec<ChunkHit>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let mut found: std::collections::HashMap<(Uuid, i64), ChunkHit> =
            std::collections::HashMap::with_capacity(keys.len());
        // One statement per 200 keys, not one per key: a graph search cites dozens.
        for batch in keys.chunks(200) {
            let rows: Vec<ChunkHit> = on_pool!(&self.store, |p| {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT CAST(0.0 AS DOUBLE PRECISION) AS score, c.document_id, d.title, \
                     d.source, c.chunk_index, c.start_char, c.end_char, c.body, d.ingested_at \
                     FROM rm_chunks c JOIN rm_chunk_documents d \
                     ON d.tenant_id = c.tenant_id AND d.document_id = c.document_id \
                     WHERE c.tenant_id = ",
                );
                query.push_bind(tenant.as_str());
                query.push(" AND (c.document_id, c.chunk_index) IN (");
                let mut keys = query.separated(", ");
                for (document, chunk) in batch {
                    keys.push("(")
                        .push_bind_unseparated(*document)
                        .push_unseparated(", ")
                        .push_bind_unseparated(*chunk)
                        .push_unseparated(")");
                }
                query.push(")");
                query
                    .build()
                    .fetch_all(p)
                    .await
                    .map_err(ProjectionError::db("reading chunks"))?
                    .iter()
                    .map(hit)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ProjectionError::db("reading chunks"))?
            });
            for row in rows {
                found.insert((row.document_id, row.chunk_index), row);
            }
        }
        Ok(keys
            .iter()
            .enumerate()
            .filter_map(|(at, key)| {
                let mut hit = found.get(key)?.clone();
                hit.score = score(at);
                Some(hit)
            })
            .collect())
    }

    /// The full texts of the chunks at `keys` (document, chunk index) that exist.
    pub async fn chunk_bodies(
        &self,
        tenant: &TenantId,
        keys: &[(Uuid, i64)],
    ) -> Result<std::collections::HashMap<(Uuid, i64), String>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let mut bodies = std::collections::HashMap::with_capacity(keys.len());
        for batch in keys.chunks(200) {
            let rows: Vec<(Uuid, i64, String)> = on_pool!(&self.store, |p| {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT document_id, chunk_index, body FROM rm_chunks WHERE tenant_id = ",
                );
                query.push_bind(tenant.as_str());
                query.push(" AND (document_id, chunk_index) IN (");
                let mut keys = query.separated(", ");
                for (document, chunk) in batch {
                    keys.push("(")
                        .push_bind_unseparated(*document)
                        .push_unseparated(", ")
                        .push_bind_unseparated(*chunk)
                        .push_unseparated(")");
                }
                query.push(")");
                query
                    .build_query_as()
                    .fetch_all(p)
                    .await
                    .map_err(ProjectionError::db("reading chunk texts"))?
            });
            for (document, chunk, body) in rows {
                bodies.insert((document, chunk), body);
            }
        }
        Ok(bodies)
    }

    async fn ranked_chunks(
        &self,
        tenant: &TenantId,
        best: &str,
        probe: String,
        k: u32,
        filter: &ChunkFilter,
        ef_search: Option<i64>,
    ) -> Result<Vec<ChunkHit>, ProjectionError> {
        let k = i64::from(k.clamp(1, 1000));
        let fetch = if filter.is_empty() {
            k
        } else {
            (k * 20).min(4000)
        };
        let document = filter.document.map(|d| d.as_uuid());
        let from = filter.ingested_from.map(|t| t.timestamp_micros());
        let to = filter.ingested_to.map(|t| t.timestamp_micros());
        // MATERIALIZED (SQLite): the join's constraints must not reach a vec0 or FTS5 scan,
        // which refuses them or cannot use them.
        let postgres = self.store.is_postgres();
        let materialized = if postgres { "" } else { "MATERIALIZED" };
        let filters = filter_clause(postgres, "c.document_id");
        let sql = format!(
            "WITH best AS {materialized} ({best}) \
             SELECT b.rank AS score, c.document_id, d.title, d.source, c.chunk_index, \
               c.start_char, c.end_char, c.body, d.ingested_at \
             FROM best b \
             JOIN rm_chunks c ON c.tenant_id = $2 AND c.document_id = b.document_id \
               AND c.chunk_index = b.chunk_index \
             JOIN rm_chunk_documents d ON d.tenant_id = $2 AND d.document_id = b.document_id \
             WHERE {filters} \
             ORDER BY b.rank DESC, c.document_id, c.chunk_index LIMIT $8"
        );
        // The one statement, bound the same way on either store.
        macro_rules! search {
            () => {
                sqlx::query(&sql)
                    .bind(&probe)
                    .bind(tenant.as_str())
                    .bind(fetch)
                    .bind(document)
                    .bind(filter.source.as_deref())
                    .bind(from)
                    .bind(to)
                    .bind(k)
            };
        }
        let failed = ProjectionError::db("searching chunks");
        let rows: Result<Vec<ChunkHit>, sqlx::Error> = match &self.store {
            crate::ReadStore::Postgres { pool } => {
                let mut tx = pool.begin().await.map_err(failed)?;
                // A custom plan every time: after five runs of one statement PostgreSQL may
                // settle on a generic plan, which casts the text probe to a vector once per
                // row instead of once, and scans instead of using the index (measured: 10 ms
                // turned into 650 ms at 449 chunks; docs/benchmarks.md, knowledge graph).
                let mut settings = vec!["SET LOCAL plan_cache_mode = force_custom_plan".to_owned()];
                if let Some(ef_search) = ef_search {
                    let candidates = ef_search.max(fetch).min(HNSW_EF_SEARCH_MAX);
                    settings.push(format!("SET LOCAL hnsw.ef_search = {candidates}"));
                }
                for setting in &settings {
                    sqlx::query(setting)
                        .execute(&mut *tx)
                        .await
                        .map_err(ProjectionError::db("searching chunks"))?;
                }
                search!()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(ProjectionError::db("searching chunks"))?
                    .iter()
                    .map(hit)
                    .collect()
            }
            crate::ReadStore::Sqlite { reader, .. } => {
                // Another connection changing the schema (a read model creating its tables at
                // start) makes SQLite refuse a statement over the FTS5 and vec0 tables once
                // (SQLITE_SCHEMA: "vtable constructor failed"); the next try sees the new schema.
                let mut retries = 0;
                let found = loop {
                    match search!().fetch_all(reader).await {
                        Err(error) if retries < 3 && sqlite_schema_changed(&error) => {
                            retries += 1;
                        }
                        other => break other,
                    }
                };
                found.map_err(failed)?.iter().map(hit).collect()
            }
        };
        rows.map_err(ProjectionError::db("decoding search results"))
    }

    /// The stored vectors of a document's chunks (one chunk's, with `chunk`) by `model`, in
    /// chunk order; empty when there are none (unknown document, not embedded yet).
    pub async fn chunk_vectors(
        &self,
        tenant: &TenantId,
        model: &str,
        dimension: u32,
        document: DocumentId,
        chunk: Option<i64>,
    ) -> Result<Vec<Vec<f32>>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let Some(table) = vector_table(model, dimension) else {
            return Ok(Vec::new());
        };
        let texts: Vec<String> = match &self.store {
            crate::ReadStore::Postgres { pool } => {
                sqlx::query_scalar(&format!(
                "SELECT embedding::text FROM {table} WHERE tenant_id = $1 AND document_id = $2 \
                 AND ($3::bigint IS NULL OR chunk_index = $3) ORDER BY chunk_index"
            ))
                .bind(tenant.as_str())
                .bind(document.as_uuid())
                .bind(chunk)
                .fetch_all(pool)
                .await
            }
            crate::ReadStore::Sqlite { reader, .. } => {
                sqlx::query_scalar(&format!(
                    "SELECT vec_to_json(embedding) FROM {table} WHERE tenant_id = $1 \
                 AND document_id = $2 AND ($3 IS NULL OR chunk_index = $3) ORDER BY chunk_index"
                ))
                .bind(tenant.as_str())
                .bind(document.as_uuid())
                .bind(chunk)
                .fetch_all(reader)
                .await
            }
        }
        .map_err(ProjectionError::db("reading chunk vectors"))?;
        texts
            .iter()
            .map(|text| {
                serde_json::from_str::<Vec<f32>>(text).map_err(|source| ProjectionError::BadValue {
                    what: "chunk vector",
                    source,
                })
            })
            .collect()
    }
}

/// The search filters over `$4` (document), `$5` (source), `$6`/`$7` (ingested from/to), for a
/// query where `document` names the chunk's document id and `d` is its rm_chunk_documents row.
fn filter_clause(postgres: bool, document: &str) -> String {
    let [uuid, text, bigint] = if postgres {
        ["::uuid", "::text", "::bigint"]
    } else {
        ["", "", ""]
    };
    format!(
        "($4{uuid} IS NULL OR {document} = $4) AND ($5{text} IS NULL OR d.source = $5) \
         AND ($6{bigint} IS NULL OR d.ingested_at >= $6) \
         AND ($7{bigint} IS NULL OR d.ingested_at < $7)"
    )
}

fn hit<R>(row: &R) -> Result<ChunkHit, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let body: String = row.try_get("body")?;
    Ok(ChunkHit {
        score: row.try_get("score")?,
        document_id: row.try_get("document_id")?,
        title: row.try_get("title")?,
        source: row.try_get("source")?,
        chunk_index: row.try_get("chunk_index")?,
        start_char: row.try_get("start_char")?,
        end_char: row.try_get("end_char")?,
        snippet: body.chars().take(SNIPPET_CHARS).collect(),
        ingested_at: from_micros(row.try_get("ingested_at")?),
    })
}

/// Reciprocal-rank fusion (Cormack et al., 2009): each list gives a chunk 1 / (60 + rank); the
/// chunks with the highest sums come first. The score reported is that sum.
pub fn fuse_by_rank(lists: &[Vec<ChunkHit>], k: usize) -> Vec<ChunkHit> {
    let weighted: Vec<(&[ChunkHit], f64)> = lists.iter().map(|l| (l.as_slice(), 1.0)).collect();
    fuse_by_weighted_rank(&weighted, k)
}

/// [`fuse_by_rank`] with a weight per list: a hit adds `weight / (60 + rank)`.
pub fn fuse_by_weighted_rank(lists: &[(&[ChunkHit], f64)], k: usize) -> Vec<ChunkHit> {
    const RRF_K: f64 = 60.0;
    let mut fused: Vec<ChunkHit> = Vec::new();
    for (list, weight) in lists {
        for (rank, hit) in list.iter().enumerate() {
            let add = weight / (RRF_K + rank as f64 + 1.0);
            match fused
                .iter_mut()
                .find(|f| f.document_id == hit.document_id && f.chunk_index == hit.chunk_index)
            {
                Some(found) => found.score += add,
                None => fused.push(ChunkHit {
                    score: add,
                    ..hit.clone()
                }),
            }
        }
    }
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.document_id.cmp(&b.document_id))
            .then(a.chunk_index.cmp(&b.chunk_index))
    });
    fused.truncate(k);
    fused
}

/// SQLITE_SCHEMA (17, or an extended code of it): the schema changed under a prepared statement.
fn sqlite_schema_changed(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 17)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(document: u128, chunk: i64) -> ChunkHit {
        ChunkHit {
            score: 0.0,
            document_id: Uuid::from_u128(document),
            title: String::new(),
            source: String::new(),
            chunk_index: chunk,
            start_char: 0,
            end_char: 0,
            snippet: String::new(),
            ingested_at: DateTime::<Utc>::default(),
        }
    }

    #[test]
    fn a_chunk_high_in_both_lists_comes_before_one_high_in_only_one() {
        let vector = vec![hit(1, 0), hit(2, 0), hit(3, 0)];
        let lexical = vec![hit(2, 0), hit(4, 0)];
        let fused = fuse_by_rank(&[vector, lexical], 3);
        let order: Vec<u128> = fused.iter().map(|h| h.document_id.as_u128()).collect();
        assert_eq!(order, vec![2, 1, 4]);
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
    }

    #[test]
    fn vectors_print_as_pgvector_and_sqlite_vec_read_them() {
        assert_eq!(vector_text(&[0.5, -1.0, 0.25]), "[0.5,-1,0.25]");
    }
}
