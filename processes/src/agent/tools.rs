//! The tools a workflow's steps call, one implementation per entry of the domain's registry
//! (`plasma_domain::agent::tools`). Every call carries the tenant (tools only ever see that
//! tenant's data), an idempotency key derived from the run and step (commands issued take it as
//! their id, HTTP requests send it), and the step's start time as the time of any command, so
//! a step re-run after a crash issues byte-identical commands and the event store answers them
//! with their first receipts.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use plasma_commands::{CommandContext, CommandError, CommandHandler};
use plasma_domain::agent::{
    tools, AgentRun, AgentRunCommand, DraftPublisher, OutboundError, OutboundHttp, OutboundRequest,
    PublishRequest,
};
use plasma_domain::brand::Brand;
use plasma_domain::content::{
    Draft, DraftBrief, DraftCommand, DraftServices, DraftStatus, Generation, GenerationError,
    GenerationRequest, GeneratorInfo, TextGenerator, TextSink,
};
use plasma_domain::ids::{BrandId, CommandId, CorrelationId, DraftId};
use plasma_domain::{AggregateId as _, TenantId};
use plasma_projections::{ChunkFilter, MentionFilter, PageRequest, ReadModels};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Why a tool call failed: a transient failure is retried with the same key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Terminal(String),
}

impl From<GenerationError> for ToolError {
    fn from(err: GenerationError) -> Self {
        match err {
            GenerationError::Transient(m) => Self::Transient(m),
            GenerationError::Terminal(m) => Self::Terminal(m),
        }
    }
}

/// One call of a tool.
#[derive(Debug, Clone)]
pub struct ToolCall<'a> {
    pub tenant: &'a TenantId,
    /// Derived from the run, the step (and the element of a map): the same for every attempt.
    pub key: Uuid,
    /// The step's start, recorded: the time any command of the call carries.
    pub at: DateTime<Utc>,
    pub correlation: Uuid,
    pub input: &'a Value,
    /// The run step whose output a generation streams into (`AgentStepOutputStreamed`), when
    /// the call is a run's step (not a map element, not a direct MCP call).
    pub streams_to: Option<StepRef>,
}

/// A run's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef {
    pub run_id: Uuid,
    pub index: u32,
}

/// Text pieces a streamed output groups into one recorded chunk: a few tokens per event keeps
/// the stream live without an event per token. Counted in pieces, not time, so a step retried
/// with the same seed cuts the same chunks and its command ids find the ones already recorded.
const PIECES_PER_CHUNK: usize = 8;

/// Collects a generation's pieces and hands each full chunk to a task that records it.
struct ChunkSink {
    state: std::sync::Mutex<(String, usize, u32)>,
    chunks: tokio::sync::mpsc::UnboundedSender<(u32, String)>,
}

impl ChunkSink {
    fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (text, pieces, chunk) = &mut *state;
        if !text.is_empty() {
            let _ = self.chunks.send((*chunk, std::mem::take(text)));
            *chunk += 1;
        }
        *pieces = 0;
    }
}

impl TextSink for ChunkSink {
    fn push(&self, piece: &str) {
        let full = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.0.push_str(piece);
            state.1 += 1;
            state.1 >= PIECES_PER_CHUNK
        };
        if full {
            self.flush();
        }
    }
}

impl ToolCall<'_> {
    fn context(&self, purpose: &str) -> CommandContext {
        let id = Uuid::new_v5(&self.key, purpose.as_bytes());
        CommandContext::new(
            self.tenant.clone(),
            CommandId::from_uuid(id),
            Some(CorrelationId::from_uuid(self.correlation)),
        )
    }

    fn str(&self, field: &str) -> Result<&str, ToolError> {
        self.input
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::Terminal(format!("input `{field}` must be a string")))
    }

    fn opt_str(&self, field: &str) -> Option<&str> {
        self.input.get(field).and_then(Value::as_str)
    }

    fn draft_id(&self) -> Result<DraftId, ToolError> {
        DraftId::parse(self.str("draft_id")?).map_err(|e| ToolError::Terminal(e.to_string()))
    }

    fn brand_id(&self) -> Result<BrandId, ToolError> {
        BrandId::parse(self.str("brand_id")?).map_err(|e| ToolError::Terminal(e.to_string()))
    }

    fn limit(&self, default: u32, max: u32) -> u32 {
        self.input
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(default, |l| l.clamp(1, u64::from(max)) as u32)
    }
}

/// The hex SHA-256 of what a provider was asked, recorded with every generation.
pub fn prompt_sha256(request: &GenerationRequest) -> String {
    // The prompt, not the seed: the same brief hashes the same in every run.
    let unseeded = GenerationRequest {
        seed: None,
        ..request.clone()
    };
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&unseeded).unwrap_or_default());
    format!("{:x}", hasher.finalize())
}

