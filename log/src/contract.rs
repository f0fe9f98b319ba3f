//! The event contract partner teams read: one Avro schema per event type (`schemas/avro/`),
//! compiled into the binary, and the mapping between a [`RecordedEvent`] and its Avro value.
//!
//! The mapping walks the `.avsc` JSON itself rather than apache-avro's parsed form, because the
//! contract has one rule apache-avro cannot express: fields marked `"plasma.encoding": "json"`
//! carry a JSON document as text.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::types::Value as Avro;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use plasma_commands::RecordedEvent;
pub use plasma_domain::Context;

/// Why an event and the contract disagree.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("no schema for event type `{0}`")]
    UnknownEventType(String),
    #[error("aggregate type `{0}` belongs to no bounded context")]
    UnknownAggregateType(String),
    #[error("event {event_type} does not fit its schema at `{path}`: {reason}")]
    Mismatch {
        event_type: String,
        path: String,
        reason: String,
    },
    #[error("schema {file} is invalid: {reason}")]
    BadSchema { file: String, reason: String },
}

/// One event type's schema.
#[derive(Debug)]
pub struct EventSchema {
    pub context: Context,
    /// The event type, also the record's name, e.g. `MentionIngested`.
    pub event_type: &'static str,
    /// The record's full name, e.g. `io.plasma.brand.MentionIngested`.
    pub full_name: String,
    /// The `.avsc` text as shipped.
    pub source: &'static str,
    pub json: Json,
    /// Named types defined in this schema, by full name.
    names: HashMap<String, Json>,
}

impl EventSchema {
    /// The registry subject under TopicRecordNameStrategy.
    pub fn subject(&self, topic_prefix: &str) -> String {
        format!("{}-{}", self.context.topic(topic_prefix), self.full_name)
    }

    /// The schema's path under `schemas/avro/`.
    pub fn file(&self) -> String {
        format!("{}/{}.avsc", self.context.as_str(), self.event_type)
    }
}

