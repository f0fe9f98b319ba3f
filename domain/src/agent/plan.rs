//! What an executed run does next, decided from its state, its workflow's definition and the
//! time: the agent worker asks after every recorded change, so a restarted worker (or another
//! one) picks up exactly where the events say the run stands.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use super::run::{AgentRun, AgentRunCommand, AgentRunStatus, StepInProgress};
use super::tools::{self, ToolAccess};
use super::workflow::{Scope, StepAction, WorkflowDefinition};

/// The next move of an executed run.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing for the worker: finished, paused, cancelled, or driven by its caller.
    Idle,
    /// Nothing to do before this time (a durable wait or a retry's backoff).
    Sleep(DateTime<Utc>),
    /// Waiting for a person's input.
    AwaitInput,
    /// Record this command: a decision that needs no effect (begin a step, end a branch or an
    /// elapsed wait, complete or fail the run).
    Record(AgentRunCommand),
    /// Run the step's effect (a tool, an LLM call, a map, starting the run a `continue_as_new`
    /// step continues as), then record its outcome.
    Perform(StepInProgress),
    /// Run a read-only tool for step `index`, then record the whole step at once
    /// ([`AgentRunCommand::RunPureStep`]); nothing outside the run changes, so no intent is
    /// recorded first.
    PerformPure {
        index: u32,
        name: String,
        tool: String,
        input: Value,
    },
}

/// The scope templates see in `run`.
pub fn scope<'a>(run: &'a AgentRun, run_id: &'a str) -> Scope<'a> {
    Scope {
        input: &run.input,
        outputs: &run.state.outputs,
        run_id,
        item: None,
    }
}

