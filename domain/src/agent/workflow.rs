//! Workflow definitions: declarative, versioned per tenant, checked when defined.
//!
//! A definition is a list of steps executed in order; a `branch` step jumps forward to a later
//! step (or to `end`), so a run never loops and always terminates. A loop is a run that ends in
//! a `continue_as_new` step: the next round is a new run with a short history of its own. Inputs are templates:
//! a string that is exactly `{{ path }}` becomes the JSON value at `path`, and any other string
//! has its `{{ path }}` parts replaced by their text. Paths start at `input` (the run's input),
//! `steps.<id>` (an earlier step's output), `run` (`run.id`) or, inside a `map`, `item` and
//! `item_index`.
//!
//! The Workflow aggregate records each new definition of a name as a new version; runs keep the
//! version they started with, so redefining a workflow never disturbs a run in flight.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tools;
use crate::EventName;

/// The most steps one definition may have.
pub const MAX_STEPS: usize = 100;
const MAX_NAME: usize = 100;
const MAX_STEP_ID: usize = 64;
const MAX_TEXT: usize = 20_000;
const MAX_DESCRIPTION: usize = 2000;
/// The longest durable wait a definition may ask for (one year).
const MAX_WAIT_SECONDS: u64 = 366 * 24 * 3600;
/// The longest step timeout (one hour): longer work belongs in a wait plus a callback.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
const MAX_ATTEMPTS: u32 = 20;

/// The target of a branch that finishes the run.
pub const END: &str = "end";

/// One workflow, as defined.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    #[serde(default)]
    pub description: String,
    /// Executed in order, except where a branch jumps forward.
    pub steps: Vec<StepDefinition>,
    /// The run's output: a template over the run's input and step outputs. When left out, the
    /// outputs of every step that ran, by step id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub output: Option<Value>,
}

/// One step: an id unique in the workflow, what it does, and how it is retried.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDefinition {
    /// 1-64 characters a-z, 0-9, `_` or `-`, starting with a letter; unique in the workflow.
    pub id: String,
    #[serde(flatten)]
    pub action: StepAction,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How long one attempt may take before it counts as a transient failure (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// What a step does; `kind` names it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepAction {
    /// Calls a tool of the registry with a templated input.
    Tool {
        tool: String,
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        input: Value,
    },
    /// Asks the text-generation provider; the output is `{text, provider, model, prompt_sha256,
    /// usage}`.
    Llm {
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
    },
    /// Jumps to `then` when the condition holds and to `else` otherwise: later steps or `end`.
    Branch {
        condition: Condition,
        then: String,
        #[serde(rename = "else")]
        otherwise: String,
    },
    /// Calls `tool` once per element of the list `over` evaluates to (with `item` and
    /// `item_index` in scope), in parallel; each element's output is recorded as it arrives, so
    /// a retry runs only the elements that have not succeeded. The output is the list of outputs.
    Map {
        over: String,
        tool: String,
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        input: Value,
        /// Elements in flight at once (default 8).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        concurrency: Option<u32>,
    },
    /// Waits durably until a time (`until`, a template giving an RFC 3339 time) or for a
    /// duration (`seconds`); a restart does not shorten or lengthen it.
    Wait {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    /// Waits for a person: the run stands still until `POST /v1/agent-runs/{id}/input`; the
    /// value given is the step's output.
    Input { prompt: String },
    /// Ends the run and starts a new run of the same workflow version with `input` (a
    /// template): how a long loop goes on without one ever-growing history. The step's output
    /// is `{"run_id": ...}` of the new run, which names this one as `continued_from`.
    ContinueAsNew {
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        input: Value,
    },
}

impl StepAction {
    /// The `kind` on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tool { .. } => "tool",
            Self::Llm { .. } => "llm",
            Self::Branch { .. } => "branch",
            Self::Map { .. } => "map",
            Self::Wait { .. } => "wait",
            Self::Input { .. } => "input",
            Self::ContinueAsNew { .. } => "continue_as_new",
        }
    }
}