// Compiled in, so a binary always speaks exactly the contract it was built with.
const SOURCES: &[(Context, &str, &str)] = &[
    (
        Context::Brand,
        "BrandRegistered",
        include_str!("../../schemas/avro/brand/BrandRegistered.avsc"),
    ),
    (
        Context::Brand,
        "BrandKeywordsChanged",
        include_str!("../../schemas/avro/brand/BrandKeywordsChanged.avsc"),
    ),
    (
        Context::Brand,
        "BrandCompetitorsChanged",
        include_str!("../../schemas/avro/brand/BrandCompetitorsChanged.avsc"),
    ),
    (
        Context::Brand,
        "BrandArchived",
        include_str!("../../schemas/avro/brand/BrandArchived.avsc"),
    ),
    (
        Context::Brand,
        "MentionIngested",
        include_str!("../../schemas/avro/brand/MentionIngested.avsc"),
    ),
    (
        Context::Brand,
        "MentionFlagged",
        include_str!("../../schemas/avro/brand/MentionFlagged.avsc"),
    ),
    (
        Context::Brand,
        "MentionEscalated",
        include_str!("../../schemas/avro/brand/MentionEscalated.avsc"),
    ),
    (
        Context::Brand,
        "BrandAlertRulesChanged",
        include_str!("../../schemas/avro/brand/BrandAlertRulesChanged.avsc"),
    ),
    (
        Context::Brand,
        "AlertRaised",
        include_str!("../../schemas/avro/brand/AlertRaised.avsc"),
    ),
    (
        Context::Brand,
        "AlertAcknowledged",
        include_str!("../../schemas/avro/brand/AlertAcknowledged.avsc"),
    ),
    (
        Context::Brand,
        "AlertResolved",
        include_str!("../../schemas/avro/brand/AlertResolved.avsc"),
    ),
    (
        Context::Brand,
        "AlertSnoozed",
        include_str!("../../schemas/avro/brand/AlertSnoozed.avsc"),
    ),
    (
        Context::Brand,
        "DeliveryScheduled",
        include_str!("../../schemas/avro/brand/DeliveryScheduled.avsc"),
    ),
    (
        Context::Brand,
        "DeliveryAttempted",
        include_str!("../../schemas/avro/brand/DeliveryAttempted.avsc"),
    ),
    (
        Context::Brand,
        "DeliveryDeadLettered",
        include_str!("../../schemas/avro/brand/DeliveryDeadLettered.avsc"),
    ),
    (
        Context::Brand,
        "DeliveryRedeliveryRequested",
        include_str!("../../schemas/avro/brand/DeliveryRedeliveryRequested.avsc"),
    ),
    (
        Context::Content,
        "DraftRequested",
        include_str!("../../schemas/avro/content/DraftRequested.avsc"),
    ),
    (
        Context::Content,
        "DraftGenerated",
        include_str!("../../schemas/avro/content/DraftGenerated.avsc"),
    ),
    (
        Context::Content,
        "DraftRevised",
        include_str!("../../schemas/avro/content/DraftRevised.avsc"),
    ),
    (
        Context::Content,
        "DraftVoiceChecked",
        include_str!("../../schemas/avro/content/DraftVoiceChecked.avsc"),
    ),
    (
        Context::Content,
        "DraftApproved",
        include_str!("../../schemas/avro/content/DraftApproved.avsc"),
    ),
    (
        Context::Content,
        "DraftRejected",
        include_str!("../../schemas/avro/content/DraftRejected.avsc"),
    ),
    (
        Context::Content,
        "DraftScheduled",
        include_str!("../../schemas/avro/content/DraftScheduled.avsc"),
    ),
    (
        Context::Content,
        "DraftPublished",
        include_str!("../../schemas/avro/content/DraftPublished.avsc"),
    ),
    (
        Context::Agent,
        "AgentRunStarted",
        include_str!("../../schemas/avro/agent/AgentRunStarted.avsc"),
    ),
    (
        Context::Agent,
        "AgentStepStarted",
        include_str!("../../schemas/avro/agent/AgentStepStarted.avsc"),
    ),
    (
        Context::Agent,
        "AgentStepCompleted",
        include_str!("../../schemas/avro/agent/AgentStepCompleted.avsc"),
    ),
    (
        Context::Agent,
        "AgentStepFailed",
        include_str!("../../schemas/avro/agent/AgentStepFailed.avsc"),
    ),
    (
        Context::Agent,
        "AgentCheckpointSaved",
        include_str!("../../schemas/avro/agent/AgentCheckpointSaved.avsc"),
    ),
    (
        Context::Agent,
        "AgentRunPaused",
        include_str!("../../schemas/avro/agent/AgentRunPaused.avsc"),
    ),
    (
        Context::Agent,
        "AgentRunResumed",
        include_str!("../../schemas/avro/agent/AgentRunResumed.avsc"),
    ),
    (
        Context::Agent,
        "AgentRunCompleted",
        include_str!("../../schemas/avro/agent/AgentRunCompleted.avsc"),
    ),
    (
        Context::Agent,
        "AgentRunFailed",
        include_str!("../../schemas/avro/agent/AgentRunFailed.avsc"),
    ),
    (
        Context::Agent,
        "AgentStepItemCompleted",
        include_str!("../../schemas/avro/agent/AgentStepItemCompleted.avsc"),
    ),
    (
        Context::Agent,
        "AgentStepOutputStreamed",
        include_str!("../../schemas/avro/agent/AgentStepOutputStreamed.avsc"),
    ),
    (
        Context::Agent,
        "AgentRunCancelled",
        include_str!("../../schemas/avro/agent/AgentRunCancelled.avsc"),
    ),
    (
        Context::Agent,
        "AgentCheckpointsPruned",
        include_str!("../../schemas/avro/agent/AgentCheckpointsPruned.avsc"),
    ),
    (
        Context::Agent,
        "WorkflowDefined",
        include_str!("../../schemas/avro/agent/WorkflowDefined.avsc"),
    ),
    (
        Context::Research,
        "DocumentIngested",
        include_str!("../../schemas/avro/research/DocumentIngested.avsc"),
    ),
    (
        Context::Research,
        "DocumentChunked",
        include_str!("../../schemas/avro/research/DocumentChunked.avsc"),
    ),
    (
        Context::Research,
        "DocumentEntitiesExtracted",
        include_str!("../../schemas/avro/research/DocumentEntitiesExtracted.avsc"),
    ),
    (
        Context::Research,
        "DocumentChunksEmbedded",
        include_str!("../../schemas/avro/research/DocumentChunksEmbedded.avsc"),
    ),
    (
        Context::Research,
        "DocumentEmbeddingRequested",
        include_str!("../../schemas/avro/research/DocumentEmbeddingRequested.avsc"),
    ),
    (
        Context::Research,
        "DocumentRemoved",
        include_str!("../../schemas/avro/research/DocumentRemoved.avsc"),
    ),
];

