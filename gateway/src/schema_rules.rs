//! The request bodies' validation rules, stated in the OpenAPI document: lengths, counts,
//! ranges, patterns and enums the domain and the handlers enforce, so that a client (or a
//! contract tester) can know from the schema alone what will be accepted. Kept in one table
//! next to the document, checked by a test that every rule names a real property.
//!
//! What JSON Schema cannot say is in the operations' descriptions instead: relations between
//! fields (`overlap` at most half of `max_chars`; a relation's ends among the listed entities;
//! unique channel ids) and instants relative to now (`publish_at`, `until` in the future).

use serde_json::{json, Value};
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::Number;

/// Text the domain trims and requires: some character that is not whitespace, and no NUL
/// (PostgreSQL text cannot hold it).
const TEXT: &str = r"^[^\u0000]*[^\s\u0000][^\u0000]*$";
/// Text that may be empty, but not hold NUL.
const NO_NUL: &str = r"^[^\u0000]*$";

fn text(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max, "pattern": TEXT})
}

fn optional_text(max: usize) -> Value {
    json!({"maxLength": max, "pattern": NO_NUL})
}

/// Keywords, competitors, banned words, required phrases: at most 100 terms of 1-100
/// characters.
fn terms() -> Value {
    json!({"maxItems": 100, "items": text(100)})
}

/// A webhook URL: http(s), a host, no whitespace (the domain trims around it).
fn url() -> Value {
    json!({"maxLength": 2048, "pattern": r"^\s*https?://[^\s/\u0000][^\s\u0000]*\s*$"})
}

/// A mention's link: empty, or http(s) (trimmed).
fn link() -> Value {
    json!({"maxLength": 2048, "pattern": r"^\s*(https?://[^\u0000]*)?$"})
}

/// (schema, property, keywords merged into the property's schema). A property ending in `[]`
/// addresses the items of an array property.
fn rules() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("RegisterBrand", "name", text(200)),
        ("RegisterBrand", "keywords", terms()),
        ("RegisterBrand", "competitors", terms()),
        ("VoiceGuidelines", "tone", optional_text(4000)),
        ("VoiceGuidelines", "banned_words", terms()),
        ("VoiceGuidelines", "required_phrases", terms()),
        ("Keywords", "keywords", terms()),
        ("Competitors", "competitors", terms()),
        (
            "IngestMentions",
            "mentions",
            json!({"minItems": 1, "maxItems": 10_000}),
        ),
        ("MentionBody", "source", text(64)),
        ("MentionBody", "external_id", text(256)),
        ("MentionBody", "text", text(20_000)),
        ("MentionBody", "author", optional_text(256)),
        ("MentionBody", "url", link()),
        ("MentionBody", "language", optional_text(16)),
        ("Reason", "reason", text(1000)),
        ("Note", "note", optional_text(1000)),
        ("AlertRules", "k", json!({"minimum": 0.5, "maximum": 10})),
        (
            "AlertRules",
            "min_volume",
            json!({"minimum": 1, "maximum": 1_000_000}),
        ),
        ("AlertRules", "channels", json!({"maxItems": 10})),
        (
            "WebhookChannel",
            "id",
            json!({"pattern": "^[a-z0-9_-]{1,64}$"}),
        ),
        ("WebhookChannel", "url", url()),
        ("IngestDocument", "title", text(500)),
        ("IngestDocument", "source", text(2048)),
        ("IngestDocument", "text", text(1_000_000)),
        (
            "IngestDocument",
            "max_chars",
            json!({"minimum": 200, "maximum": 100_000}),
        ),
        ("IngestDocument", "overlap", json!({"maximum": 50_000})),
        (
            "Chunk",
            "max_chars",
            json!({"minimum": 200, "maximum": 100_000}),
        ),
        ("Chunk", "overlap", json!({"maximum": 50_000})),
        (
            "EmbeddingRequest",
            "model",
            json!({"enum": ["all-MiniLM-L6-v2", "wordllama-l2-supercat-256"]}),
        ),
        ("Entities", "entities", json!({"maxItems": 1000})),
        ("Entities", "relations", json!({"maxItems": 5000})),
        ("ExtractorBody", "name", text(100)),
        ("ExtractorBody", "version", text(100)),
        ("EntityBody", "name", text(200)),
        ("EntityBody", "kind", text(64)),
        (
            "EntityBody",
            "chunk_indexes[]",
            json!({"maximum": 4_294_967_295_u64}),
        ),
        ("RelationBody", "from", text(200)),
        ("RelationBody", "to", text(200)),
        ("RelationBody", "kind", text(64)),
        // Never stored, so NUL is fine; blank is not.
        (
            "SearchRequest",
            "query",
            json!({"minLength": 1, "maxLength": 2000, "pattern": r"\S"}),
        ),
        ("SearchRequest", "k", json!({"minimum": 1, "maximum": 100})),
        ("SearchRequest", "min_position", json!({"minimum": 0})),
        (
            "SearchRequest",
            "model",
            json!({"enum": ["all-MiniLM-L6-v2", "wordllama-l2-supercat-256", null]}),
        ),
        (
            "AnswerRequest",
            "question",
            json!({"minLength": 1, "maxLength": 2000, "pattern": r"\S"}),
        ),
        ("AnswerRequest", "k", json!({"minimum": 1, "maximum": 50})),
        ("AnswerRequest", "min_position", json!({"minimum": 0})),
        (
            "AnswerRequest",
            "model",
            json!({"enum": ["all-MiniLM-L6-v2", "wordllama-l2-supercat-256", null]}),
        ),
        ("SimilarRequest", "k", json!({"minimum": 1, "maximum": 100})),
        ("SimilarRequest", "min_position", json!({"minimum": 0})),
        (
            "SimilarRequest",
            "chunk_index",
            json!({"minimum": 0, "maximum": 4_294_967_295_u64}),
        ),
        (
            "SimilarRequest",
            "model",
            json!({"enum": ["all-MiniLM-L6-v2", "wordllama-l2-supercat-256", null]}),
        ),
        ("StartRun", "workflow", text(200)),
        (
            "StartRun",
            "version",
            json!({"minimum": 1, "maximum": 4_294_967_295_u64}),
        ),
        ("Fork", "checkpoint", text(200)),
        ("Cancel", "reason", optional_text(1000)),
        (
            "WorkflowDefinition",
            "steps",
            json!({"minItems": 1, "maxItems": 100}),
        ),
        ("WorkflowDefinition", "description", optional_text(2000)),
        ("StartStep", "name", text(200)),
        ("SaveCheckpoint", "name", text(200)),
        ("Failure", "error", text(10_000)),
        ("Pause", "reason", text(1000)),
        ("RequestDraft", "brief", text(4000)),
        ("Generated", "text", text(100_000)),
        ("Generator", "name", text(100)),
        ("Generator", "version", text(100)),
        ("Revision", "text", text(100_000)),
        ("Revision", "note", optional_text(1000)),
        ("Rejection", "reason", text(1000)),
        ("Approval", "approver", optional_text(200)),
        ("Publication", "url", optional_text(2048)),
    ]
}

