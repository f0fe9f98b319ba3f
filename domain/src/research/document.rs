//! The Document aggregate: a text ingested for research, its chunks and the entities found in it.
//!
//! A document is chunked once: chunk indexes are what extracted entities and chunk vectors point
//! at, so they must never move (chunking again with the same parameters is a no-op, so retries
//! are safe; other parameters are refused). Entities may be recorded again, e.g. by a newer
//! extractor; the latest extraction replaces the previous one. Each embedding model's vectors
//! are recorded once per document: computing them is costly and a replay must never run the
//! model again.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::chunker::{chunk_text, ChunkSpan};
use super::embedding::EmbeddingModel;
use crate::text::{self, TextError};
use crate::EventName;

/// The longest text a document may have, in characters.
pub const MAX_TEXT: usize = 1_000_000;
/// Bounds for `max_chars`: small enough chunks to be useful, few enough to keep the chunked
/// event small (with overlap at most half, a document has at most ~4 × len / max_chars chunks).
pub const MIN_CHUNK_CHARS: usize = 200;
pub const MAX_CHUNK_CHARS: usize = 100_000;
const MAX_TITLE: usize = 500;
const MAX_SOURCE: usize = 2048;
const MAX_ENTITIES: usize = 1000;
const MAX_RELATIONS: usize = 5000;
const MAX_NAME: usize = 200;
const MAX_ALIASES: usize = 20;
const MAX_KIND: usize = 64;
const MAX_INFO: usize = 100;
/// The widest vector a model may record.
pub const MAX_DIMENSION: u32 = 4096;

/// Where a document stands; read models group documents by it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Ingested,
    Chunked,
    EntitiesExtracted,
    /// Taken out of research: its chunks, vectors and graph contribution are gone from the read
    /// models; its events stay, for audit.
    Removed,
}

impl DocumentStatus {
    pub const ALL: [Self; 4] = [
        Self::Ingested,
        Self::Chunked,
        Self::EntitiesExtracted,
        Self::Removed,
    ];

    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingested => "ingested",
            Self::Chunked => "chunked",
            Self::EntitiesExtracted => "entities_extracted",
            Self::Removed => "removed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// Something the extractor found: a person, an organisation, a product...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Unique within one extraction; relations refer to entities by it.
    pub name: String,
    pub kind: String,
    /// The chunks the entity appears in (recorded sorted and deduplicated).
    pub chunk_indexes: Vec<usize>,
    /// Other spellings found for it (case, plural, possessive variants), without `name`.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A directed, typed link between two extracted entities, named as in the entity list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub from: String,
    pub to: String,
    pub kind: String,
}

/// The name and version of the extractor (model, rules) that found the entities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractorInfo {
    pub name: String,
    pub version: String,
}

/// One chunk's vector, by one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkVector {
    /// The chunk's index in the document's chunk list.
    pub chunk: usize,
    /// Unit length, `model.dimension` long.
    pub vector: Vec<f32>,
}

/// How to cut a document into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    pub max_chars: usize,
    pub overlap: usize,
}

