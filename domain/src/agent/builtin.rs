//! Workflows the platform ships, under the reserved `plasma.` prefix. A built-in keeps every
//! version it ever had, so a run started under one finishes under it after an upgrade.

use serde_json::json;

use super::workflow::WorkflowDefinition;

/// Names starting with this are the platform's; tenants cannot define them.
pub const RESERVED_PREFIX: &str = "plasma.";

/// Content drafting: generate → voice check → revise while it fails (twice at most) → wait for
/// an editor's decision → schedule and wait until the time, if one was given → publish.
pub const DRAFT_WORKFLOW: &str = "plasma.draft";
pub const DRAFT_WORKFLOW_VERSION: u32 = 1;
/// The drafting workflow's step that waits for an editor's decision
/// (`{"approved": true, "approver": ...}` or `{"approved": false, "reason": ...}`).
pub const DRAFT_DECISION_STEP: &str = "decision";
/// Revisions the drafting workflow attempts before leaving the draft to an editor.
pub const DRAFT_REVISIONS: usize = 2;

/// The latest version of a built-in workflow.
pub fn latest(name: &str) -> Option<u32> {
    (name == DRAFT_WORKFLOW).then_some(DRAFT_WORKFLOW_VERSION)
}

/// The definition of a built-in workflow's version.
pub fn definition(name: &str, version: u32) -> Option<WorkflowDefinition> {
    match (name, version) {
        (DRAFT_WORKFLOW, 1) => Some(draft_v1()),
        _ => None,
    }
}

fn draft_v1() -> WorkflowDefinition {
    let draft = "{{input.draft_id}}";
    let mut steps = vec![
        json!({"id": "generate", "kind": "tool", "tool": "draft.generate",
               "input": {"draft_id": draft},
               "retry": {"max_attempts": 5, "backoff_ms": 1000, "max_backoff_ms": 30000},
               "timeout_ms": 120000}),
        json!({"id": "record", "kind": "tool", "tool": "draft.record",
               "input": {"draft_id": draft, "text": "{{steps.generate.text}}",
                         "generator": "{{steps.generate.provider}}", "model": "{{steps.generate.model}}"}}),
        json!({"id": "check", "kind": "tool", "tool": "draft.check_voice", "input": {"draft_id": draft}}),
    ];
    let mut previous_check = "check".to_owned();
    for n in 1..=DRAFT_REVISIONS {
        steps.push(json!({"id": format!("passed{}", n - 1), "kind": "branch",
            "condition": {"value": format!("{{{{steps.{previous_check}.passed}}}}")},
            "then": "decision", "else": format!("revise{n}")}));
        steps.push(json!({"id": format!("revise{n}"), "kind": "tool", "tool": "draft.generate",
            "input": {"draft_id": draft, "feedback": format!("{{{{steps.{previous_check}.issues}}}}")},
            "retry": {"max_attempts": 5, "backoff_ms": 1000, "max_backoff_ms": 30000},
            "timeout_ms": 120000}));
        steps.push(
            json!({"id": format!("record{n}"), "kind": "tool", "tool": "draft.record",
            "input": {"draft_id": draft, "text": format!("{{{{steps.revise{n}.text}}}}"),
                      "generator": format!("{{{{steps.revise{n}.provider}}}}"),
                      "model": format!("{{{{steps.revise{n}.model}}}}")}}),
        );
        steps.push(
            json!({"id": format!("check{n}"), "kind": "tool", "tool": "draft.check_voice",
            "input": {"draft_id": draft}}),
        );
        previous_check = format!("check{n}");
    }
    steps.push(json!({"id": "passed", "kind": "branch",
        "condition": {"value": format!("{{{{steps.{previous_check}.passed}}}}")},
        "then": "decision", "else": "end"}));
    steps.extend([
        json!({"id": "decision", "kind": "input",
               "prompt": "Approve the draft? Give {\"approved\": true, \"approver\": \"name\"} or {\"approved\": false, \"reason\": \"why\"}."}),
        json!({"id": "approved", "kind": "branch",
               "condition": {"value": "{{steps.decision.approved}}", "equals": true},
               "then": "approve", "else": "reject"}),
        json!({"id": "reject", "kind": "tool", "tool": "draft.reject",
               "input": {"draft_id": draft, "reason": "{{steps.decision.reason}}"}}),
        json!({"id": "rejected", "kind": "branch", "condition": {"value": "true"},
               "then": "end", "else": "end"}),
        json!({"id": "approve", "kind": "tool", "tool": "draft.approve",
               "input": {"draft_id": draft, "approver": "{{steps.decision.approver}}"}}),
        json!({"id": "scheduled", "kind": "branch", "condition": {"value": "{{input.publish_at}}"},
               "then": "schedule", "else": "publish"}),
        json!({"id": "schedule", "kind": "tool", "tool": "draft.schedule",
               "input": {"draft_id": draft, "publish_at": "{{input.publish_at}}"}}),
        json!({"id": "wait", "kind": "wait", "until": "{{input.publish_at}}"}),
        json!({"id": "publish", "kind": "tool", "tool": "draft.publish", "input": {"draft_id": draft},
               "retry": {"max_attempts": 8, "backoff_ms": 2000, "max_backoff_ms": 600000},
               "timeout_ms": 30000}),
    ]);
    let definition = json!({
        "description": "Generates a draft in its brand's voice, checks and revises it, waits for an editor, and publishes it on time.",
        "steps": steps,
        "output": {
            "draft_id": draft,
            "voice_passed": format!("{{{{steps.{previous_check}.passed}}}}"),
            "decision": "{{steps.decision}}",
            "published": "{{steps.publish}}"
        }
    });
    // The definition is a constant of this release, validated by the tests below.
    serde_json::from_value(definition).unwrap_or_else(|_| WorkflowDefinition {
        description: String::new(),
        steps: Vec::new(),
        output: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drafting_workflow_is_valid() {
        let d = definition(DRAFT_WORKFLOW, DRAFT_WORKFLOW_VERSION).unwrap();
        d.validate().unwrap();
        assert!(d.index_of("publish").unwrap() > d.index_of("decision").unwrap());
        assert_eq!(latest(DRAFT_WORKFLOW), Some(1));
        assert!(definition(DRAFT_WORKFLOW, 99).is_none());
    }
}