/// Everything the tools reach.
#[derive(Debug, Clone)]
pub struct ToolBox {
    pub handler: CommandHandler,
    pub read: ReadModels,
    pub generator: Arc<dyn TextGenerator>,
    pub http: Arc<dyn OutboundHttp>,
    pub publisher: Arc<dyn DraftPublisher>,
    pub draft_services: DraftServices,
}

fn store_error<E: std::error::Error>(err: CommandError<E>) -> ToolError {
    match err {
        CommandError::Domain(e) => ToolError::Terminal(e.to_string()),
        CommandError::IdempotencyKeyReused => {
            ToolError::Terminal("the step's command was already recorded differently".into())
        }
        other => ToolError::Transient(other.to_string()),
    }
}

impl ToolBox {
    /// Calls `name`; an unknown tool is a terminal failure.
    pub async fn call(&self, name: &str, call: ToolCall<'_>) -> Result<Value, ToolError> {
        if !call.input.is_object() && !call.input.is_null() {
            return Err(ToolError::Terminal(
                "a tool's input is a JSON object".into(),
            ));
        }
        match name {
            "noop" => Ok(json!({"ok": true})),
            "brand.stats" => self.brand_stats(&call).await,
            "mentions.search" => self.mentions(&call).await,
            "research.search" => self.research(&call).await,
            "llm.complete" => self.complete(&call).await,
            "http.request" => self.http(&call).await,
            "draft.generate" => self.draft_generate(&call).await,
            "draft.record" => self.draft_record(&call).await,
            "draft.check_voice" => self.draft_check(&call).await,
            "draft.approve" => self.draft_approve(&call).await,
            "draft.reject" => self.draft_reject(&call).await,
            "draft.schedule" => self.draft_schedule(&call).await,
            "draft.publish" => self.draft_publish(&call).await,
            other => Err(ToolError::Terminal(format!(
                "unknown tool `{other}`; the registry has: {}",
                tools::names().join(", ")
            ))),
        }
    }

    async fn brand_stats(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let brand = call.brand_id()?;
        let days = call
            .input
            .get("days")
            .and_then(Value::as_i64)
            .unwrap_or(30)
            .clamp(1, 365);
        let to = call.at.date_naive();
        let from = to - chrono::Duration::days(days - 1);
        let stats = self
            .read
            .brand_stats(call.tenant, brand, from, to)
            .await
            .map_err(|e| ToolError::Transient(e.to_string()))?;
        serde_json::to_value(stats).map_err(|e| ToolError::Terminal(e.to_string()))
    }

    async fn mentions(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let brand = call.brand_id()?;
        let limit = call.limit(20, 100);
        let q = call.opt_str("q").map(str::to_lowercase);
        let page = PageRequest {
            limit: if q.is_some() { 100 } else { limit },
            after: None,
        };
        let found = self
            .read
            .mentions(call.tenant, brand, &MentionFilter::default(), &page)
            .await
            .map_err(|e| ToolError::Transient(e.to_string()))?;
        let mentions: Vec<Value> = found
            .items
            .into_iter()
            .filter(|m| {
                q.as_deref()
                    .is_none_or(|q| m.text.to_lowercase().contains(q))
            })
            .take(limit as usize)
            .map(|m| {
                json!({"mention_id": m.mention_id, "author": m.author, "text": m.text,
                       "sentiment": m.sentiment, "published_at": m.published_at, "url": m.url})
            })
            .collect();
        Ok(json!({ "mentions": mentions }))
    }

    async fn research(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let query = call.str("query")?;
        let limit = call.limit(5, 50);
        let hits = self
            .read
            .matching_chunks(call.tenant, query, limit, &ChunkFilter::default())
            .await
            .map_err(|e| ToolError::Transient(e.to_string()))?;
        Ok(json!({ "hits": hits }))
    }

    /// Seeded from the call's key, so a step retried after a crash writes the same text.
    async fn generate(
        &self,
        call: &ToolCall<'_>,
        request: GenerationRequest,
    ) -> Result<Value, ToolError> {
        let key = call.key.as_bytes();
        let seed = u64::from_le_bytes([
            key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
        ]);
        let request = GenerationRequest {
            // 53 bits: a JSON number every client reads exactly.
            seed: Some(seed & ((1 << 53) - 1)),
            ..request
        };
        let hash = prompt_sha256(&request);
        let generation = match call.streams_to {
            None => self.generator.generate(&request).await?,
            Some(step) => self.generate_streamed(call, step, &request).await?,
        };
        let mut output = json!({
            "text": generation.text,
            "provider": generation.provider,
            "model": generation.model,
            "prompt_sha256": hash,
            "usage": generation.usage,
        });
        if let Some(sampling) = generation.sampling {
            output["sampling"] = json!(sampling);
        }
        Ok(output)
    }