impl Chunking {
    /// What ingest uses unless told otherwise: about 250 word pieces, all-MiniLM-L6-v2's window.
    pub const DEFAULT: Self = Self {
        max_chars: 1000,
        overlap: 100,
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DocumentCommand {
    /// `source` says where the text came from (a URL, a file name). With `chunking`, the
    /// document is chunked in the same step, so the research pipeline runs without a further
    /// call; without, it waits for an explicit `Chunk`.
    Ingest {
        title: String,
        source: String,
        text: String,
        #[serde(default)]
        chunking: Option<Chunking>,
        at: DateTime<Utc>,
    },
    Chunk {
        max_chars: usize,
        overlap: usize,
        at: DateTime<Utc>,
    },
    /// Record what an extractor (outside the domain) found in the chunks. With `replace`
    /// false, a document that already has an extraction keeps it (the extraction worker's
    /// default must not override what another extractor recorded meanwhile).
    RecordEntities {
        entities: Vec<Entity>,
        relations: Vec<Relation>,
        extractor: ExtractorInfo,
        #[serde(default = "replaces")]
        replace: bool,
        at: DateTime<Utc>,
    },
    /// Record the vectors a model (outside the domain) computed for every chunk.
    RecordEmbeddings {
        model: EmbeddingModel,
        vectors: Vec<ChunkVector>,
        at: DateTime<Utc>,
    },
    /// Ask the embedding worker of the model named `model` to embed the chunks (again): after
    /// a new version of its weights, or with a model enabled after the document was embedded.
    RequestEmbedding { model: String, at: DateTime<Utc> },
    /// Take the document out of research: search, the graph and the workers forget it.
    Remove { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DocumentEvent {
    /// The only event carrying the text; chunk offsets are into this (trimmed) text.
    DocumentIngested {
        title: String,
        source: String,
        text: String,
        at: DateTime<Utc>,
    },
    DocumentChunked {
        max_chars: usize,
        overlap: usize,
        chunks: Vec<ChunkSpan>,
        at: DateTime<Utc>,
    },
    /// Replaces any earlier extraction.
    DocumentEntitiesExtracted {
        entities: Vec<Entity>,
        relations: Vec<Relation>,
        extractor: ExtractorInfo,
        at: DateTime<Utc>,
    },
    /// Every chunk's vector by one model, in chunk order; recorded once per model.
    DocumentChunksEmbedded {
        model: EmbeddingModel,
        vectors: Vec<ChunkVector>,
        at: DateTime<Utc>,
    },
    /// Someone asked for the chunks to be embedded with the model named `model`; its worker
    /// records `DocumentChunksEmbedded` unless that model's current version already did.
    DocumentEmbeddingRequested { model: String, at: DateTime<Utc> },
    /// The document was taken out of research; read models drop its chunks, vectors and graph
    /// contribution. Final: no command changes it afterwards.
    DocumentRemoved { at: DateTime<Utc> },
}

impl DomainEvent for DocumentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DocumentIngested { .. } => "DocumentIngested",
            Self::DocumentChunked { .. } => "DocumentChunked",
            Self::DocumentEntitiesExtracted { .. } => "DocumentEntitiesExtracted",
            Self::DocumentChunksEmbedded { .. } => "DocumentChunksEmbedded",
            Self::DocumentEmbeddingRequested { .. } => "DocumentEmbeddingRequested",
            Self::DocumentRemoved { .. } => "DocumentRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for DocumentEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("DocumentIngested", 1),
        ("DocumentChunked", 1),
        ("DocumentEntitiesExtracted", 1),
        ("DocumentChunksEmbedded", 1),
        ("DocumentEmbeddingRequested", 1),
        ("DocumentRemoved", 1),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the document is already ingested")]
    AlreadyIngested,
    #[error("the document does not exist")]
    NotFound,
    #[error("the document was removed")]
    Removed,
    #[error("`max_chars` must be between {min} and {max}, not {max_chars}")]
    ChunkSizeOutOfRange {
        max_chars: usize,
        min: usize,
        max: usize,
    },
    #[error("`overlap` must be at most half of `max_chars` ({max_chars}), not {overlap}")]
    OverlapTooLarge { overlap: usize, max_chars: usize },
    #[error("the document is already chunked with max_chars {max_chars} and overlap {overlap}")]
    AlreadyChunked { max_chars: usize, overlap: usize },
    #[error("the document is not chunked yet")]
    NotChunked,
    #[error("entity `{entity}` refers to chunk {index}, which does not exist")]
    UnknownChunk { entity: String, index: usize },
    #[error("entity `{0}` is listed twice")]
    DuplicateEntity(String),
    #[error("a relation refers to `{0}`, which is not a listed entity")]
    UnknownEntity(String),
    #[error("a {dimension}-dimension model is not accepted (1 to {max})")]
    DimensionOutOfRange { dimension: u32, max: u32 },
    #[error("vectors must cover chunks 0 to {expected} once each, in order; found chunk {found} at {at}")]
    VectorsDoNotCoverChunks {
        expected: usize,
        found: usize,
        at: usize,
    },
    #[error("the vector of chunk {chunk} has {len} values; the model has {dimension}")]
    WrongDimension {
        chunk: usize,
        len: usize,
        dimension: u32,
    },
    #[error("the vector of chunk {chunk} is not a finite unit vector")]
    NotAUnitVector { chunk: usize },
    #[error(transparent)]
    Invalid(#[from] TextError),
}

/// A document's current state, rebuilt from its events. It keeps the text, which chunking reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// `None` until ingested.
    pub status: Option<DocumentStatus>,
    pub title: String,
    pub text: String,
    /// `(max_chars, overlap)` once chunked.
    pub chunking: Option<(usize, usize)>,
    pub chunk_count: usize,
    /// The chunks, once chunked (what an embedder reads).
    pub chunks: Vec<ChunkSpan>,
    /// Keys (`name@version`) of the models whose vectors are recorded.
    pub embedded_with: Vec<String>,
    pub removed: bool,
}

impl Document {
    fn decide(&self, command: DocumentCommand) -> Result<Vec<DocumentEvent>, DocumentError> {
        if self.removed {
            // Removing again is a no-op, so a retried removal succeeds.
            return match command {
                DocumentCommand::Remove { .. } => Ok(Vec::new()),
                _ => Err(DocumentError::Removed),
            };
        }
        match command {
            DocumentCommand::Ingest {
                title,
                source,
                text: body,
                chunking,
                at,
            } => {
                if self.status.is_some() {
                    return Err(DocumentError::AlreadyIngested);
                }
                let title = text::required("title", &title, MAX_TITLE)?;
                let source = text::required("source", &source, MAX_SOURCE)?;
                let body = text::required("text", &body, MAX_TEXT)?;
                let chunked = match chunking {
                    Some(Chunking { max_chars, overlap }) => {
                        validate_chunking(max_chars, overlap)?;
                        Some(DocumentEvent::DocumentChunked {
                            max_chars,
                            overlap,
                            chunks: chunk_text(&body, max_chars, overlap),
                            at,
                        })
                    }
                    None => None,
                };
                let ingested = DocumentEvent::DocumentIngested {
                    title,
                    source,
                    text: body,
                    at,
                };
                Ok(std::iter::once(ingested).chain(chunked).collect())
            }
            DocumentCommand::Chunk {
                max_chars,
                overlap,
                at,
            } => {
                if self.status.is_none() {
                    return Err(DocumentError::NotFound);
                }
                validate_chunking(max_chars, overlap)?;
                match self.chunking {
                    Some(params) if params == (max_chars, overlap) => return Ok(Vec::new()),
                    Some((max_chars, overlap)) => {
                        return Err(DocumentError::AlreadyChunked { max_chars, overlap })
                    }
                    None => {}
                }
                Ok(vec![DocumentEvent::DocumentChunked {
                    max_chars,
                    overlap,
                    chunks: chunk_text(&self.text, max_chars, overlap),
                    at,
                }])
            }
            DocumentCommand::RecordEntities {
                entities,
                relations,
                extractor,
                replace,
                at,
            } => {
                if self.status.is_none() {
                    return Err(DocumentError::NotFound);
                }
                if self.chunking.is_none() {
                    return Err(DocumentError::NotChunked);
                }
                if !replace && self.status == Some(DocumentStatus::EntitiesExtracted) {
                    return Ok(Vec::new());
                }
                let entities = self.validated_entities(entities)?;
                let relations = validated_relations(&entities, relations)?;
                let extractor = ExtractorInfo {
                    name: text::required("extractor.name", &extractor.name, MAX_INFO)?,
                    version: text::required("extractor.version", &extractor.version, MAX_INFO)?,
                };
                Ok(vec![DocumentEvent::DocumentEntitiesExtracted {
                    entities,
                    relations,
                    extractor,
                    at,
                }])
            }
            DocumentCommand::RecordEmbeddings { model, vectors, at } => {
                if self.status.is_none() {
                    return Err(DocumentError::NotFound);
                }
                if self.chunking.is_none() {
                    return Err(DocumentError::NotChunked);
                }
                let model = EmbeddingModel {
                    name: text::required("model.name", &model.name, MAX_INFO)?,
                    version: text::required("model.version", &model.version, MAX_INFO)?,
                    dimension: model.dimension,
                };
                if self.embedded_with.contains(&model.key()) {
                    return Ok(Vec::new());
                }
                self.validate_vectors(&model, &vectors)?;
                Ok(vec![DocumentEvent::DocumentChunksEmbedded {
                    model,
                    vectors,
                    at,
                }])
            }
            DocumentCommand::RequestEmbedding { model, at } => {
                if self.status.is_none() {
                    return Err(DocumentError::NotFound);
                }
                if self.chunking.is_none() {
                    return Err(DocumentError::NotChunked);
                }
                let model = text::required("model", &model, MAX_INFO)?;
                Ok(vec![DocumentEvent::DocumentEmbeddingRequested {
                    model,
                    at,
                }])
            }
            DocumentCommand::Remove { at } => {
                if self.status.is_none() {
                    return Err(DocumentError::NotFound);
                }
                Ok(vec![DocumentEvent::DocumentRemoved { at }])
            }
        }
    }

    /// One finite unit vector of the model's dimension per chunk, in chunk order.
    fn validate_vectors(
        &self,
        model: &EmbeddingModel,
        vectors: &[ChunkVector],
    ) -> Result<(), DocumentError> {
        if !(1..=MAX_DIMENSION).contains(&model.dimension) {
            return Err(DocumentError::DimensionOutOfRange {
                dimension: model.dimension,
                max: MAX_DIMENSION,
            });
        }
        let expected = self.chunk_count.saturating_sub(1);
        for (at, chunk) in vectors.iter().enumerate() {
            if chunk.chunk != at || at >= self.chunk_count {
                return Err(DocumentError::VectorsDoNotCoverChunks {
                    expected,
                    found: chunk.chunk,
                    at,
                });
            }
            if chunk.vector.len() != model.dimension as usize {
                return Err(DocumentError::WrongDimension {
                    chunk: chunk.chunk,
                    len: chunk.vector.len(),
                    dimension: model.dimension,
                });
            }
            let norm: f32 = chunk.vector.iter().map(|x| x * x).sum();
            if !norm.is_finite() || (norm - 1.0).abs() > 1e-3 {
                return Err(DocumentError::NotAUnitVector { chunk: chunk.chunk });
            }
        }
        if vectors.len() != self.chunk_count {
            return Err(DocumentError::VectorsDoNotCoverChunks {
                expected,
                found: vectors.len(),
                at: vectors.len(),
            });
        }
        Ok(())
    }

    /// Trimmed, unique by name, pointing only at existing chunks.
    fn validated_entities(&self, entities: Vec<Entity>) -> Result<Vec<Entity>, DocumentError> {
        if entities.len() > MAX_ENTITIES {
            return Err(TextError::TooMany {
                field: "entities",
                len: entities.len(),
                max: MAX_ENTITIES,
            }
            .into());
        }
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(entities.len());
        for entity in entities {
            let name = text::required("entities.name", &entity.name, MAX_NAME)?;
            let kind = text::required("entities.kind", &entity.kind, MAX_KIND)?;
            if let Some(&index) = entity
                .chunk_indexes
                .iter()
                .find(|&&i| i >= self.chunk_count)
            {
                return Err(DocumentError::UnknownChunk {
                    entity: name,
                    index,
                });
            }
            if !names.insert(name.clone()) {
                return Err(DocumentError::DuplicateEntity(name));
            }
            let mut chunk_indexes = entity.chunk_indexes;
            chunk_indexes.sort_unstable();
            chunk_indexes.dedup();
            if entity.aliases.len() > MAX_ALIASES {
                return Err(TextError::TooMany {
                    field: "entities.aliases",
                    len: entity.aliases.len(),
                    max: MAX_ALIASES,
                }
                .into());
            }
            let mut aliases = Vec::with_capacity(entity.aliases.len());
            for alias in &entity.aliases {
                let alias = text::required("entities.aliases", alias, MAX_NAME)?;
                if alias != name && !aliases.contains(&alias) {
                    aliases.push(alias);
                }
            }
            out.push(Entity {
                name,
                kind,
                chunk_indexes,
                aliases,
            });
        }
        Ok(out)
    }
}

fn replaces() -> bool {
    true
}

/// Chunks neither too small nor too large, overlapping at most half a chunk.
fn validate_chunking(max_chars: usize, overlap: usize) -> Result<(), DocumentError> {
    if !(MIN_CHUNK_CHARS..=MAX_CHUNK_CHARS).contains(&max_chars) {
        return Err(DocumentError::ChunkSizeOutOfRange {
            max_chars,
            min: MIN_CHUNK_CHARS,
            max: MAX_CHUNK_CHARS,
        });
    }
    if overlap > max_chars / 2 {
        return Err(DocumentError::OverlapTooLarge { overlap, max_chars });
    }
    Ok(())
}

/// Trimmed, between listed entities only.
fn validated_relations(
    entities: &[Entity],
    relations: Vec<Relation>,
) -> Result<Vec<Relation>, DocumentError> {
    if relations.len() > MAX_RELATIONS {
        return Err(TextError::TooMany {
            field: "relations",
            len: relations.len(),
            max: MAX_RELATIONS,
        }
        .into());
    }
    let names: HashSet<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    relations
        .into_iter()
        .map(|relation| {
            let from = text::required("relations.from", &relation.from, MAX_NAME)?;
            let to = text::required("relations.to", &relation.to, MAX_NAME)?;
            let kind = text::required("relations.kind", &relation.kind, MAX_KIND)?;
            for end in [&from, &to] {
                if !names.contains(end.as_str()) {
                    return Err(DocumentError::UnknownEntity(end.clone()));
                }
            }
            Ok(Relation { from, to, kind })
        })
        .collect()
}

impl Aggregate for Document {
    const TYPE: &'static str = "Document";
    type Command = DocumentCommand;
    type Event = DocumentEvent;
    type Error = DocumentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DocumentEvent::DocumentIngested { title, text, .. } => {
                *self = Self {
                    status: Some(DocumentStatus::Ingested),
                    title,
                    text,
                    ..Self::default()
                }
            }
            DocumentEvent::DocumentChunked {
                max_chars,
                overlap,
                chunks,
                ..
            } => {
                self.status = Some(DocumentStatus::Chunked);
                self.chunking = Some((max_chars, overlap));
                self.chunk_count = chunks.len();
                self.chunks = chunks;
            }
            DocumentEvent::DocumentEntitiesExtracted { .. } => {
                self.status = Some(DocumentStatus::EntitiesExtracted)
            }
            DocumentEvent::DocumentChunksEmbedded { model, .. } => {
                self.embedded_with.push(model.key());
            }
            DocumentEvent::DocumentEmbeddingRequested { .. } => {}
            DocumentEvent::DocumentRemoved { .. } => {
                self.status = Some(DocumentStatus::Removed);
                self.removed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    type DocumentTest = TestFramework<Document>;

    fn test() -> DocumentTest {
        DocumentTest::with(())
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).single().unwrap()
    }

    /// Three paragraphs of 148 characters each, 448 characters in all.
    fn body() -> String {
        ["a", "b", "c"]
            .map(|w| format!("{}.", format!("{w} ").repeat(74).trim_end()))
            .join("\n\n")
    }

    fn ingested() -> DocumentEvent {
        DocumentEvent::DocumentIngested {
            title: "Skates market".into(),
            source: "https://example.org/report".into(),
            text: body(),
            at: at(),
        }
    }

    fn chunked() -> DocumentEvent {
        DocumentEvent::DocumentChunked {
            max_chars: 200,
            overlap: 0,
            chunks: chunk_text(&body(), 200, 0),
            at: at(),
        }
    }

    fn entity(name: &str, chunk_indexes: Vec<usize>) -> Entity {
        Entity {
            name: name.into(),
            kind: "org".into(),
            chunk_indexes,
            aliases: Vec::new(),
        }
    }

    fn relation(from: &str, to: &str) -> Relation {
        Relation {
            from: from.into(),
            to: to.into(),
            kind: "competes_with".into(),
        }
    }

    fn extractor() -> ExtractorInfo {
        ExtractorInfo {
            name: "ner".into(),
            version: "3".into(),
        }
    }

    fn record(entities: Vec<Entity>, relations: Vec<Relation>) -> DocumentCommand {
        DocumentCommand::RecordEntities {
            entities,
            relations,
            extractor: extractor(),
            replace: true,
            at: at(),
        }
    }

    fn chunk(max_chars: usize, overlap: usize) -> DocumentCommand {
        DocumentCommand::Chunk {
            max_chars,
            overlap,
            at: at(),
        }
    }

    #[test]
    fn ingesting_a_document_records_its_text() {
        test()
            .given_no_previous_events()
            .when(DocumentCommand::Ingest {
                title: " Skates market ".into(),
                source: "https://example.org/report".into(),
                text: format!("\n{}\n", body()),
                chunking: None,
                at: at(),
            })
            .then_expect_events(vec![ingested()]);
    }

    #[test]
    fn ingesting_with_chunking_records_the_text_and_its_chunks_in_one_step() {
        test()
            .given_no_previous_events()
            .when(DocumentCommand::Ingest {
                title: " Skates market ".into(),
                source: "https://example.org/report".into(),
                text: format!("\n{}\n", body()),
                chunking: Some(Chunking {
                    max_chars: 200,
                    overlap: 0,
                }),
                at: at(),
            })
            .then_expect_events(vec![ingested(), chunked()]);
    }

    #[test]
    fn ingesting_with_chunks_too_small_is_refused_and_records_nothing() {
        test()
            .given_no_previous_events()
            .when(DocumentCommand::Ingest {
                title: "Skates market".into(),
                source: "https://example.org/report".into(),
                text: body(),
                chunking: Some(Chunking {
                    max_chars: 10,
                    overlap: 0,
                }),
                at: at(),
            })
            .then_expect_error(DocumentError::ChunkSizeOutOfRange {
                max_chars: 10,
                min: MIN_CHUNK_CHARS,
                max: MAX_CHUNK_CHARS,
            });
    }

    #[test]
    fn ingesting_twice_is_refused() {
        test()
            .given(vec![ingested()])
            .when(DocumentCommand::Ingest {
                title: "t".into(),
                source: "s".into(),
                text: "x".into(),
                chunking: None,
                at: at(),
            })
            .then_expect_error(DocumentError::AlreadyIngested);
    }

    #[test]
    fn ingesting_a_text_over_the_limit_is_refused() {
        test()
            .given_no_previous_events()
            .when(DocumentCommand::Ingest {
                title: "t".into(),
                source: "s".into(),
                text: "x".repeat(MAX_TEXT + 1),
                chunking: None,
                at: at(),
            })
            .then_expect_error(DocumentError::Invalid(TextError::TooLong {
                field: "text",
                len: MAX_TEXT + 1,
                max: MAX_TEXT,
            }));
    }

    #[test]
    fn chunking_records_spans_ending_at_paragraphs() {
        let text = body();
        let chunks = chunk_text(&text, 200, 0);
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].slice(&text).ends_with(".\n\n"));
        test()
            .given(vec![ingested()])
            .when(chunk(200, 0))
            .then_expect_events(vec![chunked()]);
    }

    #[test]
    fn chunking_an_unknown_document_is_refused() {
        test()
            .given_no_previous_events()
            .when(chunk(200, 0))
            .then_expect_error(DocumentError::NotFound);
    }

    #[test]
    fn chunking_with_too_small_chunks_is_refused() {
        test()
            .given(vec![ingested()])
            .when(chunk(10, 0))
            .then_expect_error(DocumentError::ChunkSizeOutOfRange {
                max_chars: 10,
                min: MIN_CHUNK_CHARS,
                max: MAX_CHUNK_CHARS,
            });
    }

    #[test]
    fn chunking_with_an_overlap_over_half_a_chunk_is_refused() {
        test()
            .given(vec![ingested()])
            .when(chunk(200, 101))
            .then_expect_error(DocumentError::OverlapTooLarge {
                overlap: 101,
                max_chars: 200,
            });
    }

    #[test]
    fn chunking_again_with_the_same_parameters_records_nothing() {
        test()
            .given(vec![ingested(), chunked()])
            .when(chunk(200, 0))
            .then_expect_events(vec![]);
    }

    #[test]
    fn chunking_again_with_other_parameters_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(chunk(300, 50))
            .then_expect_error(DocumentError::AlreadyChunked {
                max_chars: 200,
                overlap: 0,
            });
    }

