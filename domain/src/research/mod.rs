//! The research context: documents ingested for research, cut into chunks, with the entities and
//! relations an extractor found in them.

mod chunker;
mod document;

pub use chunker::{chunk_text, ChunkSpan};
pub use document::{
    Document, DocumentCommand, DocumentError, DocumentEvent, DocumentStatus, Entity, ExtractorInfo,
    Relation, MAX_CHUNK_CHARS, MAX_TEXT, MIN_CHUNK_CHARS,
};