/// Every event type's schema, by event type.
#[derive(Debug)]
pub struct Catalog {
    by_type: HashMap<&'static str, EventSchema>,
}

static CATALOG: LazyLock<Result<Catalog, String>> =
    LazyLock::new(|| Catalog::parse(SOURCES).map_err(|e| e.to_string()));

impl Catalog {
    /// The contract compiled into this binary.
    pub fn get() -> Result<&'static Catalog, ContractError> {
        CATALOG.as_ref().map_err(|reason| ContractError::BadSchema {
            file: "schemas/avro".to_owned(),
            reason: reason.clone(),
        })
    }

    fn parse(sources: &[(Context, &'static str, &'static str)]) -> Result<Self, ContractError> {
        let mut by_type = HashMap::new();
        for &(context, event_type, source) in sources {
            let file = format!("{}/{event_type}.avsc", context.as_str());
            let bad = |reason: String| ContractError::BadSchema {
                file: file.clone(),
                reason,
            };
            let json: Json = serde_json::from_str(source).map_err(|e| bad(e.to_string()))?;
            // apache-avro must accept it too: that is what the registry client parses.
            apache_avro::Schema::parse_str(source).map_err(|e| bad(e.to_string()))?;
            let full_name = format!("{}.{event_type}", context.namespace());
            let declared = full_name_of(&json, "").ok_or_else(|| bad("no record name".into()))?;
            if declared != full_name {
                return Err(bad(format!("record is {declared}, expected {full_name}")));
            }
            let mut names = HashMap::new();
            collect_names(&json, "", &mut names);
            by_type.insert(
                event_type,
                EventSchema {
                    context,
                    event_type,
                    full_name,
                    source,
                    json,
                    names,
                },
            );
        }
        Ok(Self { by_type })
    }

    pub fn schema(&self, event_type: &str) -> Result<&EventSchema, ContractError> {
        self.by_type
            .get(event_type)
            .ok_or_else(|| ContractError::UnknownEventType(event_type.to_owned()))
    }

    /// All schemas, ordered by context then file name.
    pub fn schemas(&self) -> Vec<&EventSchema> {
        let mut all: Vec<_> = self.by_type.values().collect();
        all.sort_by_key(|s| (s.context, s.event_type));
        all
    }

    /// The record an event is written as.
    pub fn to_avro(&self, event: &RecordedEvent) -> Result<(&EventSchema, Avro), ContractError> {
        let schema = self.schema(&event.event_type)?;
        let context = Context::of_aggregate(&event.aggregate_type)
            .ok_or_else(|| ContractError::UnknownAggregateType(event.aggregate_type.clone()))?;
        let mismatch = |path: &str, reason: String| ContractError::Mismatch {
            event_type: event.event_type.clone(),
            path: path.to_owned(),
            reason,
        };
        if context != schema.context {
            return Err(mismatch(
                "aggregate_type",
                format!(
                    "{} is not in {}",
                    event.aggregate_type,
                    schema.context.as_str()
                ),
            ));
        }
        // The store keeps serde's externally tagged form: {"EventType": {fields}}.
        let payload: Json =
            serde_json::from_str(&event.payload).map_err(|e| mismatch("payload", e.to_string()))?;
        let data = match payload {
            Json::Object(mut tagged) if tagged.len() == 1 => tagged
                .remove(&event.event_type)
                .ok_or_else(|| mismatch("payload", "tagged with another event type".into()))?,
            _ => return Err(mismatch("payload", "not a tagged event".into())),
        };
        let envelope = serde_json::json!({
            "event_id": event.event_id.to_string(),
            "tenant_id": event.tenant.as_str(),
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id.to_string(),
            "sequence": event.sequence,
            "position": event.position,
            "event_version": event.event_version,
            "recorded_at": rfc3339(event.recorded_at),
            "correlation_id": event.correlation_id.to_string(),
            "causation_id": event.causation_id.to_string(),
            "command_id": event.command_id.to_string(),
            "data": data,
        });
        let walk = Walk {
            names: &schema.names,
            event_type: &event.event_type,
        };
        let value = walk.encode(&schema.json, &envelope, "", &Path::Root)?;
        Ok((schema, value))
    }

    /// The event a record (of the named event type) carries. Fields are read by name, so a
    /// record written with a later, compatible schema decodes too.
    pub fn from_avro(
        &self,
        event_type: &str,
        value: &Avro,
    ) -> Result<RecordedEvent, ContractError> {
        let schema = self.schema(event_type)?;
        let walk = Walk {
            names: &schema.names,
            event_type,
        };
        let json = walk.decode(&schema.json, value, "", &Path::Root)?;
        envelope_to_event(event_type, json).map_err(|(path, reason)| ContractError::Mismatch {
            event_type: event_type.to_owned(),
            path,
            reason,
        })
    }

    /// The JSON form of a record (the form `plasma tail` prints): envelope fields, `data` as the
    /// event's fields, timestamps in RFC 3339.
    pub fn to_json(&self, event_type: &str, value: &Avro) -> Result<Json, ContractError> {
        let schema = self.schema(event_type)?;
        let walk = Walk {
            names: &schema.names,
            event_type,
        };
        walk.decode(&schema.json, value, "", &Path::Root)
    }
}