    #[test]
    fn recording_entities_records_them_normalised() {
        test()
            .given(vec![ingested(), chunked()])
            .when(record(
                vec![entity(" Acme ", vec![2, 0, 2]), entity("Globex", vec![1])],
                vec![relation("Acme", " Globex")],
            ))
            .then_expect_events(vec![DocumentEvent::DocumentEntitiesExtracted {
                entities: vec![entity("Acme", vec![0, 2]), entity("Globex", vec![1])],
                relations: vec![relation("Acme", "Globex")],
                extractor: extractor(),
                at: at(),
            }]);
    }

    #[test]
    fn recording_entities_before_chunking_is_refused() {
        test()
            .given(vec![ingested()])
            .when(record(vec![], vec![]))
            .then_expect_error(DocumentError::NotChunked);
    }

    #[test]
    fn recording_entities_of_an_unknown_document_is_refused() {
        test()
            .given_no_previous_events()
            .when(record(vec![], vec![]))
            .then_expect_error(DocumentError::NotFound);
    }

    #[test]
    fn an_entity_in_a_chunk_that_does_not_exist_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(record(vec![entity("Acme", vec![0, 3])], vec![]))
            .then_expect_error(DocumentError::UnknownChunk {
                entity: "Acme".into(),
                index: 3,
            });
    }

    #[test]
    fn an_entity_listed_twice_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(record(
                vec![entity("Acme", vec![0]), entity("Acme ", vec![1])],
                vec![],
            ))
            .then_expect_error(DocumentError::DuplicateEntity("Acme".into()));
    }

    #[test]
    fn a_relation_to_an_unlisted_entity_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(record(
                vec![entity("Acme", vec![0])],
                vec![relation("Acme", "Initech")],
            ))
            .then_expect_error(DocumentError::UnknownEntity("Initech".into()));
    }

    #[test]
    fn an_extractor_without_a_name_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(DocumentCommand::RecordEntities {
                entities: vec![],
                relations: vec![],
                extractor: ExtractorInfo {
                    name: "".into(),
                    version: "1".into(),
                },
                replace: true,
                at: at(),
            })
            .then_expect_error(DocumentError::Invalid(TextError::Empty {
                field: "extractor.name",
            }));
    }

    fn model(dimension: u32) -> EmbeddingModel {
        EmbeddingModel {
            name: "test-model".into(),
            version: "1".into(),
            dimension,
        }
    }

    /// A unit vector of `dimension` values pointing along axis `axis`.
    fn unit(dimension: usize, axis: usize) -> Vec<f32> {
        let mut vector = vec![0.0; dimension];
        vector[axis % dimension] = 1.0;
        vector
    }

    fn vectors(count: usize, dimension: usize) -> Vec<ChunkVector> {
        (0..count)
            .map(|chunk| ChunkVector {
                chunk,
                vector: unit(dimension, chunk),
            })
            .collect()
    }

    fn chunk_count() -> usize {
        chunk_text(&body(), 200, 0).len()
    }

    fn embed(vectors: Vec<ChunkVector>) -> DocumentCommand {
        DocumentCommand::RecordEmbeddings {
            model: model(4),
            vectors,
            at: at(),
        }
    }

    fn embedded() -> DocumentEvent {
        DocumentEvent::DocumentChunksEmbedded {
            model: model(4),
            vectors: vectors(chunk_count(), 4),
            at: at(),
        }
    }

    #[test]
    fn recording_a_models_vectors_for_every_chunk_records_them() {
        test()
            .given(vec![ingested(), chunked()])
            .when(embed(vectors(chunk_count(), 4)))
            .then_expect_events(vec![embedded()]);
    }

    #[test]
    fn recording_the_same_models_vectors_again_records_nothing() {
        test()
            .given(vec![ingested(), chunked(), embedded()])
            .when(embed(vectors(chunk_count(), 4)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_model_records_its_own_vectors() {
        let other = EmbeddingModel {
            version: "2".into(),
            ..model(4)
        };
        test()
            .given(vec![ingested(), chunked(), embedded()])
            .when(DocumentCommand::RecordEmbeddings {
                model: other.clone(),
                vectors: vectors(chunk_count(), 4),
                at: at(),
            })
            .then_expect_events(vec![DocumentEvent::DocumentChunksEmbedded {
                model: other,
                vectors: vectors(chunk_count(), 4),
                at: at(),
            }]);
    }

    #[test]
    fn asking_for_a_chunked_document_to_be_embedded_records_the_request() {
        test()
            .given(vec![ingested(), chunked(), embedded()])
            .when(DocumentCommand::RequestEmbedding {
                model: "test-model".into(),
                at: at(),
            })
            .then_expect_events(vec![DocumentEvent::DocumentEmbeddingRequested {
                model: "test-model".into(),
                at: at(),
            }]);
    }

    #[test]
    fn asking_to_embed_a_document_not_chunked_is_refused() {
        test()
            .given(vec![ingested()])
            .when(DocumentCommand::RequestEmbedding {
                model: "test-model".into(),
                at: at(),
            })
            .then_expect_error(DocumentError::NotChunked);
    }

    #[test]
    fn asking_to_embed_with_an_unnamed_model_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(DocumentCommand::RequestEmbedding {
                model: " ".into(),
                at: at(),
            })
            .then_expect_error(DocumentError::Invalid(TextError::Empty { field: "model" }));
    }

    #[test]
    fn embedding_before_chunking_is_refused() {
        test()
            .given(vec![ingested()])
            .when(embed(vec![]))
            .then_expect_error(DocumentError::NotChunked);
    }

    #[test]
    fn vectors_missing_a_chunk_are_refused() {
        let count = chunk_count();
        test()
            .given(vec![ingested(), chunked()])
            .when(embed(vectors(count - 1, 4)))
            .then_expect_error(DocumentError::VectorsDoNotCoverChunks {
                expected: count - 1,
                found: count - 1,
                at: count - 1,
            });
    }

    #[test]
    fn vectors_out_of_chunk_order_are_refused() {
        let mut out_of_order = vectors(chunk_count(), 4);
        out_of_order.swap(0, 1);
        test()
            .given(vec![ingested(), chunked()])
            .when(embed(out_of_order))
            .then_expect_error(DocumentError::VectorsDoNotCoverChunks {
                expected: chunk_count() - 1,
                found: 1,
                at: 0,
            });
    }

    #[test]
    fn a_vector_of_the_wrong_dimension_is_refused() {
        let mut wrong = vectors(chunk_count(), 4);
        wrong[1].vector = unit(3, 0);
        test()
            .given(vec![ingested(), chunked()])
            .when(embed(wrong))
            .then_expect_error(DocumentError::WrongDimension {
                chunk: 1,
                len: 3,
                dimension: 4,
            });
    }

    #[test]
    fn a_vector_that_is_not_unit_length_or_not_finite_is_refused() {
        for bad in [vec![0.5, 0.0, 0.0, 0.0], vec![f32::NAN, 0.0, 0.0, 1.0]] {
            let mut wrong = vectors(chunk_count(), 4);
            wrong[0].vector = bad;
            test()
                .given(vec![ingested(), chunked()])
                .when(embed(wrong))
                .then_expect_error(DocumentError::NotAUnitVector { chunk: 0 });
        }
    }

    #[test]
    fn a_model_without_a_name_or_of_no_dimension_is_refused() {
        test()
            .given(vec![ingested(), chunked()])
            .when(DocumentCommand::RecordEmbeddings {
                model: EmbeddingModel {
                    name: " ".into(),
                    ..model(4)
                },
                vectors: vectors(chunk_count(), 4),
                at: at(),
            })
            .then_expect_error(DocumentError::Invalid(TextError::Empty {
                field: "model.name",
            }));
        test()
            .given(vec![ingested(), chunked()])
            .when(DocumentCommand::RecordEmbeddings {
                model: model(0),
                vectors: vec![],
                at: at(),
            })
            .then_expect_error(DocumentError::DimensionOutOfRange {
                dimension: 0,
                max: MAX_DIMENSION,
            });
    }

    #[test]
    fn document_status_names_match_their_serde_form() {
        for status in DocumentStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(DocumentStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn an_extraction_that_does_not_replace_keeps_an_earlier_one() {
        let earlier = DocumentEvent::DocumentEntitiesExtracted {
            entities: vec![entity("Acme", vec![0])],
            relations: vec![],
            extractor: extractor(),
            at: at(),
        };
        let DocumentCommand::RecordEntities {
            entities,
            relations,
            extractor,
            at,
            ..
        } = record(vec![entity("Globex", vec![1])], vec![])
        else {
            unreachable!()
        };
        let keep = DocumentCommand::RecordEntities {
            entities,
            relations,
            extractor,
            replace: false,
            at,
        };
        test()
            .given(vec![ingested(), chunked(), earlier])
            .when(keep)
            .then_expect_events(vec![]);
    }

    #[test]
    fn removing_a_document_records_its_removal() {
        test()
            .given(vec![ingested(), chunked()])
            .when(DocumentCommand::Remove { at: at() })
            .then_expect_events(vec![DocumentEvent::DocumentRemoved { at: at() }]);
    }

    #[test]
    fn removing_again_records_nothing() {
        test()
            .given(vec![
                ingested(),
                DocumentEvent::DocumentRemoved { at: at() },
            ])
            .when(DocumentCommand::Remove { at: at() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_removed_document_refuses_every_other_command() {
        test()
            .given(vec![
                ingested(),
                chunked(),
                DocumentEvent::DocumentRemoved { at: at() },
            ])
            .when(record(vec![entity("Acme", vec![0])], vec![]))
            .then_expect_error(DocumentError::Removed);
    }

    #[test]
    fn removing_an_unknown_document_is_refused() {
        test()
            .given_no_previous_events()
            .when(DocumentCommand::Remove { at: at() })
            .then_expect_error(DocumentError::NotFound);
    }

    #[test]
    fn aliases_are_trimmed_and_never_repeat_the_name() {
        let mut acme = entity("Acme", vec![0]);
        acme.aliases = vec![
            " ACME ".into(),
            "Acme".into(),
            "ACME".into(),
            "Acme's".into(),
        ];
        let mut expected = entity("Acme", vec![0]);
        expected.aliases = vec!["ACME".into(), "Acme's".into()];
        test()
            .given(vec![ingested(), chunked()])
            .when(record(vec![acme], vec![]))
            .then_expect_events(vec![DocumentEvent::DocumentEntitiesExtracted {
                entities: vec![expected],
                relations: vec![],
                extractor: extractor(),
                at: at(),
            }]);
    }
}
