//! The embedding worker: embeds every chunked document with one model and records the vectors
//! as an event (`DocumentChunksEmbedded`, with the model's name, version and dimension), so
//! rebuilds and replays never run the model again and partner teams receive the vectors.
//!
//! It reacts to `DocumentChunked`, and to `DocumentEmbeddingRequested` naming its model (a
//! re-embedding: after a new version of the weights, or for documents chunked before the model
//! was enabled). The command it issues has an id derived from that event and
//! the model, so handling the same event again (a redelivery, a restart after a SIGKILL between
//! recording the vectors and saving the checkpoint) records nothing twice: the store answers the
//! repeated id with the first receipt, and the document itself refuses a second set of vectors
//! from one model.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use cqrs_es::Aggregate as _;
use plasma_commands::{CommandContext, CommandError, CommandHandler, RecordedEvent};
use plasma_domain::ids::{CommandId, CorrelationId};
use plasma_domain::research::{
    ChunkVector, Document, DocumentCommand, DocumentEvent, Embedder, EmbeddingModel,
};
use plasma_domain::Context;
use uuid::Uuid;

use crate::{Process, ProcessError};

/// Texts per model call: large enough to keep the matrix multiplies busy, small enough that
/// one long document does not hold a batch of padding and the attention scores (texts × 12 ×
/// width² floats) stay small. Measured: 16 embeds 17% more tokens/s than 32 (docs/benchmarks.md).
const EMBED_BATCH: usize = 16;

/// The events the worker reacts to.
const CHUNKED: &str = "DocumentChunked";
const REQUESTED: &str = "DocumentEmbeddingRequested";

/// Chunks embedded, by `model`.
pub const METRIC_CHUNKS_EMBEDDED: &str = "plasma_embedding_chunks_total";

/// Registers the worker's metric descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_CHUNKS_EMBEDDED,
        "Chunks whose vectors an embedding worker recorded"
    );
}

/// Namespace of the command ids the worker derives.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_0d3e_52c4_4f0b_a9d2_1e7c_88b3_40f5);

/// Embeds chunked documents with one model.
#[derive(Debug)]
pub struct EmbeddingWorker {
    name: String,
    handler: CommandHandler,
    embedder: Arc<dyn Embedder>,
}

impl EmbeddingWorker {
    pub fn new(handler: CommandHandler, embedder: Arc<dyn Embedder>) -> Self {
        Self {
            name: worker_name(embedder.model()),
            handler,
            embedder,
        }
    }

    /// The command id for embedding the document `chunked` (or a request) names with this
    /// model.
    fn command_id(&self, chunked: &RecordedEvent) -> CommandId {
        let key = format!("{}/{}", chunked.event_id, self.embedder.model().key());
        CommandId::from_uuid(Uuid::new_v5(&COMMAND_NAMESPACE, key.as_bytes()))
    }

    async fn embed_document(&self, chunked: &RecordedEvent) -> Result<(), ProcessError> {
        let model = self.embedder.model().clone();
        let context = CommandContext::new(
            chunked.tenant.clone(),
            self.command_id(chunked),
            Some(CorrelationId::from_uuid(chunked.correlation_id)),
        );
        let (document, _, _) = self
            .handler
            .load::<Document>(&context, chunked.aggregate_id)
            .await?;
        if document.removed || document.embedded_with.contains(&model.key()) {
            return Ok(());
        }
        let texts: Vec<String> = document
            .chunks
            .iter()
            .map(|chunk| chunk.slice(&document.text).to_owned())
            .collect();
        let embedder = self.embedder.clone();
        let vectors = tokio::task::spawn_blocking(move || embed_all(embedder.as_ref(), &texts))
            .await
            .map_err(|e| ProcessError::Task(e.to_string()))??;
        let count = vectors.len() as u64;
        let command = DocumentCommand::RecordEmbeddings {
            model: model.clone(),
            vectors,
            at: Utc::now(),
        };
        match self
            .handler
            .execute::<Document>(&context, chunked.aggregate_id, command, &())
            .await
        {
            Ok(receipt) => {
                if !receipt.replayed {
                    metrics::counter!(METRIC_CHUNKS_EMBEDDED, "model" => model.key())
                        .increment(count);
                }
                Ok(())
            }
            Err(CommandError::Store(err)) => Err(err.into()),
            Err(other) => Err(ProcessError::Refused(other.to_string())),
        }
    }
}

/// Every text's vector, in batches of [`EMBED_BATCH`].
fn embed_all(embedder: &dyn Embedder, texts: &[String]) -> Result<Vec<ChunkVector>, ProcessError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        for vector in embedder.embed(&refs)? {
            out.push(ChunkVector {
                chunk: out.len(),
                vector,
            });
        }
    }
    Ok(out)
}

/// The worker's checkpoint name for a model: `embed_` and the model's name in lower case,
/// letters, digits and `_` only.
pub fn worker_name(model: &EmbeddingModel) -> String {
    let slug: String = model
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("embed_{slug}")
}

#[async_trait]
impl Process for EmbeddingWorker {
    fn name(&self) -> &str {
        &self.name
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Research]
    }

    #[tracing::instrument(skip_all, fields(plasma.model = %self.embedder.model().key()))]
    async fn handle(&self, events: &[RecordedEvent]) -> Result<(), ProcessError> {
        // By type name first: decoding every document event would parse whole texts.
        for event in events.iter().filter(|e| e.aggregate_type == Document::TYPE) {
            let wanted = match event.event_type.as_str() {
                CHUNKED => true,
                REQUESTED => matches!(
                    event.decode::<DocumentEvent>()?,
                    DocumentEvent::DocumentEmbeddingRequested { model, .. }
                        if model == self.embedder.model().name
                ),
                _ => false,
            };
            if wanted {
                self.embed_document(event).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_name_is_its_models_name_made_safe_for_a_checkpoint() {
        let model = EmbeddingModel {
            name: "all-MiniLM-L6-v2".into(),
            version: "x".into(),
            dimension: 384,
        };
        assert_eq!(worker_name(&model), "embed_all_minilm_l6_v2");
    }
}
