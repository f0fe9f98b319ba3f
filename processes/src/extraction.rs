//! The extraction worker: finds the entities and relations of every chunked document with an
//! [`EntityExtractor`] and records them (`DocumentEntitiesExtracted`, with the extractor's name
//! and version), which the knowledge-graph read model is built from.
//!
//! It reacts to `DocumentChunked`. The tenant's brands, keywords and competitors (from the
//! brands read model) are its gazetteer, so a tenant's own vocabulary is always an entity. A
//! document that already has an extraction (recorded through the API by an outside extractor,
//! which knows better) is left alone, and so is a removed one. The command's id is derived
//! from the chunking event, so a redelivery or a restart after a SIGKILL records nothing twice.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use cqrs_es::Aggregate as _;
use plasma_commands::{CommandContext, CommandError, CommandHandler, RecordedEvent};
use plasma_domain::ids::{CommandId, CorrelationId};
use plasma_domain::research::{
    Document, DocumentCommand, DocumentStatus, EntityExtractor, Gazetteer,
};
use plasma_domain::Context;
use plasma_projections::ReadModels;
use uuid::Uuid;

use crate::{Process, ProcessError};

/// The event the worker reacts to.
const CHUNKED: &str = "DocumentChunked";

/// Documents whose entities the worker recorded, by `extractor`.
pub const METRIC_DOCUMENTS_EXTRACTED: &str = "plasma_extraction_documents_total";

/// Registers the worker's metric descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_DOCUMENTS_EXTRACTED,
        "Documents whose entities and relations the extraction worker recorded"
    );
}

/// Namespace of the command ids the worker derives.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x0e51_7c2b_9d44_4a18_b3f6_52a9_c1d0_7e83);

/// Its checkpoint's name (and consumer group's).
pub const NAME: &str = "extract_entities";

#[derive(Debug)]
pub struct ExtractionWorker {
    handler: CommandHandler,
    read: ReadModels,
    extractor: Arc<dyn EntityExtractor>,
}

impl ExtractionWorker {
    pub fn new(
        handler: CommandHandler,
        read: ReadModels,
        extractor: Arc<dyn EntityExtractor>,
    ) -> Self {
        Self {
            handler,
            read,
            extractor,
        }
    }

    fn command_id(&self, chunked: &RecordedEvent) -> CommandId {
        let info = self.extractor.info();
        let key = format!("{}/{}@{}", chunked.event_id, info.name, info.version);
        CommandId::from_uuid(Uuid::new_v5(&COMMAND_NAMESPACE, key.as_bytes()))
    }

    async fn gazetteer(&self, chunked: &RecordedEvent) -> Result<Gazetteer, ProcessError> {
        let brands = self.read.brands(&chunked.tenant).await?;
        let terms = brands.into_iter().flat_map(|brand| {
            std::iter::once((brand.name, "brand".to_owned()))
                .chain(
                    brand
                        .keywords
                        .into_iter()
                        .map(|k| (k, "keyword".to_owned())),
                )
                .chain(
                    brand
                        .competitors
                        .into_iter()
                        .map(|c| (c, "competitor".to_owned())),
                )
        });
        Ok(Gazetteer::new(terms))
    }

    async fn extract_document(&self, chunked: &RecordedEvent) -> Result<(), ProcessError> {
        let context = CommandContext::new(
            chunked.tenant.clone(),
            self.command_id(chunked),
            Some(CorrelationId::from_uuid(chunked.correlation_id)),
        );
        let (document, _, _) = self
            .handler
            .load::<Document>(&context, chunked.aggregate_id)
            .await?;
        match document.status {
            Some(DocumentStatus::Chunked) => {}
            // Already extracted (by us before a crash, or by an outside extractor), removed,
            // or not there at all: nothing to do.
            _ => return Ok(()),
        }
        let gazetteer = self.gazetteer(chunked).await?;
        let extractor = self.extractor.clone();
        let texts: Vec<String> = document
            .chunks
            .iter()
            .map(|chunk| chunk.slice(&document.text).to_owned())
            .collect();
        let extraction = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            extractor.extract(&refs, &gazetteer)
        })
        .await
        .map_err(|e| ProcessError::Task(e.to_string()))?;
        let info = self.extractor.info();
        let command = DocumentCommand::RecordEntities {
            entities: extraction.entities,
            relations: extraction.relations,
            extractor: info.clone(),
            replace: false,
            at: Utc::now(),
        };
        match self
            .handler
            .execute::<Document>(&context, chunked.aggregate_id, command, &())
            .await
        {
            Ok(receipt) => {
                if !receipt.replayed {
                    metrics::counter!(METRIC_DOCUMENTS_EXTRACTED, "extractor" => info.name)
                        .increment(1);
                }
                Ok(())
            }
            Err(CommandError::Store(err)) => Err(err.into()),
            Err(other) => Err(ProcessError::Refused(other.to_string())),
        }
    }
}

#[async_trait]
impl Process for ExtractionWorker {
    fn name(&self) -> &str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Research]
    }

    #[tracing::instrument(skip_all)]
    async fn handle(&self, events: &[RecordedEvent]) -> Result<(), ProcessError> {
        for event in events
            .iter()
            .filter(|e| e.aggregate_type == Document::TYPE && e.event_type == CHUNKED)
        {
            self.extract_document(event).await?;
        }
        Ok(())
    }
}