/// The run's output: the definition's `output` template, or every step's output by id.
pub fn output(run: &AgentRun, definition: &WorkflowDefinition, run_id: &str) -> Value {
    match &definition.output {
        Some(template) => scope(run, run_id).render(template),
        None => Value::Object(
            run.state
                .outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// Decides the next move. `now` is the worker's clock; whatever it decides from it is recorded.
pub fn plan(
    run: &AgentRun,
    definition: &WorkflowDefinition,
    run_id: &str,
    now: DateTime<Utc>,
) -> Plan {
    if run.status != Some(AgentRunStatus::Running) || !run.is_managed() {
        return Plan::Idle;
    }
    let fail = |error: String| {
        Plan::Record(AgentRunCommand::Fail {
            error: error.chars().take(9000).collect(),
            at: now,
        })
    };
    if let Some(step) = &run.step {
        let Some(defined) = definition.steps.get(step.index as usize) else {
            return fail(format!(
                "step {} is beyond the workflow's {} steps",
                step.index,
                definition.steps.len()
            ));
        };
        return match &defined.action {
            StepAction::Input { .. } => Plan::AwaitInput,
            StepAction::Wait { .. } => match step.wake_at {
                Some(wake_at) if wake_at > now => Plan::Sleep(wake_at),
                wake_at => Plan::Record(AgentRunCommand::FinishStep {
                    index: step.index,
                    output: json!({ "waited_until": wake_at, "woke_at": now }),
                    next: Some(step.index + 1),
                    at: now,
                }),
            },
            StepAction::Branch {
                condition,
                then,
                otherwise,
            } => {
                let value = scope(run, run_id).render(&Value::String(condition.value.clone()));
                let holds = condition.holds(&value);
                let target = if holds { then } else { otherwise };
                Plan::Record(AgentRunCommand::FinishStep {
                    index: step.index,
                    output: json!({ "value": value, "holds": holds, "next": target }),
                    next: definition.index_of(target).map(|i| i as u32),
                    at: now,
                })
            }
            StepAction::Tool { .. }
            | StepAction::Llm { .. }
            | StepAction::Map { .. }
            | StepAction::ContinueAsNew { .. } => Plan::Perform(step.clone()),
        };
    }
    let cursor = run.state.cursor.map(|c| c as usize);
    if run.failures > 0 {
        if let Some(defined) = cursor.and_then(|c| definition.steps.get(c)) {
            let error = run.last_error.clone().unwrap_or_default();
            if run.retry_at.is_none() {
                return fail(format!("step `{}` failed: {error}", defined.id));
            }
            if run.failures >= defined.retry.max_attempts {
                return fail(format!(
                    "step `{}` failed {} times; the last: {error}",
                    defined.id, run.failures
                ));
            }
            if let Some(retry_at) = run.retry_at.filter(|t| *t > now) {
                return Plan::Sleep(retry_at);
            }
        }
    }
    let Some(index) = cursor.filter(|c| *c < definition.steps.len()) else {
        return Plan::Record(AgentRunCommand::Complete {
            output: output(run, definition, run_id),
            at: now,
        });
    };
    let defined = &definition.steps[index];
    let scope = scope(run, run_id);
    let (input, wake_at) = match &defined.action {
        // A branch and a read-only tool change nothing outside the run: recorded whole.
        StepAction::Branch {
            condition,
            then,
            otherwise,
        } => {
            let value = scope.render(&Value::String(condition.value.clone()));
            let holds = condition.holds(&value);
            let target = if holds { then } else { otherwise };
            return Plan::Record(AgentRunCommand::RunPureStep {
                index: index as u32,
                name: defined.id.clone(),
                kind: defined.action.kind().to_owned(),
                input: Value::Null,
                output: json!({ "value": value, "holds": holds, "next": target }),
                next: definition.index_of(target).map(|i| i as u32),
                at: now,
            });
        }
        StepAction::Tool { tool, input }
            if tools::spec(tool).is_some_and(|t| t.access == ToolAccess::Read)
                && run.failures == 0 =>
        {
            return Plan::PerformPure {
                index: index as u32,
                name: defined.id.clone(),
                tool: tool.clone(),
                input: scope.render(input),
            };
        }
        StepAction::Tool { input, .. } => (scope.render(input), None),
        StepAction::Llm {
            prompt,
            system,
            max_tokens,
        } => (
            json!({
                "prompt": scope.render_text(prompt),
                "system": system.as_deref().map(|s| scope.render_text(s)),
                "max_tokens": max_tokens,
            }),
            None,
        ),
        StepAction::Map { over, .. } => {
            let items = scope.render(&Value::String(over.clone()));
            if !items.is_array() {
                return fail(format!(
                    "step `{}`: `over` gave {}, not a list",
                    defined.id,
                    kind_of(&items)
                ));
            }
            (json!({ "items": items }), None)
        }
        StepAction::Wait { until, seconds } => {
            let wake_at = match (until, seconds) {
                (Some(until), _) => {
                    let text = scope.render_text(until);
                    match DateTime::parse_from_rfc3339(text.trim()) {
                        Ok(t) => t.with_timezone(&Utc),
                        Err(_) => {
                            return fail(format!(
                                "step `{}`: `until` gave `{}`, not an RFC 3339 time",
                                defined.id,
                                text.chars().take(60).collect::<String>()
                            ))
                        }
                    }
                }
                (None, Some(seconds)) => {
                    now + Duration::seconds(i64::try_from(*seconds).unwrap_or(i64::MAX / 2_000))
                }
                (None, None) => now,
            };
            (json!({ "until": wake_at }), Some(wake_at))
        }
        StepAction::Input { prompt } => (json!({ "prompt": scope.render_text(prompt) }), None),
        StepAction::ContinueAsNew { input } => (json!({ "input": scope.render(input) }), None),
    };
    Plan::Record(AgentRunCommand::BeginStep {
        index: index as u32,
        name: defined.id.clone(),
        kind: defined.action.kind().to_owned(),
        input,
        wake_at,
        at: now,
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::Aggregate;

    use super::*;
    use crate::agent::run::AgentRunEvent;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, s).single().unwrap()
    }

    fn definition() -> WorkflowDefinition {
        serde_json::from_value(json!({"steps": [
            {"id": "fetch", "kind": "tool", "tool": "noop", "input": {"q": "{{input.q}}"},
             "retry": {"max_attempts": 2, "backoff_ms": 1000}},
            {"id": "gate", "kind": "branch", "condition": {"value": "{{steps.fetch.ok}}"},
             "then": "pause", "else": "end"},
            {"id": "pause", "kind": "wait", "seconds": 60},
            {"id": "ask", "kind": "input", "prompt": "Go on with {{input.q}}?"}
        ], "output": {"answer": "{{steps.ask}}"}}))
        .unwrap()
    }

    /// A workflow whose first step has an effect (its intent is recorded before it runs).
    fn effectful() -> WorkflowDefinition {
        serde_json::from_value(json!({"steps": [
            {"id": "fetch", "kind": "tool", "tool": "llm.complete", "input": {"prompt": "{{input.q}}"},
             "retry": {"max_attempts": 2, "backoff_ms": 1000}},
            {"id": "done", "kind": "tool", "tool": "noop"}
        ]}))
        .unwrap()
    }

    /// A run given these events, through the aggregate's own `apply`.
    fn run(events: Vec<AgentRunEvent>) -> AgentRun {
        let mut run = AgentRun::default();
        for e in events {
            run.apply(e);
        }
        run
    }

    /// Records `plan`'s command on `run` and returns the events it produced.
    fn record(run: &AgentRun, plan: Plan) -> Vec<AgentRunEvent> {
        let Plan::Record(command) = plan else {
            panic!("expected a command, got {plan:?}")
        };
        run.decide_for_test(command).unwrap()
    }

    fn started() -> Vec<AgentRunEvent> {
        run(vec![])
            .decide_for_test(AgentRunCommand::StartManaged {
                workflow: "w".into(),
                version: 1,
                input: json!({"q": "skates"}),
                fork: None,
                continued_from: None,
                at: at(0),
            })
            .unwrap()
    }

    #[test]
    fn a_run_walks_its_steps_records_each_and_completes_with_its_output() {
        let d = definition();
        let mut events = started();
        // fetch: a read-only tool, performed, then recorded whole (start, output, checkpoint).
        let Plan::PerformPure {
            index, name, input, ..
        } = plan(&run(events.clone()), &d, "r", at(1))
        else {
            panic!()
        };
        assert_eq!(
            (index, name.as_str(), &input),
            (0, "fetch", &json!({"q": "skates"}))
        );
        let whole = run(events.clone())
            .decide_for_test(AgentRunCommand::RunPureStep {
                index,
                name,
                kind: "tool".into(),
                input,
                output: json!({"ok": true}),
                next: Some(1),
                at: at(2),
            })
            .unwrap();
        assert!(matches!(
            &whole[0],
            AgentRunEvent::AgentStepStarted { attempt: 1, .. }
        ));
        assert_eq!(whole.len(), 3);
        events.extend(whole);
        // gate: a branch is decided and recorded at once, jumping to `pause`.
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", at(3))));
        assert_eq!(run(events.clone()).state.cursor, Some(2));
        // pause: a durable wait sleeps until its time, then ends.
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", at(3))));
        assert_eq!(
            plan(&run(events.clone()), &d, "r", at(10)),
            Plan::Sleep(at(3) + Duration::seconds(60))
        );
        let later = at(3) + Duration::seconds(61);
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", later)));
        // ask: waits for input, which finishes it; then the run completes.
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", later)));
        assert_eq!(plan(&run(events.clone()), &d, "r", later), Plan::AwaitInput);
        events.extend(
            run(events.clone())
                .decide_for_test(AgentRunCommand::GiveInput {
                    value: json!("yes"),
                    at: later,
                })
                .unwrap(),
        );
        let now = run(events.clone());
        assert_eq!(
            plan(&now, &d, "r", later),
            Plan::Record(AgentRunCommand::Complete {
                output: json!({"answer": "yes"}),
                at: later
            })
        );
        // Every step left a checkpoint pointing at the one before.
        let checkpoints: Vec<_> = now.checkpoints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            checkpoints,
            [
                "0000-start",
                "0001-fetch",
                "0002-gate",
                "0003-pause",
                "0004-ask"
            ]
        );
    }

    #[test]
    fn a_transient_failure_sleeps_then_retries_and_too_many_fail_the_run() {
        let d = effectful();
        let mut events = started();
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", at(1))));
        let fail = |events: &Vec<AgentRunEvent>, s| {
            run(events.clone())
                .decide_for_test(AgentRunCommand::FailAttempt {
                    index: 0,
                    error: "503".into(),
                    transient: true,
                    retry_at: Some(at(s)),
                    at: at(1),
                })
                .unwrap()
        };
        events.extend(fail(&events, 5));
        assert_eq!(
            plan(&run(events.clone()), &d, "r", at(2)),
            Plan::Sleep(at(5))
        );
        let now = run(events.clone());
        let again = record(&now, plan(&now, &d, "r", at(6)));
        assert!(matches!(
            &again[0],
            AgentRunEvent::AgentStepStarted { attempt: 2, .. }
        ));
        events.extend(again);
        events.extend(fail(&events, 9));
        let Plan::Record(AgentRunCommand::Fail { error, .. }) =
            plan(&run(events.clone()), &d, "r", at(10))
        else {
            panic!()
        };
        assert!(error.contains("failed 2 times"), "{error}");
    }

    #[test]
    fn continuing_as_new_records_the_next_input_before_starting_the_next_run() {
        let d: WorkflowDefinition = serde_json::from_value(json!({"steps": [
            {"id": "again", "kind": "continue_as_new", "input": {"round": "{{input.q}}"}},
            {"id": "never", "kind": "tool", "tool": "noop"}
        ]}))
        .unwrap();
        let mut events = started();
        let now = run(events.clone());
        let begun = record(&now, plan(&now, &d, "r", at(1)));
        assert!(matches!(
            &begun[0],
            AgentRunEvent::AgentStepStarted { kind: Some(kind), input, .. }
                if kind == "continue_as_new" && input == &json!({"input": {"round": "skates"}})
        ));
        events.extend(begun);
        assert!(matches!(
            plan(&run(events), &d, "r", at(2)),
            Plan::Perform(StepInProgress { index: 0, .. })
        ));
    }

    #[test]
    fn a_terminal_failure_fails_the_run_at_once() {
        let d = effectful();
        let mut events = started();
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", at(1))));
        events.extend(
            run(events.clone())
                .decide_for_test(AgentRunCommand::FailAttempt {
                    index: 0,
                    error: "bad input".into(),
                    transient: false,
                    retry_at: Some(at(5)),
                    at: at(1),
                })
                .unwrap(),
        );
        assert!(matches!(
            plan(&run(events), &d, "r", at(2)),
            Plan::Record(AgentRunCommand::Fail { .. })
        ));
    }

    #[test]
    fn a_step_in_progress_streams_its_output_and_only_then() {
        let d = effectful();
        let mut events = started();
        let now = run(events.clone());
        events.extend(record(&now, plan(&now, &d, "r", at(1))));
        let piece = |index, text: &str| AgentRunCommand::RecordOutput {
            index,
            chunk: 0,
            text: text.into(),
            at: at(1),
        };
        // Spaces are part of a piece; an empty piece, another step, a finished step: refused.
        assert_eq!(
            run(events.clone())
                .decide_for_test(piece(0, " Rocket"))
                .unwrap(),
            vec![AgentRunEvent::AgentStepOutputStreamed {
                index: 0,
                chunk: 0,
                text: " Rocket".into(),
                at: at(1),
            }]
        );
        assert!(run(events.clone()).decide_for_test(piece(0, "")).is_err());
        assert!(run(events.clone()).decide_for_test(piece(1, "x")).is_err());
        let streamed = run(events.clone()).decide_for_test(piece(0, "x")).unwrap();
        events.extend(streamed);
        // Streaming changes nothing the plan sees: the step is still to be performed.
        assert!(matches!(
            plan(&run(events.clone()), &d, "r", at(2)),
            Plan::Perform(StepInProgress { index: 0, .. })
        ));
        events.extend(
            run(events.clone())
                .decide_for_test(AgentRunCommand::FinishStep {
                    index: 0,
                    output: json!({"text": "x"}),
                    next: None,
                    at: at(2),
                })
                .unwrap(),
        );
        assert!(run(events).decide_for_test(piece(0, "late")).is_err());
    }
}