impl StepAction {
    /// The fields a step of `kind` may have besides `id`, `kind`, `retry` and `timeout_ms`;
    /// `None` for a kind that does not exist.
    fn fields_of(kind: &str) -> Option<&'static [&'static str]> {
        Some(match kind {
            "tool" => &["tool", "input"],
            "llm" => &["prompt", "system", "max_tokens"],
            "branch" => &["condition", "then", "else"],
            "map" => &["over", "tool", "input", "concurrency"],
            "wait" => &["until", "seconds"],
            "input" => &["prompt"],
            "continue_as_new" => &["input"],
            _ => return None,
        })
    }
}

/// The first field of a step in `definition` (a definition as it arrived, before
/// deserializing) that its kind does not have: `(step index, field)`. Serde cannot refuse
/// unknown fields beside the flattened step kind, and a misspelt field (`promt`) would
/// otherwise be dropped without a word.
pub fn unknown_step_field(definition: &Value) -> Option<(usize, String)> {
    const COMMON: [&str; 4] = ["id", "kind", "retry", "timeout_ms"];
    let steps = definition.get("steps")?.as_array()?;
    steps.iter().enumerate().find_map(|(index, step)| {
        let step = step.as_object()?;
        let allowed = StepAction::fields_of(step.get("kind")?.as_str()?)?;
        step.keys()
            .find(|key| !COMMON.contains(&key.as_str()) && !allowed.contains(&key.as_str()))
            .map(|key| (index, key.clone()))
    })
}

/// A test on one templated value; every comparison given must hold (none given: truthy, i.e. not
/// null, false, 0, "" or empty).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub not_equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_than: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than: Option<f64>,
}

impl Condition {
    /// Whether the condition holds for `value` (already rendered).
    pub fn holds(&self, value: &Value) -> bool {
        let number = value.as_f64();
        let mut any = false;
        let mut all = true;
        if let Some(expected) = &self.equals {
            any = true;
            all &= value == expected;
        }
        if let Some(unexpected) = &self.not_equals {
            any = true;
            all &= value != unexpected;
        }
        if let Some(bound) = self.greater_than {
            any = true;
            all &= number.is_some_and(|n| n > bound);
        }
        if let Some(bound) = self.less_than {
            any = true;
            all &= number.is_some_and(|n| n < bound);
        }
        if any {
            all
        } else {
            truthy(value)
        }
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How a step's transient failures are retried: `max_attempts` in all, the delay doubling from
/// `backoff_ms` up to `max_backoff_ms`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "RetryPolicy::default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "RetryPolicy::default_backoff")]
    pub backoff_ms: u64,
    #[serde(default = "RetryPolicy::default_max_backoff")]
    pub max_backoff_ms: u64,
}

impl RetryPolicy {
    fn default_attempts() -> u32 {
        3
    }
    fn default_backoff() -> u64 {
        500
    }
    fn default_max_backoff() -> u64 {
        30_000
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (1-based) failed.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ms = self
            .backoff_ms
            .saturating_mul(1u64 << exponent)
            .min(self.max_backoff_ms.max(self.backoff_ms));
        std::time::Duration::from_millis(ms)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::default_attempts(),
            backoff_ms: Self::default_backoff(),
            max_backoff_ms: Self::default_max_backoff(),
        }
    }
}

/// Why a definition was refused; `step` names the step at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("the workflow name {0}")]
    BadName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("step `{step}`: {problem}")]
    Step { step: String, problem: String },
    #[error("workflow `{0}` does not exist")]
    NotFound(String),
}

impl WorkflowError {
    /// The step at fault, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::Step { step, .. } => Some(step),
            _ => None,
        }
    }
}

fn step_error(step: &str, problem: impl Into<String>) -> WorkflowError {
    WorkflowError::Step {
        step: step.to_owned(),
        problem: problem.into(),
    }
}

/// Checks a workflow name: 1-100 characters a-z, 0-9, `-`, `_` or `.`, starting with a letter
/// or digit (it appears in URLs).
pub fn validate_name(name: &str) -> Result<(), WorkflowError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_NAME || !ok_chars || !ok_start {
        return Err(WorkflowError::BadName(format!(
            "`{}` is not 1-{MAX_NAME} characters a-z, 0-9, `-`, `_` or `.` starting with a letter or digit",
            name.chars().take(120).collect::<String>()
        )));
    }
    Ok(())
}

fn valid_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STEP_ID
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        && id != END
}

