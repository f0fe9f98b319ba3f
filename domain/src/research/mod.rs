//! The research context: documents ingested for research, cut into chunks, with the entities and
//! relations an extractor found in them, and the embedder port their chunks are embedded through.

mod chunker;
mod document;
mod embedding;
mod extraction;
pub mod leiden;

pub use chunker::{chunk_text, ChunkSpan};
pub use document::{
    ChunkVector, Chunking, Document, DocumentCommand, DocumentError, DocumentEvent, DocumentStatus,
    Entity, ExtractorInfo, Relation, MAX_CHUNK_CHARS, MAX_DIMENSION, MAX_TEXT, MIN_CHUNK_CHARS,
};
pub use embedding::{cosine, EmbedError, Embedder, EmbeddingModel};
pub use extraction::{EntityExtractor, Extraction, Gazetteer, RuleExtractor, CO_OCCURS};
