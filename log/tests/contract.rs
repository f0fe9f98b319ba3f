//! The Avro contract against the domain: every event type has a schema, every schema matches
//! its event's serde form, records round-trip, changes stay BACKWARD_TRANSITIVE compatible with
//! the released versions, and docs/events.md is current.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::{Reader, Schema, Writer};
use chrono::{DateTime, SecondsFormat, Utc};
use plasma_commands::RecordedEvent;
use plasma_domain::agent::{AgentRunEvent, WorkflowEvent};
use plasma_domain::brand::{AlertEvent, BrandEvent, DeliveryEvent, MentionEvent};
use plasma_domain::content::DraftEvent;
use plasma_domain::research::DocumentEvent;
use plasma_domain::EventName;
use plasma_log::Catalog;
use serde_json::{json, Map, Value as Json};
use uuid::Uuid;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn domain_event_types() -> BTreeSet<&'static str> {
    [
        BrandEvent::EVENT_NAMES,
        MentionEvent::EVENT_NAMES,
        AlertEvent::EVENT_NAMES,
        DeliveryEvent::EVENT_NAMES,
        DraftEvent::EVENT_NAMES,
        AgentRunEvent::EVENT_NAMES,
        WorkflowEvent::EVENT_NAMES,
        DocumentEvent::EVENT_NAMES,
    ]
    .iter()
    .flat_map(|names| names.iter().map(|(name, _)| *name))
    .collect()
}

