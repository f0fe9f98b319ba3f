//! The tool registry's contract: every tool's name, purpose, access and JSON Schemas. One list
//! feeds the workflow validator, the API's catalog (`GET /v1/tools`) and MCP; the tools
//! themselves run in the agent worker.

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{json, Value};

/// What a caller needs to use a tool: `read` tools answer from read models (the `read` role),
/// `write` tools issue commands or reach outside (the `write` role).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolAccess {
    Read,
    Write,
}

/// One tool of the registry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub access: ToolAccess,
    /// JSON Schema (2020-12) of the input.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input_schema: Value,
    /// JSON Schema (2020-12) of the output.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub output_schema: Value,
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn generation() -> Value {
    json!({
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "provider": {"type": "string"},
            "model": {"type": "string"},
            "prompt_sha256": {"type": "string"},
            "usage": {
                "type": "object",
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"}
                }
            },
            "sampling": {
                "description": "How a sampling provider chose the tokens; the same request with this seed writes the same text.",
                "type": "object",
                "properties": {
                    "seed": {"type": "integer"},
                    "temperature": {"type": "number"},
                    "top_p": {"type": "number"},
                    "top_k": {"type": "integer"},
                    "repetition_penalty": {"type": "number"}
                }
            }
        },
        "required": ["text", "provider", "model", "prompt_sha256"]
    })
}

static TOOLS: LazyLock<Vec<ToolSpec>> = LazyLock::new(|| {
    vec![
        ToolSpec {
            name: "noop",
            description: "Does nothing and answers {\"ok\": true}: for tests, benchmarks and placeholders.",
            access: ToolAccess::Read,
            input_schema: json!({"type": "object"}),
            output_schema: object(json!({"ok": {"const": true}}), &["ok"]),
        },
        ToolSpec {
            name: "brand.stats",
            description: "A brand's mention counts, sentiment and share of voice over the last `days` days.",
            access: ToolAccess::Read,
            input_schema: object(
                json!({"brand_id": uuid(), "days": {"type": "integer", "minimum": 1, "maximum": 365}}),
                &["brand_id"],
            ),
            output_schema: json!({"type": "object"}),
        },
        ToolSpec {
            name: "mentions.search",
            description: "A brand's most recent mentions, optionally only those whose text contains `q`.",
            access: ToolAccess::Read,
            input_schema: object(
                json!({
                    "brand_id": uuid(),
                    "q": {"type": "string", "maxLength": 200},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100}
                }),
                &["brand_id"],
            ),
            output_schema: object(
                json!({"mentions": {"type": "array", "items": {"type": "object"}}}),
                &["mentions"],
            ),
        },
        ToolSpec {
            name: "research.search",
            description: "Lexical search over the tenant's research chunks: the best passages for `query`, with their documents.",
            access: ToolAccess::Read,
            input_schema: object(
                json!({
                    "query": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50}
                }),
                &["query"],
            ),
            output_schema: object(
                json!({"hits": {"type": "array", "items": {"type": "object"}}}),
                &["hits"],
            ),
        },
        ToolSpec {
            name: "llm.complete",
            description: "Completes a prompt with the configured text-generation provider; the output records provider, model, prompt hash and usage.",
            access: ToolAccess::Write,
            input_schema: object(
                json!({
                    "prompt": {"type": "string", "minLength": 1, "maxLength": 20000},
                    "system": {"type": "string", "maxLength": 20000},
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
                    "stop": {"description": "The text ends before the first of these.",
                             "type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4}
                }),
                &["prompt"],
            ),
            output_schema: generation(),
        },
        ToolSpec {
            name: "http.request",
            description: "An HTTP request to a host on the allow-list (settings: agent.http_allowed_hosts), sent with an Idempotency-Key derived from the run and step.",
            access: ToolAccess::Write,
            input_schema: object(
                json!({
                    "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                    "url": {"type": "string", "format": "uri"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {}
                }),
                &["url"],
            ),
            output_schema: object(
                json!({"status": {"type": "integer"}, "body": {}}),
                &["status", "body"],
            ),
        },
        ToolSpec {
            name: "draft.generate",
            description: "Writes a draft's text in its brand's voice with the text-generation provider (no change to the draft: `draft.record` records it). `feedback` lists what a revision must fix.",
            access: ToolAccess::Write,
            input_schema: object(
                json!({"draft_id": uuid(), "feedback": {"type": "array", "items": {"type": "string"}}}),
                &["draft_id"],
            ),
            output_schema: generation(),
        },
        ToolSpec {
            name: "draft.record",
            description: "Records a generated text as the draft's current text.",
            access: ToolAccess::Write,
            input_schema: object(
                json!({
                    "draft_id": uuid(),
                    "text": {"type": "string", "minLength": 1},
                    "generator": {"type": "string"},
                    "model": {"type": "string"}
                }),
                &["draft_id", "text"],
            ),
            output_schema: object(json!({"version": {"type": "integer"}}), &["version"]),
        },
        ToolSpec {
            name: "draft.check_voice",
            description: "Checks the draft's current text against its brand's voice (banned words, required phrases, tone, channel length, reading level) and records the verdict.",
            access: ToolAccess::Write,
            input_schema: object(json!({"draft_id": uuid()}), &["draft_id"]),
            output_schema: object(
                json!({"passed": {"type": "boolean"}, "issues": {"type": "array", "items": {"type": "string"}}}),
                &["passed", "issues"],
            ),
        },
        ToolSpec {
            name: "draft.approve",
            description: "Approves the draft (its current text passed its voice check).",
            access: ToolAccess::Write,
            input_schema: object(
                json!({"draft_id": uuid(), "approver": {"type": "string", "minLength": 1}}),
                &["draft_id", "approver"],
            ),
            output_schema: object(json!({"status": {"type": "string"}}), &["status"]),
        },
        ToolSpec {
            name: "draft.reject",
            description: "Rejects the draft with a reason.",
            access: ToolAccess::Write,
            input_schema: object(
                json!({"draft_id": uuid(), "reason": {"type": "string", "minLength": 1}}),
                &["draft_id", "reason"],
            ),
            output_schema: object(json!({"status": {"type": "string"}}), &["status"]),
        },
        ToolSpec {
            name: "draft.schedule",
            description: "Schedules the approved draft's publication at `publish_at` (RFC 3339).",
            access: ToolAccess::Write,
            input_schema: object(
                json!({"draft_id": uuid(), "publish_at": {"type": "string", "format": "date-time"}}),
                &["draft_id", "publish_at"],
            ),
            output_schema: object(json!({"status": {"type": "string"}}), &["status"]),
        },
        ToolSpec {
            name: "draft.publish",
            description: "Publishes the approved draft through the publisher (an HMAC-SHA256-signed webhook, retried) and records it as published.",
            access: ToolAccess::Write,
            input_schema: object(json!({"draft_id": uuid()}), &["draft_id"]),
            output_schema: object(
                json!({"status": {"type": "string"}, "url": {"type": ["string", "null"]}}),
                &["status"],
            ),
        },
    ]
});

/// Every tool, in a stable order.
pub fn all() -> &'static [ToolSpec] {
    &TOOLS
}

pub fn spec(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

pub fn names() -> Vec<&'static str> {
    TOOLS.iter().map(|t| t.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_schemas_are_objects() {
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all().len());
        for tool in all() {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert!(!tool.description.is_empty());
        }
    }
}