fn envelope_to_event(event_type: &str, json: Json) -> Result<RecordedEvent, (String, String)> {
    let Json::Object(mut fields) = json else {
        return Err(("".into(), "not a record".into()));
    };
    let mut take = |name: &str| {
        fields
            .remove(name)
            .ok_or((name.to_owned(), "missing".to_owned()))
    };
    let text = |name: &str, v: Json| match v {
        Json::String(s) => Ok(s),
        _ => Err((name.to_owned(), "not a string".to_owned())),
    };
    let uuid = |name: &str, v: Json| {
        text(name, v)?
            .parse::<Uuid>()
            .map_err(|e| (name.to_owned(), e.to_string()))
    };
    let int = |name: &str, v: Json| v.as_i64().ok_or((name.to_owned(), "not an integer".into()));
    let event_id = uuid("event_id", take("event_id")?)?;
    let tenant = text("tenant_id", take("tenant_id")?)?
        .parse()
        .map_err(|e: plasma_domain::IdError| ("tenant_id".to_owned(), e.to_string()))?;
    let aggregate_type = text("aggregate_type", take("aggregate_type")?)?;
    let aggregate_id = uuid("aggregate_id", take("aggregate_id")?)?;
    let sequence = int("sequence", take("sequence")?)?;
    let position = int("position", take("position")?)?;
    let event_version = i32::try_from(int("event_version", take("event_version")?)?)
        .map_err(|e| ("event_version".to_owned(), e.to_string()))?;
    let recorded_at = text("recorded_at", take("recorded_at")?)?
        .parse::<DateTime<Utc>>()
        .map_err(|e| ("recorded_at".to_owned(), e.to_string()))?;
    let correlation_id = uuid("correlation_id", take("correlation_id")?)?;
    let causation_id = uuid("causation_id", take("causation_id")?)?;
    let command_id = uuid("command_id", take("command_id")?)?;
    let data = take("data")?;
    let mut tagged = Map::new();
    tagged.insert(event_type.to_owned(), data);
    Ok(RecordedEvent {
        position,
        event_id,
        tenant,
        aggregate_type,
        aggregate_id,
        sequence,
        event_type: event_type.to_owned(),
        event_version,
        payload: Json::Object(tagged).to_string(),
        correlation_id,
        causation_id,
        command_id,
        recorded_at,
        // Not part of the event's contract: it travels in the record's `traceparent` header.
        trace_parent: None,
    })
}

/// serde's own form for `DateTime<Utc>`, so a decoded payload reads back identically.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn full_name_of(json: &Json, namespace: &str) -> Option<String> {
    let name = json.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    let ns = json
        .get("namespace")
        .and_then(Json::as_str)
        .unwrap_or(namespace);
    Some(if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}.{name}")
    })
}

fn namespace_of(full_name: &str) -> &str {
    full_name.rsplit_once('.').map_or("", |(ns, _)| ns)
}