#[test]
fn every_domain_event_type_has_exactly_one_schema() {
    let catalog = Catalog::get().expect("the compiled-in schemas parse");
    let schemas: BTreeSet<&str> = catalog.schemas().iter().map(|s| s.event_type).collect();
    assert_eq!(schemas, domain_event_types());
    assert_eq!(schemas.len(), 44);
    // …and the files on disk are the ones compiled in.
    let mut on_disk = BTreeSet::new();
    for context in ["brand", "content", "agent", "research"] {
        for entry in std::fs::read_dir(repo_root().join("schemas/avro").join(context)).unwrap() {
            let path = entry.unwrap().path();
            on_disk.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    let compiled: BTreeSet<String> = schemas.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, compiled);
}

/// A deterministic generator of values that fit a schema, in serde's JSON form.
struct Gen {
    state: u64,
}

impl Gen {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn time(&mut self) -> String {
        // 2000-01-01 .. ~2100, with microseconds (the contract's precision).
        let micros = 946_684_800_000_000 + (self.next() % 3_155_760_000_000_000) as i64;
        let at = DateTime::<Utc>::from_timestamp_micros(micros).unwrap();
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    fn json_doc(&mut self) -> Json {
        match self.below(4) {
            0 => Json::Null,
            1 => json!({"step": self.below(100), "notes": ["a", "b"], "ok": true}),
            2 => json!([1, 2.5, "x", {"nested": {"deep": null}}]),
            _ => json!("plain text with \"quotes\" and ünïcode"),
        }
    }

    fn value(&mut self, schema: &Json, names: &HashMap<String, Json>, ns: &str) -> Json {
        match schema {
            Json::String(name) => match name.as_str() {
                "null" => Json::Null,
                "boolean" => Json::Bool(self.below(2) == 0),
                "int" | "long" => Json::from(self.below(1000)),
                "double" | "float" => Json::from(self.below(1000) as f64 / 8.0),
                "string" => Json::String(format!("text-{} ∑ é", self.below(10_000))),
                named => {
                    let resolved = names
                        .get(named)
                        .or_else(|| names.get(&format!("{ns}.{named}")))
                        .unwrap_or_else(|| panic!("unknown type {named}"))
                        .clone();
                    self.value(&resolved, names, ns)
                }
            },
            Json::Array(branches) => {
                if self.below(2) == 0 {
                    Json::Null
                } else {
                    let branch = branches.iter().find(|b| *b != "null").unwrap();
                    self.value(branch, names, ns)
                }
            }
            Json::Object(obj) => match obj["type"].as_str() {
                Some("record") => {
                    let name = obj["name"].as_str().unwrap();
                    let inner_ns = obj
                        .get("namespace")
                        .and_then(Json::as_str)
                        .unwrap_or(ns)
                        .to_owned();
                    let full = if name.contains('.') {
                        name.to_owned()
                    } else {
                        format!("{inner_ns}.{name}")
                    };
                    let mut names = names.clone();
                    names.insert(full, schema.clone());
                    let mut out = Map::new();
                    for field in obj["fields"].as_array().unwrap() {
                        let value = if field.get("plasma.encoding") == Some(&json!("json")) {
                            self.json_doc()
                        } else {
                            self.value(&field["type"], &names, &inner_ns)
                        };
                        out.insert(field["name"].as_str().unwrap().to_owned(), value);
                    }
                    Json::Object(out)
                }
                Some("enum") => {
                    let symbols = obj["symbols"].as_array().unwrap();
                    symbols[self.below(symbols.len() as u64) as usize].clone()
                }
                Some("array") => {
                    let n = self.below(3);
                    (0..n)
                        .map(|_| self.value(&obj["items"], names, ns))
                        .collect::<Vec<_>>()
                        .into()
                }
                Some("string") if obj.get("logicalType") == Some(&json!("uuid")) => {
                    Json::String(Uuid::from_u64_pair(self.next(), self.next()).to_string())
                }
                Some("long") if obj.get("logicalType") == Some(&json!("timestamp-micros")) => {
                    Json::String(self.time())
                }
                _ => self.value(&obj["type"], names, ns),
            },
            other => panic!("unsupported schema {other}"),
        }
    }
}

/// Named types in a schema, by full name (for the generator).
fn named_types(schema: &Json, ns: &str, out: &mut HashMap<String, Json>) {
    match schema {
        Json::Array(items) => items.iter().for_each(|s| named_types(s, ns, out)),
        Json::Object(obj) => {
            if let (Some(kind), Some(name)) = (obj["type"].as_str(), obj.get("name")) {
                if matches!(kind, "record" | "enum") {
                    let name = name.as_str().unwrap();
                    let inner = obj.get("namespace").and_then(Json::as_str).unwrap_or(ns);
                    let full = if name.contains('.') {
                        name.to_owned()
                    } else {
                        format!("{inner}.{name}")
                    };
                    out.insert(full, schema.clone());
                    for field in obj
                        .get("fields")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                    {
                        named_types(&field["type"], inner, out);
                    }
                    return;
                }
            }
            for key in ["type", "items", "values"] {
                if let Some(inner) = obj.get(key) {
                    named_types(inner, ns, out);
                }
            }
        }
        _ => {}
    }
}

fn decodes_as_domain_event(event_type: &str, tagged: &Json) -> Result<Json, String> {
    fn round<E: serde::de::DeserializeOwned + serde::Serialize>(j: &Json) -> Result<Json, String> {
        let event: E = serde_json::from_value(j.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(event).map_err(|e| e.to_string())
    }
    let owner = [
        (BrandEvent::EVENT_NAMES, 0),
        (MentionEvent::EVENT_NAMES, 1),
        (DraftEvent::EVENT_NAMES, 2),
        (AgentRunEvent::EVENT_NAMES, 3),
        (DocumentEvent::EVENT_NAMES, 4),
        (AlertEvent::EVENT_NAMES, 5),
        (DeliveryEvent::EVENT_NAMES, 6),
        (WorkflowEvent::EVENT_NAMES, 7),
    ]
    .into_iter()
    .find(|(names, _)| names.iter().any(|(n, _)| *n == event_type))
    .map(|(_, i)| i);
    match owner {
        Some(0) => round::<BrandEvent>(tagged),
        Some(1) => round::<MentionEvent>(tagged),
        Some(2) => round::<DraftEvent>(tagged),
        Some(3) => round::<AgentRunEvent>(tagged),
        Some(4) => round::<DocumentEvent>(tagged),
        Some(5) => round::<AlertEvent>(tagged),
        Some(6) => round::<DeliveryEvent>(tagged),
        Some(7) => round::<WorkflowEvent>(tagged),
        _ => Err(format!("no domain type for {event_type}")),
    }
}

fn aggregate_type_of(event_type: &str) -> &'static str {
    [
        (BrandEvent::EVENT_NAMES, "Brand"),
        (MentionEvent::EVENT_NAMES, "Mention"),
        (DraftEvent::EVENT_NAMES, "Draft"),
        (AgentRunEvent::EVENT_NAMES, "AgentRun"),
        (DocumentEvent::EVENT_NAMES, "Document"),
        (AlertEvent::EVENT_NAMES, "Alert"),
        (DeliveryEvent::EVENT_NAMES, "Delivery"),
        (WorkflowEvent::EVENT_NAMES, "Workflow"),
    ]
    .into_iter()
    .find(|(names, _)| names.iter().any(|(n, _)| *n == event_type))
    .map(|(_, t)| t)
    .unwrap()
}

#[test]
fn every_schema_matches_its_domain_event_and_records_round_trip() {
    let catalog = Catalog::get().unwrap();
    let mut gen = Gen {
        state: 0x2545_f491_4f6c_dd1d,
    };
    for schema in catalog.schemas() {
        let parsed = Schema::parse_str(schema.source).unwrap();
        let mut names = HashMap::new();
        named_types(&schema.json, "", &mut names);
        let data_schema = schema.json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "data")
            .unwrap()["type"]
            .clone();
        for sample in 0..40 {
            let data = gen.value(&data_schema, &names, &schema.context.namespace());
            let tagged = json!({ schema.event_type: data });
            // The schema describes exactly the domain's serde form…
            let reserialized = decodes_as_domain_event(schema.event_type, &tagged)
                .unwrap_or_else(|e| panic!("{} sample {sample}: {e}\n{tagged}", schema.event_type));
            assert_eq!(
                reserialized, tagged,
                "{} sample {sample}",
                schema.event_type
            );

            // …and an event survives the trip through Avro binary unchanged.
            let event = RecordedEvent {
                position: 1 + gen.below(1_000_000) as i64,
                event_id: Uuid::now_v7(),
                tenant: "acme".parse().unwrap(),
                aggregate_type: aggregate_type_of(schema.event_type).to_owned(),
                aggregate_id: Uuid::new_v4(),
                sequence: 1 + gen.below(50) as i64,
                event_type: schema.event_type.to_owned(),
                event_version: 1,
                payload: tagged.to_string(),
                correlation_id: Uuid::new_v4(),
                causation_id: Uuid::new_v4(),
                command_id: Uuid::new_v4(),
                recorded_at: DateTime::<Utc>::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
                trace_parent: None,
            };
            let (_, value) = catalog.to_avro(&event).unwrap();
            let mut writer = Writer::new(&parsed, Vec::new()).unwrap();
            writer.append_value(value).unwrap();
            let bytes = writer.into_inner().unwrap();
            let read_back = Reader::new(&bytes[..]).unwrap().next().unwrap().unwrap();
            let decoded = catalog.from_avro(schema.event_type, &read_back).unwrap();
            let payload: Json = serde_json::from_str(&decoded.payload).unwrap();
            assert_eq!(payload, tagged, "{} sample {sample}", schema.event_type);
            assert_eq!(
                (
                    decoded.position,
                    decoded.event_id,
                    decoded.aggregate_id,
                    decoded.sequence
                ),
                (
                    event.position,
                    event.event_id,
                    event.aggregate_id,
                    event.sequence
                )
            );
            assert_eq!(decoded.recorded_at, event.recorded_at);
            assert_eq!(decoded.tenant, event.tenant);
            assert_eq!(decoded.aggregate_type, event.aggregate_type);
            assert_eq!(
                (
                    decoded.correlation_id,
                    decoded.causation_id,
                    decoded.command_id
                ),
                (event.correlation_id, event.causation_id, event.command_id)
            );
        }
    }
}

#[test]
fn an_event_that_does_not_fit_its_schema_is_refused_not_mangled() {
    let catalog = Catalog::get().unwrap();
    let mut event = RecordedEvent {
        position: 1,
        event_id: Uuid::now_v7(),
        tenant: "acme".parse().unwrap(),
        aggregate_type: "Mention".into(),
        aggregate_id: Uuid::new_v4(),
        sequence: 1,
        event_type: "MentionFlagged".into(),
        event_version: 1,
        payload: json!({"MentionFlagged": {"reason": 5, "at": "2026-01-01T00:00:00Z"}}).to_string(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        command_id: Uuid::new_v4(),
        recorded_at: Utc::now(),
        trace_parent: None,
    };
    let error = catalog.to_avro(&event).map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("data.reason"), "{error}");
    event.event_type = "NoSuchEvent".into();
    assert!(catalog.to_avro(&event).is_err());
    event.event_type = "BrandArchived".into();
    event.aggregate_type = "Draft".into();
    event.payload = json!({"BrandArchived": {"at": "2026-01-01T00:00:00Z"}}).to_string();
    let error = catalog.to_avro(&event).map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("aggregate_type"), "{error}");
}