/// Applies [`rules`] to `openapi`'s component schemas. A rule naming a schema or property the
/// document lacks is skipped (the test below catches it before any release).
pub(crate) fn apply(openapi: &mut OpenApi) {
    close_step_definition(openapi);
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for (schema, property, keywords) in rules() {
        let (name, items) = match property.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (property, false),
        };
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        let Some(RefOr::T(target)) = object.properties.get_mut(name) else {
            continue;
        };
        if items {
            if let Schema::Array(array) = target {
                if let ArrayItems::RefOrSchema(item) = &mut array.items {
                    if let RefOr::T(item) = item.as_mut() {
                        merge(item, &keywords);
                    }
                }
            }
        } else {
            merge(target, &keywords);
        }
    }
}

/// A workflow step is its kind's fields plus `id`, `retry` and `timeout_ms`, and nothing else:
/// the handler refuses any other field (serde cannot, beside the flattened kind). The derived
/// schema (`allOf` of the kinds' `oneOf` and the common fields) cannot say so, since
/// `additionalProperties` does not see across `allOf`; so `StepDefinition` becomes one closed
/// object per kind.
fn close_step_definition(openapi: &mut OpenApi) {
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    let as_value = |name: &str| {
        components
            .schemas
            .get(name)
            .and_then(|s| serde_json::to_value(s).ok())
    };
    let (Some(action), Some(step)) = (as_value("StepAction"), as_value("StepDefinition")) else {
        return;
    };
    let Some(common) = step["allOf"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p.get("properties").is_some()))
    else {
        return;
    };
    let Some(kinds) = action["oneOf"].as_array() else {
        return;
    };
    let closed: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            let mut kind = kind.clone();
            if let (Some(properties), Some(shared)) = (
                kind.get_mut("properties").and_then(Value::as_object_mut),
                common["properties"].as_object(),
            ) {
                properties.extend(shared.clone());
            }
            if let Some(required) = kind.get_mut("required").and_then(Value::as_array_mut) {
                required.push(json!("id"));
            }
            kind["additionalProperties"] = json!(false);
            kind
        })
        .collect();
    let closed = json!({"oneOf": closed, "description": step["description"]});
    if let Ok(schema) = serde_json::from_value(closed) {
        components
            .schemas
            .insert("StepDefinition".to_owned(), schema);
    }
}