impl WorkflowDefinition {
    /// Refuses a definition that could not run: no steps, a bad or repeated id, an unknown tool,
    /// a reference to a step that is not earlier, a branch that jumps back (a cycle) or nowhere,
    /// a malformed template, a wait with neither or both of `until` and `seconds`.
    pub fn validate(&self) -> Result<(), WorkflowError> {
        if self.steps.is_empty() {
            return Err(WorkflowError::Invalid(
                "a workflow needs at least one step".into(),
            ));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(WorkflowError::Invalid(format!(
                "a workflow has at most {MAX_STEPS} steps, not {}",
                self.steps.len()
            )));
        }
        if self.description.chars().count() > MAX_DESCRIPTION {
            return Err(WorkflowError::Invalid(format!(
                "`description` is over {MAX_DESCRIPTION} characters"
            )));
        }
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            if !valid_step_id(&step.id) {
                return Err(step_error(
                    &step.id.chars().take(80).collect::<String>(),
                    "a step id is 1-64 characters a-z, 0-9, `_` or `-`, starting with a letter (and not `end`)",
                ));
            }
            if index_of.insert(&step.id, index).is_some() {
                return Err(step_error(&step.id, "the id is used by an earlier step"));
            }
        }
        for (index, step) in self.steps.iter().enumerate() {
            step.validate(index, &index_of)?;
        }
        if let Some(output) = &self.output {
            let last = self.steps.len();
            check_templates(output, last, &index_of, false)
                .map_err(|problem| WorkflowError::Invalid(format!("`output`: {problem}")))?;
        }
        Ok(())
    }

    /// The index of the step with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

impl StepDefinition {
    fn validate(&self, index: usize, index_of: &HashMap<&str, usize>) -> Result<(), WorkflowError> {
        let fail = |problem: String| step_error(&self.id, problem);
        let templates = |value: &Value, in_map: bool| {
            check_templates(value, index, index_of, in_map).map_err(fail)
        };
        let text = |field: &str, value: &str| {
            if value.trim().is_empty() || value.chars().count() > MAX_TEXT {
                Err(fail(format!("`{field}` must be 1-{MAX_TEXT} characters")))
            } else {
                Ok(())
            }
        };
        let tool_known = |name: &str| {
            if tools::spec(name).is_some() {
                Ok(())
            } else {
                Err(fail(format!(
                    "unknown tool `{}`; the registry has: {}",
                    name.chars().take(80).collect::<String>(),
                    tools::names().join(", ")
                )))
            }
        };
        match &self.action {
            StepAction::Tool { tool, input } => {
                tool_known(tool)?;
                templates(input, false)?;
            }
            StepAction::Llm {
                prompt,
                system,
                max_tokens,
            } => {
                text("prompt", prompt)?;
                templates(&Value::String(prompt.clone()), false)?;
                if let Some(system) = system {
                    text("system", system)?;
                    templates(&Value::String(system.clone()), false)?;
                }
                if max_tokens.is_some_and(|n| n == 0 || n > 32_768) {
                    return Err(fail("`max_tokens` must be 1-32768".into()));
                }
            }
            StepAction::Branch {
                condition,
                then,
                otherwise,
            } => {
                templates(&Value::String(condition.value.clone()), false)?;
                for target in [then, otherwise] {
                    if target == END {
                        continue;
                    }
                    match index_of.get(target.as_str()) {
                        None => {
                            return Err(fail(format!(
                                "branch target `{}` is no step of the workflow (nor `end`)",
                                target.chars().take(80).collect::<String>()
                            )))
                        }
                        Some(&target_index) if target_index <= index => {
                            return Err(fail(format!(
                                "branch target `{target}` is not a later step: a jump back would make a cycle"
                            )))
                        }
                        Some(_) => {}
                    }
                }
            }
            StepAction::Map {
                over,
                tool,
                input,
                concurrency,
            } => {
                tool_known(tool)?;
                if !is_whole_template(over) {
                    return Err(fail("`over` must be one `{{ path }}` giving a list".into()));
                }
                templates(&Value::String(over.clone()), false)?;
                templates(input, true)?;
                if concurrency.is_some_and(|c| c == 0 || c > 64) {
                    return Err(fail("`concurrency` must be 1-64".into()));
                }
            }
            StepAction::Wait { until, seconds } => match (until, seconds) {
                (Some(until), None) => templates(&Value::String(until.clone()), false)?,
                (None, Some(seconds)) if *seconds <= MAX_WAIT_SECONDS => {}
                (None, Some(_)) => {
                    return Err(fail(format!(
                        "`seconds` must be at most {MAX_WAIT_SECONDS}"
                    )))
                }
                _ => {
                    return Err(fail(
                        "a wait has exactly one of `until` and `seconds`".into(),
                    ))
                }
            },
            StepAction::Input { prompt } => text("prompt", prompt)?,
            StepAction::ContinueAsNew { input } => templates(input, false)?,
        }
        if self.retry.max_attempts == 0 || self.retry.max_attempts > MAX_ATTEMPTS {
            return Err(fail(format!(
                "`retry.max_attempts` must be 1-{MAX_ATTEMPTS}"
            )));
        }
        if self
            .timeout_ms
            .is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS)
        {
            return Err(fail(format!("`timeout_ms` must be 1-{MAX_TIMEOUT_MS}")));
        }
        Ok(())
    }
}