/// Every released version of every schema, as (file under released/, schema).
fn released_versions() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let released = repo_root().join("schemas/avro/released");
    for version in std::fs::read_dir(&released).unwrap() {
        let version = version.unwrap().path();
        for context in std::fs::read_dir(&version).unwrap() {
            for file in std::fs::read_dir(context.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}

/// BACKWARD_TRANSITIVE: the current schema (reader) reads data written with every released
/// version (writer) of the same event type.
fn backward_transitive_violations(current: &Schema, released: &[&str]) -> Vec<String> {
    released
        .iter()
        .filter_map(|old| {
            let old = Schema::parse_str(old).unwrap();
            SchemaCompatibility::can_read(&old, current)
                .err()
                .map(|e| e.to_string())
        })
        .collect()
}

#[test]
fn current_schemas_are_backward_transitive_compatible_with_every_released_version() {
    let catalog = Catalog::get().unwrap();
    let released = released_versions();
    assert!(
        !released.is_empty(),
        "schemas/avro/released/ holds the released versions"
    );
    let mut checked = 0;
    for schema in catalog.schemas() {
        let current = Schema::parse_str(schema.source).unwrap();
        let versions: Vec<&str> = released
            .iter()
            .filter(|(path, _)| path.ends_with(schema.file()))
            .map(|(_, text)| text.as_str())
            .collect();
        let violations = backward_transitive_violations(&current, &versions);
        assert!(
            violations.is_empty(),
            "{} breaks BACKWARD_TRANSITIVE compatibility: {violations:?}",
            schema.file()
        );
        checked += versions.len();
    }
    // Every released file belongs to a current event type (event types are never removed).
    assert_eq!(checked, released.len());
}

#[test]
fn the_compatibility_check_catches_breaking_changes() {
    let catalog = Catalog::get().unwrap();
    let schema = catalog.schema("MentionFlagged").unwrap();
    let released = [schema.source];
    // Adding an optional field with a default is compatible…
    let mut optional = schema.json.clone();
    optional["fields"].as_array_mut().unwrap().push(json!({
        "name": "severity", "type": ["null", "string"], "default": null, "doc": "new"
    }));
    let optional = Schema::parse_str(&optional.to_string()).unwrap();
    assert!(backward_transitive_violations(&optional, &released).is_empty());

    // …adding a required field is not…
    let mut changed: Json = schema.json.clone();
    let data = changed["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "data")
        .unwrap();
    data["type"]["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "severity", "type": "string", "doc": "new"}));
    let required = Schema::parse_str(&changed.to_string()).unwrap();
    assert_eq!(
        backward_transitive_violations(&required, &released).len(),
        1
    );

    // …and neither is changing a field's type.
    let mut retyped = schema.json.clone();
    retyped["fields"][4]["type"] = json!("int");
    let retyped = Schema::parse_str(&retyped.to_string()).unwrap();
    assert_eq!(backward_transitive_violations(&retyped, &released).len(), 1);
}

#[test]
fn the_event_catalog_in_docs_is_current() {
    let expected = Catalog::get().unwrap().markdown("plasma");
    let path = repo_root().join("docs/events.md");
    if std::env::var_os("PLASMA_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/events.md is stale: run `cargo run --bin plasma -- schemas docs > docs/events.md` \
         (or this test with PLASMA_BLESS=1)"
    );
}