/// States which embedding models this gateway has loaded: the only ones its searches accept.
pub(crate) fn loaded_models(openapi: &mut OpenApi, names: &[String]) {
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    let mut allowed: Vec<Value> = names.iter().map(|n| Value::from(n.as_str())).collect();
    allowed.push(Value::Null);
    for schema in ["SearchRequest", "SimilarRequest", "AnswerRequest"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) {
            if let Some(RefOr::T(model)) = object.properties.get_mut("model") {
                merge(model, &json!({ "enum": allowed }));
            }
        }
    }
}

/// Sets the JSON Schema `keywords` on `target`: lengths, pattern, range and enum on a scalar;
/// counts and (under `items`) the item schema on an array.
fn merge(target: &mut Schema, keywords: &Value) {
    let Some(keywords) = keywords.as_object() else {
        return;
    };
    let count = |key: &str| {
        keywords
            .get(key)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    };
    let number = |key: &str| {
        keywords
            .get(key)
            .and_then(|n| match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Some(Number::Int(i as isize)),
                (_, Some(u), _) => Some(Number::UInt(u as usize)),
                (_, _, Some(f)) => Some(Number::Float(f)),
                _ => None,
            })
    };
    match target {
        Schema::Object(object) => {
            if let Some(n) = count("minLength") {
                object.min_length = Some(n);
            }
            if let Some(n) = count("maxLength") {
                object.max_length = Some(n);
            }
            if let Some(pattern) = keywords.get("pattern").and_then(Value::as_str) {
                object.pattern = Some(pattern.to_owned());
            }
            if let Some(n) = number("minimum") {
                object.minimum = Some(n);
            }
            if let Some(n) = number("maximum") {
                object.maximum = Some(n);
            }
            if let Some(values) = keywords.get("enum").and_then(Value::as_array) {
                object.enum_values = Some(values.clone());
            }
        }
        Schema::Array(array) => {
            if let Some(n) = count("minItems") {
                array.min_items = Some(n);
            }
            if let Some(n) = count("maxItems") {
                array.max_items = Some(n);
            }
            if let (Some(items), ArrayItems::RefOrSchema(item)) =
                (keywords.get("items"), &mut array.items)
            {
                if let RefOr::T(item) = item.as_mut() {
                    merge(item, items);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property_schema<'a>(
        document: &'a mut Value,
        schema: &str,
        property: &str,
    ) -> Option<&'a mut Value> {
        let (name, items) = match property.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (property, false),
        };
        let target = document
            .get_mut("components")?
            .get_mut("schemas")?
            .get_mut(schema)?
            .get_mut("properties")?
            .get_mut(name)?;
        if items {
            target.get_mut("items")
        } else {
            Some(target)
        }
    }

    #[test]
    fn every_rule_names_a_property_of_the_document() {
        let mut document = serde_json::to_value(crate::routes::openapi_document()).unwrap();
        for (schema, property, _) in rules() {
            assert!(
                property_schema(&mut document, schema, property).is_some(),
                "{schema}.{property} is not in the OpenAPI document"
            );
        }
    }

    #[test]
    fn a_step_is_one_closed_object_per_kind() {
        let document = serde_json::to_value(crate::routes::openapi_document()).unwrap();
        let step = &document["components"]["schemas"]["StepDefinition"];
        let kinds = step["oneOf"].as_array().unwrap();
        assert_eq!(kinds.len(), 7);
        for kind in kinds {
            assert_eq!(kind["additionalProperties"], false, "{kind}");
            assert!(kind["properties"]["id"].is_object() && kind["properties"]["kind"].is_object());
            assert!(kind["required"].as_array().unwrap().contains(&json!("id")));
        }
    }

    #[test]
    fn the_rules_reach_the_served_document() {
        let document = serde_json::to_value(crate::routes::openapi_document()).unwrap();
        let name = &document["components"]["schemas"]["RegisterBrand"]["properties"]["name"];
        assert_eq!(name["minLength"], 1);
        assert_eq!(name["maxLength"], 200);
        let keyword =
            &document["components"]["schemas"]["Keywords"]["properties"]["keywords"]["items"];
        assert_eq!(keyword["maxLength"], 100);
    }
}