// Templates.

/// A parsed piece of a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Path(Vec<&'a str>),
}

fn parse_template(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unterminated `{{{{` in `{}`", shorten(text)))?;
        let path = after[..close].trim();
        if path.is_empty() {
            return Err(format!("an empty `{{{{ }}}}` in `{}`", shorten(text)));
        }
        let segments: Vec<&str> = path.split('.').collect();
        if segments
            .iter()
            .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
        {
            return Err(format!("`{path}` is not a dotted path"));
        }
        pieces.push(Piece::Path(segments));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn shorten(text: &str) -> String {
    text.chars().take(60).collect()
}

fn is_whole_template(text: &str) -> bool {
    matches!(parse_template(text).as_deref(), Ok([Piece::Path(_)]))
}

/// Checks every template in `value` refers to something that exists before step `index`.
fn check_templates(
    value: &Value,
    index: usize,
    index_of: &HashMap<&str, usize>,
    in_map: bool,
) -> Result<(), String> {
    match value {
        Value::String(text) => {
            for piece in parse_template(text)? {
                let Piece::Path(path) = piece else { continue };
                match path[0] {
                    "input" => {}
                    "run" => {
                        if path.get(1).is_some_and(|f| *f != "id") {
                            return Err(format!(
                                "`{}`: a run offers only `run.id`",
                                path.join(".")
                            ));
                        }
                    }
                    "item" | "item_index" if in_map => {}
                    "item" | "item_index" => {
                        return Err(format!("`{}` exists only in a map's input", path[0]))
                    }
                    "steps" => {
                        let Some(step) = path.get(1) else {
                            return Err("`steps` needs a step id: `steps.<id>`".into());
                        };
                        match index_of.get(step) {
                            Some(&i) if i < index => {}
                            Some(_) => {
                                return Err(format!(
                                    "dangling reference `{}`: step `{step}` does not run before this one",
                                    path.join(".")
                                ))
                            }
                            None => {
                                return Err(format!(
                                    "dangling reference `{}`: there is no step `{step}`",
                                    path.join(".")
                                ))
                            }
                        }
                    }
                    other => {
                        return Err(format!(
                        "`{}` starts with `{other}`; a path starts with input, steps, run or item",
                        path.join(".")
                    ))
                    }
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_templates(v, index, index_of, in_map)),
        Value::Object(fields) => fields
            .values()
            .try_for_each(|v| check_templates(v, index, index_of, in_map)),
        _ => Ok(()),
    }
}

/// What templates can see while a run executes.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub input: &'a Value,
    pub outputs: &'a BTreeMap<String, Value>,
    pub run_id: &'a str,
    /// Inside a map: the element and its index.
    pub item: Option<(&'a Value, usize)>,
}

impl Scope<'_> {
    fn lookup(&self, path: &[&str]) -> Value {
        let (root, rest): (Value, &[&str]) = match path[0] {
            "input" => (self.input.clone(), &path[1..]),
            "run" => (serde_json::json!({ "id": self.run_id }), &path[1..]),
            "item" => (
                self.item.map(|(v, _)| v.clone()).unwrap_or(Value::Null),
                &path[1..],
            ),
            "item_index" => (
                self.item
                    .map(|(_, i)| Value::from(i))
                    .unwrap_or(Value::Null),
                &path[1..],
            ),
            "steps" if path.len() >= 2 => (
                self.outputs.get(path[1]).cloned().unwrap_or(Value::Null),
                &path[2..],
            ),
            _ => (Value::Null, &[]),
        };
        let mut current = root;
        for segment in rest {
            current = match current {
                Value::Object(mut fields) => fields.remove(*segment).unwrap_or(Value::Null),
                Value::Array(mut items) => match segment.parse::<usize>() {
                    Ok(i) if i < items.len() => items.swap_remove(i),
                    _ => Value::Null,
                },
                _ => Value::Null,
            };
        }
        current
    }

    /// `value` with every template replaced: a string that is one `{{ path }}` becomes the value
    /// there (null when missing); other strings get the text of each value spliced in.
    pub fn render(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => match parse_template(text) {
                Ok(pieces) => match pieces.as_slice() {
                    [Piece::Path(path)] => self.lookup(path),
                    _ => {
                        let mut out = String::new();
                        for piece in &pieces {
                            match piece {
                                Piece::Text(t) => out.push_str(t),
                                Piece::Path(path) => match self.lookup(path) {
                                    Value::String(s) => out.push_str(&s),
                                    Value::Null => {}
                                    other => out.push_str(&other.to_string()),
                                },
                            }
                        }
                        Value::String(out)
                    }
                },
                // Definitions are validated before they run; a string that is no template
                // (e.g. from an older rule) is taken literally.
                Err(_) => value.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| self.render(v)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), self.render(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A template string rendered as text.
    pub fn render_text(&self, text: &str) -> String {
        match self.render(&Value::String(text.to_owned())) {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

// The aggregate.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkflowCommand {
    /// Records `definition` as the next version of `name`; the same definition as the latest
    /// records nothing.
    Define {
        name: String,
        definition: WorkflowDefinition,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkflowEvent {
    WorkflowDefined {
        name: String,
        version: u32,
        /// The definition, as validated.
        definition: Value,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for WorkflowEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WorkflowDefined { .. } => "WorkflowDefined",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for WorkflowEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[("WorkflowDefined", 1)];
}

/// One recorded version of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersion {
    pub version: u32,
    pub definition: Value,
    pub at: DateTime<Utc>,
}

/// A workflow name's versions, rebuilt from its events. Its id is derived from (tenant, name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    pub versions: Vec<WorkflowVersion>,
}

impl Workflow {
    /// The definition of `version`, parsed.
    pub fn definition(&self, version: u32) -> Option<WorkflowDefinition> {
        self.versions
            .iter()
            .find(|v| v.version == version)
            .and_then(|v| serde_json::from_value(v.definition.clone()).ok())
    }

    pub fn latest(&self) -> Option<&WorkflowVersion> {
        self.versions.last()
    }
}

impl Aggregate for Workflow {
    const TYPE: &'static str = "Workflow";
    type Command = WorkflowCommand;
    type Event = WorkflowEvent;
    type Error = WorkflowError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let WorkflowCommand::Define {
            name,
            definition,
            at,
        } = command;
        validate_name(&name)?;
        if name.starts_with(super::builtin::RESERVED_PREFIX) {
            return Err(WorkflowError::BadName(format!(
                "`{name}` is reserved: names starting with `{}` are the platform's",
                super::builtin::RESERVED_PREFIX
            )));
        }
        definition.validate()?;
        let definition =
            serde_json::to_value(&definition).map_err(|e| WorkflowError::Invalid(e.to_string()))?;
        if self.latest().is_some_and(|v| v.definition == definition) {
            return Ok(());
        }
        let version = self.versions.len() as u32 + 1;
        sink.write(
            WorkflowEvent::WorkflowDefined {
                name,
                version,
                definition,
                at,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let WorkflowEvent::WorkflowDefined {
            name,
            version,
            definition,
            at,
        } = event;
        self.name = name;
        self.versions.push(WorkflowVersion {
            version,
            definition,
            at,
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).single().unwrap()
    }

    fn definition(steps: Value) -> WorkflowDefinition {
        serde_json::from_value(json!({ "steps": steps })).unwrap()
    }

    fn refused(steps: Value) -> WorkflowError {
        definition(steps).validate().unwrap_err()
    }

    #[test]
    fn a_linear_workflow_with_every_kind_is_valid() {
        let d = definition(json!([
            {"id": "a", "kind": "tool", "tool": "noop", "input": {"x": "{{input.x}}"}},
            {"id": "b", "kind": "llm", "prompt": "Say {{steps.a.x}}"},
            {"id": "c", "kind": "branch", "condition": {"value": "{{steps.a.ok}}"}, "then": "e", "else": "end"},
            {"id": "d", "kind": "map", "over": "{{input.items}}", "tool": "noop", "input": {"i": "{{item}}"}},
            {"id": "e", "kind": "wait", "seconds": 5},
            {"id": "f", "kind": "input", "prompt": "Approve?"},
            {"id": "g", "kind": "continue_as_new", "input": {"round": "{{steps.f}}"}}
        ]));
        d.validate().unwrap();
        assert_eq!(d.index_of("e"), Some(4));
        assert_eq!(d.steps[6].action.kind(), "continue_as_new");
        let dangling = refused(json!([
            {"id": "again", "kind": "continue_as_new", "input": {"n": "{{steps.later.n}}"}},
            {"id": "later", "kind": "tool", "tool": "noop"}
        ]));
        assert_eq!(dangling.step(), Some("again"));
    }

    #[test]
    fn a_field_a_steps_kind_does_not_have_is_found() {
        let definition = json!({"steps": [
            {"id": "a", "kind": "tool", "tool": "noop", "input": {}, "retry": {}, "timeout_ms": 5},
            {"id": "b", "kind": "llm", "promt": "typo"}
        ]});
        assert_eq!(unknown_step_field(&definition), Some((1, "promt".into())));
        let fine = json!({"steps": [{"id": "b", "kind": "branch", "condition": {"value": "x"},
                                     "then": "end", "else": "end"}]});
        assert_eq!(unknown_step_field(&fine), None);
        // Shapes serde refuses anyway are left to it.
        assert_eq!(
            unknown_step_field(&json!({"steps": [{"kind": "teleport", "x": 1}]})),
            None
        );
        assert_eq!(unknown_step_field(&json!([1])), None);
    }

    #[test]
    fn an_unknown_tool_is_refused_naming_the_step() {
        let err = refused(json!([{"id": "fetch", "kind": "tool", "tool": "teleport"}]));
        assert_eq!(err.step(), Some("fetch"));
        assert!(err.to_string().contains("unknown tool `teleport`"), "{err}");
    }

    #[test]
    fn a_reference_to_a_later_or_missing_step_is_dangling() {
        let later = refused(json!([
            {"id": "a", "kind": "tool", "tool": "noop", "input": {"x": "{{steps.b.x}}"}},
            {"id": "b", "kind": "tool", "tool": "noop"}
        ]));
        assert_eq!(later.step(), Some("a"));
        assert!(later.to_string().contains("dangling reference"), "{later}");
        let missing = refused(json!([
            {"id": "a", "kind": "llm", "prompt": "{{steps.ghost}}"}
        ]));
        assert!(missing.to_string().contains("no step `ghost`"), "{missing}");
    }

    #[test]
    fn a_branch_back_is_a_cycle() {
        let err = refused(json!([
            {"id": "a", "kind": "tool", "tool": "noop"},
            {"id": "b", "kind": "branch", "condition": {"value": "{{input.x}}"}, "then": "a", "else": "end"}
        ]));
        assert_eq!(err.step(), Some("b"));
        assert!(err.to_string().contains("cycle"), "{err}");
        let to_self = refused(json!([
            {"id": "b", "kind": "branch", "condition": {"value": "{{input.x}}"}, "then": "b", "else": "end"}
        ]));
        assert!(to_self.to_string().contains("cycle"));
    }

    #[test]
    fn ids_must_be_unique_and_well_formed() {
        let twice = refused(json!([
            {"id": "a", "kind": "tool", "tool": "noop"},
            {"id": "a", "kind": "tool", "tool": "noop"}
        ]));
        assert!(twice.to_string().contains("earlier step"));
        let bad = refused(json!([{"id": "A b", "kind": "tool", "tool": "noop"}]));
        assert_eq!(bad.step(), Some("A b"));
    }

    #[test]
    fn item_exists_only_inside_a_map_and_waits_need_one_bound() {
        let err = refused(json!([
            {"id": "a", "kind": "tool", "tool": "noop", "input": {"x": "{{item}}"}}
        ]));
        assert!(err.to_string().contains("map"), "{err}");
        let both =
            refused(json!([{"id": "w", "kind": "wait", "seconds": 1, "until": "{{input.t}}"}]));
        assert_eq!(both.step(), Some("w"));
        let unterminated = refused(json!([{"id": "p", "kind": "llm", "prompt": "hi {{input"}]));
        assert!(unterminated.to_string().contains("unterminated"));
    }

    #[test]
    fn templates_keep_types_when_whole_and_splice_text_otherwise() {
        let input = json!({"n": 3, "name": "Ada", "tags": ["a", "b"]});
        let mut outputs = BTreeMap::new();
        outputs.insert("s".to_owned(), json!({"list": [1, 2], "ok": true}));
        let scope = Scope {
            input: &input,
            outputs: &outputs,
            run_id: "r1",
            item: Some((&json!("x"), 4)),
        };
        assert_eq!(scope.render(&json!("{{ input.n }}")), json!(3));
        assert_eq!(scope.render(&json!("{{steps.s.list.1}}")), json!(2));
        assert_eq!(
            scope.render(&json!({"t": "Hi {{input.name}} #{{item_index}} {{input.tags}}"})),
            json!({"t": "Hi Ada #4 [\"a\",\"b\"]"})
        );
        assert_eq!(
            scope.render(&json!("{{input.missing.deeper}}")),
            Value::Null
        );
        assert_eq!(scope.render_text("run {{run.id}}"), "run r1");
    }

    #[test]
    fn conditions_compare_or_test_truthiness() {
        let c = |v: Value| -> Condition { serde_json::from_value(v).unwrap() };
        assert!(c(json!({"value": "x"})).holds(&json!(true)));
        assert!(!c(json!({"value": "x"})).holds(&json!("")));
        assert!(c(json!({"value": "x", "equals": "a"})).holds(&json!("a")));
        assert!(c(json!({"value": "x", "greater_than": 2, "less_than": 5})).holds(&json!(3)));
        assert!(!c(json!({"value": "x", "greater_than": 2})).holds(&json!("3")));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            backoff_ms: 100,
            max_backoff_ms: 250,
        };
        assert_eq!(p.backoff(1).as_millis(), 100);
        assert_eq!(p.backoff(2).as_millis(), 200);
        assert_eq!(p.backoff(3).as_millis(), 250);
    }

    type WorkflowTest = TestFramework<Workflow>;

    #[test]
    fn defining_records_versions_and_an_identical_definition_records_nothing() {
        let d = definition(json!([{"id": "a", "kind": "tool", "tool": "noop"}]));
        let recorded = WorkflowEvent::WorkflowDefined {
            name: "digest".into(),
            version: 1,
            definition: serde_json::to_value(&d).unwrap(),
            at: at(),
        };
        WorkflowTest::with(())
            .given_no_previous_events()
            .when(WorkflowCommand::Define {
                name: "digest".into(),
                definition: d.clone(),
                at: at(),
            })
            .then_expect_events(vec![recorded.clone()]);
        WorkflowTest::with(())
            .given(vec![recorded.clone()])
            .when(WorkflowCommand::Define {
                name: "digest".into(),
                definition: d.clone(),
                at: at(),
            })
            .then_expect_events(vec![]);
        let d2 = definition(json!([{"id": "b", "kind": "tool", "tool": "noop"}]));
        WorkflowTest::with(())
            .given(vec![recorded])
            .when(WorkflowCommand::Define {
                name: "digest".into(),
                definition: d2.clone(),
                at: at(),
            })
            .then_expect_events(vec![WorkflowEvent::WorkflowDefined {
                name: "digest".into(),
                version: 2,
                definition: serde_json::to_value(&d2).unwrap(),
                at: at(),
            }]);
    }

    #[test]
    fn a_bad_name_or_definition_records_nothing() {
        let d = definition(json!([{"id": "a", "kind": "tool", "tool": "nope"}]));
        WorkflowTest::with(())
            .given_no_previous_events()
            .when(WorkflowCommand::Define {
                name: "digest".into(),
                definition: d,
                at: at(),
            })
            .inspect_result()
            .map(|_| ())
            .map_or_else(
                |err| assert_eq!(err.step(), Some("a")),
                |()| panic!("accepted"),
            );
    }
}