    /// Generates with the output streamed into the run's step, a chunk at a time. Recording a
    /// chunk is best effort (progress); the generation's result is what the step records.
    async fn generate_streamed(
        &self,
        call: &ToolCall<'_>,
        step: StepRef,
        request: &GenerationRequest,
    ) -> Result<Generation, GenerationError> {
        let (chunks, mut pending) = tokio::sync::mpsc::unbounded_channel::<(u32, String)>();
        let sink = ChunkSink {
            state: std::sync::Mutex::new((String::new(), 0, 0)),
            chunks,
        };
        let handler = self.handler.clone();
        let (tenant, key, correlation, at) =
            (call.tenant.clone(), call.key, call.correlation, call.at);
        let recorder = tokio::spawn(async move {
            while let Some((chunk, text)) = pending.recv().await {
                let context = CommandContext::new(
                    tenant.clone(),
                    CommandId::from_uuid(Uuid::new_v5(&key, format!("output/{chunk}").as_bytes())),
                    Some(CorrelationId::from_uuid(correlation)),
                );
                let command = AgentRunCommand::RecordOutput {
                    index: step.index,
                    chunk,
                    text,
                    at,
                };
                if let Err(error) = handler
                    .execute::<AgentRun>(&context, step.run_id, command, &())
                    .await
                {
                    tracing::debug!(%error, chunk, "a streamed output chunk was not recorded");
                }
            }
        });
        let generation = self.generator.generate_streaming(request, &sink).await;
        sink.flush();
        drop(sink);
        // Every chunk is recorded before the step's output is.
        let _ = recorder.await;
        generation
    }