/// Records every named type (record, enum, fixed) under its full name.
fn collect_names(json: &Json, namespace: &str, names: &mut HashMap<String, Json>) {
    match json {
        Json::Array(branches) => branches
            .iter()
            .for_each(|b| collect_names(b, namespace, names)),
        Json::Object(obj) => {
            let kind = obj.get("type");
            match kind.and_then(Json::as_str) {
                Some("record" | "enum" | "fixed") => {
                    let Some(full) = full_name_of(json, namespace) else {
                        return;
                    };
                    let ns = namespace_of(&full).to_owned();
                    if let Some(fields) = obj.get("fields").and_then(Json::as_array) {
                        for field in fields {
                            if let Some(t) = field.get("type") {
                                collect_names(t, &ns, names);
                            }
                        }
                    }
                    names.insert(full, json.clone());
                }
                Some("array") => {
                    if let Some(items) = obj.get("items") {
                        collect_names(items, namespace, names);
                    }
                }
                Some("map") => {
                    if let Some(values) = obj.get("values") {
                        collect_names(values, namespace, names);
                    }
                }
                _ => {
                    if let Some(inner @ (Json::Object(_) | Json::Array(_))) = kind {
                        collect_names(inner, namespace, names);
                    }
                }
            }
        }
        _ => {}
    }
}

const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// One conversion in either direction, with what it needs to name errors and resolve names.
struct Walk<'a> {
    names: &'a HashMap<String, Json>,
    event_type: &'a str,
}