    async fn complete(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let request = GenerationRequest {
            prompt: call.str("prompt")?.to_owned(),
            system: call.opt_str("system").map(str::to_owned),
            max_tokens: call
                .input
                .get("max_tokens")
                .and_then(Value::as_u64)
                .map(|n| n.min(32_768) as u32),
            draft: None,
            seed: None,
            stop: match call.input.get("stop") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(one)) => vec![one.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| ToolError::Terminal("`stop` holds strings only".into()))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(ToolError::Terminal(
                        "`stop` is a string or a list of strings".into(),
                    ))
                }
            },
        };
        if request.prompt.trim().is_empty() {
            return Err(ToolError::Terminal("`prompt` is empty".into()));
        }
        self.generate(call, request).await
    }

    async fn http(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let headers = match call.input.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ToolError::Terminal(format!(
                        "header `{k}` must be a string"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ToolError::Terminal("`headers` must be an object".into())),
        };
        let request = OutboundRequest {
            method: call.opt_str("method").unwrap_or("GET").to_owned(),
            url: call.str("url")?.to_owned(),
            headers,
            body: call.input.get("body").filter(|b| !b.is_null()).cloned(),
            idempotency_key: call.key.to_string(),
        };
        match self.http.send(&request).await {
            Ok(response) => Ok(json!({"status": response.status, "body": response.body})),
            Err(OutboundError::Refused(m)) => Err(ToolError::Terminal(m)),
            Err(OutboundError::Failed(m)) => Err(ToolError::Transient(m)),
        }
    }

    async fn draft(&self, call: &ToolCall<'_>) -> Result<(DraftId, Draft), ToolError> {
        let id = call.draft_id()?;
        let (draft, _, _) = self
            .handler
            .load::<Draft>(&call.context("load"), id.as_uuid())
            .await
            .map_err(|e| ToolError::Transient(e.to_string()))?;
        if draft.status.is_none() {
            return Err(ToolError::Terminal(format!("draft {id} does not exist")));
        }
        Ok((id, draft))
    }

    async fn brand_of(&self, call: &ToolCall<'_>, draft: &Draft) -> Result<Brand, ToolError> {
        let brand_id = draft
            .brand_id
            .ok_or_else(|| ToolError::Terminal("the draft has no brand".into()))?;
        let (brand, _, _) = self
            .handler
            .load::<Brand>(&call.context("brand"), brand_id.as_uuid())
            .await
            .map_err(|e| ToolError::Transient(e.to_string()))?;
        Ok(brand)
    }

    async fn execute_draft(
        &self,
        call: &ToolCall<'_>,
        id: DraftId,
        purpose: &str,
        command: DraftCommand,
    ) -> Result<i64, ToolError> {
        self.handler
            .execute::<Draft>(
                &call.context(purpose),
                id.as_uuid(),
                command,
                &self.draft_services,
            )
            .await
            .map(|receipt| receipt.version)
            .map_err(store_error)
    }

    async fn draft_generate(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let (_, draft) = self.draft(call).await?;
        let brand = self.brand_of(call, &draft).await?;
        let feedback = match call.input.get("feedback") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let channel = draft
            .channel
            .ok_or_else(|| ToolError::Terminal("the draft has no channel".into()))?;
        let brief = DraftBrief {
            brand: brand.name.clone(),
            brief: draft.brief.clone(),
            channel,
            voice: brand.voice.clone(),
            feedback,
        };
        let (system, prompt) = brief.prompts();
        self.generate(
            call,
            GenerationRequest {
                system: Some(system),
                prompt,
                max_tokens: None,
                draft: Some(brief),
                seed: None,
                stop: Vec::new(),
            },
        )
        .await
    }

    async fn draft_record(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let id = call.draft_id()?;
        let text = call.str("text")?.to_owned();
        let generator = GeneratorInfo {
            name: call.opt_str("generator").unwrap_or("agent").to_owned(),
            version: call.opt_str("model").unwrap_or("unknown").to_owned(),
        };
        let command = DraftCommand::RecordGenerated {
            text,
            generator,
            at: call.at,
        };
        let version = self.execute_draft(call, id, "record", command).await?;
        Ok(json!({ "version": version }))
    }

    async fn draft_check(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let (id, draft) = self.draft(call).await?;
        let brand = self.brand_of(call, &draft).await?;
        let command = DraftCommand::CheckVoice {
            guidelines: brand.voice.clone(),
            at: call.at,
        };
        self.execute_draft(call, id, "check", command).await?;
        let channel = draft
            .channel
            .ok_or_else(|| ToolError::Terminal("the draft has no channel".into()))?;
        // The verdict recorded is the checker's on this very text; computing it again here
        // (the checker is deterministic) gives the issues without another read.
        let verdict = self
            .draft_services
            .voice_checker
            .check(&draft.text, channel, &brand.voice);
        Ok(json!({"passed": verdict.passed, "issues": verdict.issues}))
    }

    async fn draft_approve(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let (id, draft) = self.draft(call).await?;
        // Approved already (by an editor through the draft's own endpoint): nothing to do.
        if matches!(
            draft.status,
            Some(DraftStatus::Approved | DraftStatus::Scheduled | DraftStatus::Published)
        ) {
            return Ok(json!({"status": draft.status}));
        }
        let approver = call.str("approver")?.to_owned();
        let command = DraftCommand::Approve {
            approver,
            at: call.at,
        };
        self.execute_draft(call, id, "approve", command).await?;
        Ok(json!({"status": DraftStatus::Approved}))
    }

    async fn draft_reject(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let id = call.draft_id()?;
        let reason = call
            .opt_str("reason")
            .filter(|r| !r.trim().is_empty())
            .unwrap_or("rejected by the editor")
            .to_owned();
        let command = DraftCommand::Reject {
            reason,
            at: call.at,
        };
        self.execute_draft(call, id, "reject", command).await?;
        Ok(json!({"status": DraftStatus::Rejected}))
    }

    async fn draft_schedule(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let id = call.draft_id()?;
        let publish_at = DateTime::parse_from_rfc3339(call.str("publish_at")?)
            .map_err(|e| ToolError::Terminal(format!("`publish_at` is not RFC 3339: {e}")))?
            .with_timezone(&Utc);
        let command = DraftCommand::Schedule {
            publish_at,
            at: call.at,
        };
        self.execute_draft(call, id, "schedule", command).await?;
        Ok(json!({"status": DraftStatus::Scheduled, "publish_at": publish_at}))
    }

    async fn draft_publish(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let (id, draft) = self.draft(call).await?;
        if draft.status == Some(DraftStatus::Published) {
            return Ok(json!({"status": DraftStatus::Published, "url": Value::Null}));
        }
        let request = PublishRequest {
            tenant: call.tenant.clone(),
            draft_id: id,
            brand_id: draft
                .brand_id
                .ok_or_else(|| ToolError::Terminal("the draft has no brand".into()))?,
            channel: draft
                .channel
                .ok_or_else(|| ToolError::Terminal("the draft has no channel".into()))?,
            text: draft.text.clone(),
            idempotency_key: call.key.to_string(),
        };
        let url = self.publisher.publish(&request).await.map_err(|e| {
            if e.transient {
                ToolError::Transient(e.message)
            } else {
                ToolError::Terminal(format!("dead-lettered: {}", e.message))
            }
        })?;
        let command = DraftCommand::MarkPublished {
            url: url.clone(),
            at: call.at,
        };
        self.execute_draft(call, id, "publish", command).await?;
        Ok(json!({"status": DraftStatus::Published, "url": url}))
    }
}