impl Walk<'_> {
    fn err(&self, path: &Path<'_>, reason: impl Into<String>) -> ContractError {
        ContractError::Mismatch {
            event_type: self.event_type.to_owned(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// A named type referenced by `name` from inside `namespace`.
    fn resolve(
        &self,
        name: &str,
        namespace: &str,
        path: &Path<'_>,
    ) -> Result<&Json, ContractError> {
        let qualified = format!("{namespace}.{name}");
        self.names
            .get(name)
            .or_else(|| self.names.get(&qualified))
            .ok_or_else(|| self.err(path, format!("unknown type {name}")))
    }

    fn encode(
        &self,
        schema: &Json,
        json: &Json,
        namespace: &str,
        path: &Path<'_>,
    ) -> Result<Avro, ContractError> {
        match schema {
            Json::String(name) if PRIMITIVES.contains(&name.as_str()) => {
                self.primitive_to_avro(name, None, json, path)
            }
            Json::String(name) => {
                let named = self.resolve(name, namespace, path)?;
                self.encode(named, json, namespace, path)
            }
            Json::Array(branches) => {
                let null_branch = branches.iter().position(|b| b == "null");
                if json.is_null() {
                    let index = null_branch.ok_or_else(|| self.err(path, "null not allowed"))?;
                    return Ok(Avro::Union(index as u32, Box::new(Avro::Null)));
                }
                let (index, branch) = branches
                    .iter()
                    .enumerate()
                    .find(|(_, b)| *b != "null")
                    .ok_or_else(|| self.err(path, "only null allowed"))?;
                let value = self.encode(branch, json, namespace, path)?;
                Ok(Avro::Union(index as u32, Box::new(value)))
            }
            Json::Object(obj) => {
                let kind = obj.get("type").ok_or_else(|| self.err(path, "no type"))?;
                match kind.as_str() {
                    Some("record") => {
                        let full = full_name_of(schema, namespace).unwrap_or_default();
                        let ns = namespace_of(&full).to_owned();
                        let Json::Object(values) = json else {
                            return Err(self.err(path, "expected an object"));
                        };
                        let fields = obj.get("fields").and_then(Json::as_array);
                        let mut record = Vec::new();
                        for field in fields.into_iter().flatten() {
                            let name = field.get("name").and_then(Json::as_str).unwrap_or("");
                            let field_path = Path::Field(path, name);
                            let field_type = field.get("type").unwrap_or(&Json::Null);
                            let value = values.get(name).unwrap_or(&Json::Null);
                            let value = if is_json_text(field) {
                                Avro::String(value.to_string())
                            } else {
                                self.encode(field_type, value, &ns, &field_path)?
                            };
                            record.push((name.to_owned(), value));
                        }
                        Ok(Avro::Record(record))
                    }
                    Some("enum") => {
                        let symbol = json
                            .as_str()
                            .ok_or_else(|| self.err(path, "expected a symbol"))?;
                        let symbols = obj.get("symbols").and_then(Json::as_array);
                        let index = symbols
                            .into_iter()
                            .flatten()
                            .position(|s| s == symbol)
                            .ok_or_else(|| self.err(path, format!("unknown symbol {symbol}")))?;
                        Ok(Avro::Enum(index as u32, symbol.to_owned()))
                    }
                    Some("array") => {
                        let items = obj.get("items").unwrap_or(&Json::Null);
                        let Json::Array(values) = json else {
                            return Err(self.err(path, "expected an array"));
                        };
                        let mut out = Vec::with_capacity(values.len());
                        for (i, v) in values.iter().enumerate() {
                            out.push(self.encode(items, v, namespace, &Path::Index(path, i))?);
                        }
                        Ok(Avro::Array(out))
                    }
                    Some("map") => {
                        let values_schema = obj.get("values").unwrap_or(&Json::Null);
                        let Json::Object(values) = json else {
                            return Err(self.err(path, "expected an object"));
                        };
                        let mut out = HashMap::with_capacity(values.len());
                        for (k, v) in values {
                            let value =
                                self.encode(values_schema, v, namespace, &Path::Field(path, k))?;
                            out.insert(k.clone(), value);
                        }
                        Ok(Avro::Map(out))
                    }
                    Some(primitive) if PRIMITIVES.contains(&primitive) => {
                        let logical = obj.get("logicalType").and_then(Json::as_str);
                        self.primitive_to_avro(primitive, logical, json, path)
                    }
                    _ => self.encode(kind, json, namespace, path),
                }
            }
            _ => Err(self.err(path, "unsupported schema")),
        }
    }

    fn primitive_to_avro(
        &self,
        primitive: &str,
        logical: Option<&str>,
        json: &Json,
        path: &Path<'_>,
    ) -> Result<Avro, ContractError> {
        let expected = |what: &str| self.err(path, format!("expected {what}"));
        Ok(match (primitive, logical) {
            ("null", _) => Avro::Null,
            ("boolean", _) => Avro::Boolean(json.as_bool().ok_or_else(|| expected("a boolean"))?),
            ("int", _) => {
                let n = json.as_i64().ok_or_else(|| expected("an integer"))?;
                Avro::Int(i32::try_from(n).map_err(|_| expected("a 32-bit integer"))?)
            }
            ("long", Some("timestamp-micros")) => {
                let text = json.as_str().ok_or_else(|| expected("a timestamp"))?;
                let at: DateTime<Utc> = text.parse().map_err(|_| expected("an RFC 3339 time"))?;
                Avro::TimestampMicros(at.timestamp_micros())
            }
            ("long", _) => Avro::Long(match json.as_i64() {
                Some(n) => n,
                // usize fields beyond i64 cannot occur (the domain bounds them); refuse anyway.
                None => return Err(expected("a 64-bit integer")),
            }),
            // Vectors are single precision: the JSON number is an f32's shortest form.
            ("float", _) => Avro::Float(json.as_f64().ok_or_else(|| expected("a number"))? as f32),
            ("double", _) => Avro::Double(json.as_f64().ok_or_else(|| expected("a number"))?),
            ("string", Some("uuid")) => {
                let text = json.as_str().ok_or_else(|| expected("a UUID"))?;
                Avro::Uuid(text.parse().map_err(|_| expected("a UUID"))?)
            }
            ("string", _) => Avro::String(
                json.as_str()
                    .ok_or_else(|| expected("a string"))?
                    .to_owned(),
            ),
            (other, _) => return Err(self.err(path, format!("unsupported type {other}"))),
        })
    }

    fn decode(
        &self,
        schema: &Json,
        value: &Avro,
        namespace: &str,
        path: &Path<'_>,
    ) -> Result<Json, ContractError> {
        // A union value carries its branch; the reader's schema only says how to render it.
        let value = match value {
            Avro::Union(_, inner) => inner.as_ref(),
            other => other,
        };
        match schema {
            Json::String(name) if PRIMITIVES.contains(&name.as_str()) => {
                self.primitive_from_avro(value, path)
            }
            Json::String(name) => {
                let named = self.resolve(name, namespace, path)?;
                self.decode(named, value, namespace, path)
            }
            Json::Array(branches) => {
                if matches!(value, Avro::Null) {
                    return Ok(Json::Null);
                }
                let branch = branches
                    .iter()
                    .find(|b| *b != "null")
                    .ok_or_else(|| self.err(path, "only null allowed"))?;
                self.decode(branch, value, namespace, path)
            }
            Json::Object(obj) => {
                let kind = obj.get("type").ok_or_else(|| self.err(path, "no type"))?;
                match kind.as_str() {
                    Some("record") => {
                        let full = full_name_of(schema, namespace).unwrap_or_default();
                        let ns = namespace_of(&full).to_owned();
                        let Avro::Record(values) = value else {
                            return Err(self.err(path, "expected a record"));
                        };
                        let mut out = Map::new();
                        let fields = obj.get("fields").and_then(Json::as_array);
                        for field in fields.into_iter().flatten() {
                            let name = field.get("name").and_then(Json::as_str).unwrap_or("");
                            let field_path = Path::Field(path, name);
                            let found = values.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                            let json = match (found, field.get("default")) {
                                (Some(v), _) if is_json_text(field) => {
                                    let Avro::String(text) = v else {
                                        return Err(self.err(&field_path, "expected JSON text"));
                                    };
                                    serde_json::from_str(text)
                                        .map_err(|e| self.err(&field_path, e.to_string()))?
                                }
                                (Some(v), _) => {
                                    let field_type = field.get("type").unwrap_or(&Json::Null);
                                    self.decode(field_type, v, &ns, &field_path)?
                                }
                                (None, Some(default)) => default.clone(),
                                (None, None) => return Err(self.err(&field_path, "missing")),
                            };
                            out.insert(name.to_owned(), json);
                        }
                        Ok(Json::Object(out))
                    }
                    Some("enum") => match value {
                        Avro::Enum(_, symbol) | Avro::String(symbol) => {
                            Ok(Json::String(symbol.clone()))
                        }
                        _ => Err(self.err(path, "expected an enum symbol")),
                    },
                    Some("array") => {
                        let items = obj.get("items").unwrap_or(&Json::Null);
                        let Avro::Array(values) = value else {
                            return Err(self.err(path, "expected an array"));
                        };
                        values
                            .iter()
                            .enumerate()
                            .map(|(i, v)| self.decode(items, v, namespace, &Path::Index(path, i)))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Json::Array)
                    }
                    Some("map") => {
                        let values_schema = obj.get("values").unwrap_or(&Json::Null);
                        let Avro::Map(values) = value else {
                            return Err(self.err(path, "expected a map"));
                        };
                        let mut out = Map::new();
                        for (k, v) in values {
                            let json =
                                self.decode(values_schema, v, namespace, &Path::Field(path, k))?;
                            out.insert(k.clone(), json);
                        }
                        Ok(Json::Object(out))
                    }
                    Some(primitive) if PRIMITIVES.contains(&primitive) => {
                        self.primitive_from_avro(value, path)
                    }
                    _ => self.decode(kind, value, namespace, path),
                }
            }
            _ => Err(self.err(path, "unsupported schema")),
        }
    }

    fn primitive_from_avro(&self, value: &Avro, path: &Path<'_>) -> Result<Json, ContractError> {
        Ok(match value {
            Avro::Null => Json::Null,
            Avro::Boolean(b) => Json::Bool(*b),
            Avro::Int(n) => Json::from(*n),
            Avro::Long(n) => Json::from(*n),
            // Through f32's own shortest form, so the number reads back as the same f32.
            Avro::Float(n) => n.to_string().parse::<f64>().map_or(Json::Null, Json::from),
            Avro::Double(n) => Json::from(*n),
            Avro::String(s) => Json::String(s.clone()),
            Avro::Uuid(u) => Json::String(u.to_string()),
            Avro::TimestampMicros(us) => {
                let at = DateTime::<Utc>::from_timestamp_micros(*us)
                    .ok_or_else(|| self.err(path, "timestamp out of range"))?;
                Json::String(rfc3339(at))
            }
            Avro::TimestampMillis(ms) => {
                let at = DateTime::<Utc>::from_timestamp_millis(*ms)
                    .ok_or_else(|| self.err(path, "timestamp out of range"))?;
                Json::String(rfc3339(at))
            }
            other => return Err(self.err(path, format!("unexpected value {other:?}"))),
        })
    }
}

fn is_json_text(field: &Json) -> bool {
    field.get("plasma.encoding").and_then(Json::as_str) == Some("json")
}

/// Where in a record a mismatch is, rendered only when there is one (the walk is on the relay's
/// and the workers' hot path).
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Field(Self::Root, name) => f.write_str(name),
            Self::Field(parent, name) => write!(f, "{parent}.{name}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

impl Catalog {
    /// `docs/events.md`: the event catalog, generated from the schemas (a test keeps the file in
    /// step with them; `plasma schemas docs` regenerates it).
    pub fn markdown(&self, topic_prefix: &str) -> String {
        let mut out = String::new();
        out.push_str("# Event catalog\n\n");
        out.push_str(
            "Generated from `schemas/avro/` by `plasma schemas docs > docs/events.md`; do not edit \
             by hand. How to consume these topics: [consumers.md](consumers.md).\n\n",
        );
        out.push_str(
            "Every event is one Kafka record: key = the aggregate id, value = the Avro record below \
             in the Confluent wire format, registered under the subject \
             `<topic>-<record full name>` (TopicRecordNameStrategy).\n\n",
        );
        let schemas = self.schemas();
        if let Some(first) = schemas.first() {
            out.push_str("## Envelope (every event)\n\n");
            out.push_str("| field | type | description |\n|---|---|---|\n");
            for field in fields(&first.json) {
                if field.get("name").and_then(Json::as_str) == Some("data") {
                    continue;
                }
                out.push_str(&field_row(field));
            }
            out.push_str(
                "| data | record | The event's own fields, listed per event type below. |\n\n",
            );
        }
        for context in Context::ALL {
            let topic = context.topic(topic_prefix);
            out.push_str(&format!(
                "## Context `{}` — topic `{topic}`\n\n",
                context.as_str()
            ));
            for schema in schemas.iter().filter(|s| s.context == context) {
                out.push_str(&format!("### {}\n\n", schema.event_type));
                if let Some(doc) = schema.json.get("doc").and_then(Json::as_str) {
                    out.push_str(&format!("{}\n\n", doc.trim()));
                }
                out.push_str(&format!(
                    "- record `{}`, schema `schemas/avro/{}`\n- subject `{}`\n\n",
                    schema.full_name,
                    schema.file(),
                    schema.subject(topic_prefix)
                ));
                let data = fields(&schema.json)
                    .into_iter()
                    .find(|f| f.get("name").and_then(Json::as_str) == Some("data"))
                    .and_then(|f| f.get("type"));
                if let Some(data) = data {
                    out.push_str("| data field | type | description |\n|---|---|---|\n");
                    for field in fields(data) {
                        out.push_str(&field_row(field));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

fn fields(record: &Json) -> Vec<&Json> {
    record
        .get("fields")
        .and_then(Json::as_array)
        .map(|f| f.iter().collect())
        .unwrap_or_default()
}

fn field_row(field: &Json) -> String {
    let name = field.get("name").and_then(Json::as_str).unwrap_or("");
    let mut kind = type_label(field.get("type").unwrap_or(&Json::Null));
    if is_json_text(field) {
        kind = "string (JSON)".into();
    }
    let doc = field
        .get("doc")
        .and_then(Json::as_str)
        .unwrap_or("")
        .replace('|', "\\|")
        .replace('\n', " ");
    format!("| {name} | {kind} | {doc} |\n")
}

fn type_label(schema: &Json) -> String {
    match schema {
        Json::String(name) => name.rsplit('.').next().unwrap_or(name).to_owned(),
        Json::Array(branches) => branches
            .iter()
            .map(type_label)
            .collect::<Vec<_>>()
            .join(" \\| "),
        Json::Object(obj) => {
            let kind = obj.get("type").map(type_label).unwrap_or_default();
            match kind.as_str() {
                "record" | "enum" => {
                    let name = obj.get("name").and_then(Json::as_str).unwrap_or("");
                    let name = name.rsplit('.').next().unwrap_or(name);
                    match obj.get("symbols").and_then(Json::as_array) {
                        Some(symbols) => {
                            let symbols: Vec<_> = symbols.iter().filter_map(Json::as_str).collect();
                            format!("enum {name} ({})", symbols.join(", "))
                        }
                        None => format!("record {name}"),
                    }
                }
                "array" => format!(
                    "array<{}>",
                    type_label(obj.get("items").unwrap_or(&Json::Null))
                ),
                "map" => format!(
                    "map<{}>",
                    type_label(obj.get("values").unwrap_or(&Json::Null))
                ),
                _ => match obj.get("logicalType").and_then(Json::as_str) {
                    Some(logical) => format!("{kind} ({logical})"),
                    None => kind,
                },
            }
        }
        _ => String::new(),
    }
}
