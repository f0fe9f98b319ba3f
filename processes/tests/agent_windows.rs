//! The agent worker across the crash windows of its newer duties, on both stores:
//! - killed after a `continue_as_new` step started the next run and before the step's end was
//!   recorded: the next worker performs the step again and the next run exists once;
//! - killed after retention recorded its pruning and before the event store dropped the pruned
//!   states: the next worker drops them, and records no second pruning.
//!
//! Each window is a few milliseconds wide, too narrow to hit with a signal, so the test records
//! exactly what the killed worker had recorded when it died, then starts a fresh worker on the
//! same stores. (The SIGKILL tests of the agent runtime in server mode, `cli/tests/log/agents.rs`,
//! cover the wide windows: tool calls, LLM calls, waits.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The fixture's other helpers serve the tests that run a child process.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cqrs_es::Aggregate as _;
use plasma_adapters::outbound::{AllowListedHttp, WebhookPublisher};
use plasma_commands::{CommandContext, CommandHandler, EventStore};
use plasma_domain::agent::{
    AgentRun, AgentRunCommand, AgentRunEvent, AgentRunStatus, Workflow, WorkflowCommand,
};
use plasma_domain::content::{DraftServices, TemplateGenerator};
use plasma_domain::ids::{CommandId, RunId, WorkflowId};
use plasma_domain::{AggregateId as _, TenantId};
use plasma_processes::agent::{AgentOptions, AgentWorker, ToolBox};
use plasma_processes::{Process, ProcessOptions, ProcessRunner};
use plasma_projections::{ReadModels, ReadStore, StoreSubscription};
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

use common::{fixture, open, Fixture};

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn context() -> CommandContext {
    CommandContext::new(tenant(), CommandId::from_uuid(Uuid::now_v7()), None)
}

async fn record(handler: &CommandHandler, run: RunId, command: AgentRunCommand) {
    handler
        .execute::<AgentRun>(&context(), run.as_uuid(), command, &())
        .await
        .unwrap();
}

async fn define(handler: &CommandHandler, name: &str, steps: Value) {
    let definition = serde_json::from_value(json!({ "steps": steps })).unwrap();
    handler
        .execute::<Workflow>(
            &context(),
            WorkflowId::derive(&tenant(), name).as_uuid(),
            WorkflowCommand::Define {
                name: name.to_owned(),
                definition,
                at: Utc::now(),
            },
            &(),
        )
        .await
        .unwrap();
}

fn start(workflow: &str, input: Value) -> AgentRunCommand {
    AgentRunCommand::StartManaged {
        workflow: workflow.to_owned(),
        version: 1,
        input,
        fork: None,
        continued_from: None,
        at: Utc::now(),
    }
}

/// A fresh agent worker on the stores: its schedule follows the log from the start, its
/// executor claims what is due. Stopped when the returned sender is dropped or set.
async fn worker(
    store: &EventStore,
    read: &ReadStore,
    retention: Option<Duration>,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let handler = CommandHandler::new(store.clone());
    let tools = ToolBox {
        handler: handler.clone(),
        read: ReadModels::new(read.clone()),
        generator: Arc::new(TemplateGenerator),
        http: Arc::new(AllowListedHttp::new(Vec::new(), Duration::from_secs(5)).unwrap()),
        publisher: Arc::new(
            WebhookPublisher::new(None, "test-secret".into(), Duration::from_secs(5)).unwrap(),
        ),
        draft_services: DraftServices::default(),
    };
    let worker = Arc::new(AgentWorker::new(
        handler,
        ReadModels::new(read.clone()),
        tools,
        AgentOptions {
            lease: Duration::from_secs(2),
            poll: Duration::from_millis(10),
            checkpoint_retention: retention,
            ..AgentOptions::default()
        },
    ));
    let (stop, stopped) = watch::channel(false);
    let schedule: Arc<dyn Process> = worker.clone();
    let runner = ProcessRunner::start(
        read.clone(),
        schedule,
        StoreSubscription::new(store.clone()),
        ProcessOptions {
            idle_wait: Duration::from_millis(5),
            ..ProcessOptions::default()
        },
    )
    .await
    .unwrap();
    let s = stopped.clone();
    let follow = tokio::spawn(async move { runner.run(s).await.unwrap() });
    let execute = tokio::spawn(async move { worker.execute(stopped).await.unwrap() });
    (stop, vec![follow, execute])
}

async fn events(store: &EventStore, run: RunId) -> Vec<AgentRunEvent> {
    store
        .load_stream(&tenant(), AgentRun::TYPE, run.as_uuid())
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.decode().unwrap())
        .collect()
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(events: &[AgentRunEvent]) -> Option<AgentRunStatus> {
    let mut run = AgentRun::default();
    for e in events {
        run.apply(e.clone());
    }
    run.status
}

async fn a_run_killed_after_starting_its_next_round_starts_it_once(fixture: Fixture) {
    let (store, read) = open(&fixture.location).await;
    let handler = CommandHandler::new(store.clone());
    define(
        &handler,
        "rounds",
        json!([
            {"id": "gate", "kind": "branch", "condition": {"value": "{{input.last}}"},
             "then": "end", "else": "hop"},
            {"id": "hop", "kind": "continue_as_new", "input": {"last": true}}
        ]),
    )
    .await;
    // What the killed worker had recorded: the branch, the hop's intent, and the hop's effect
    // (the next run, under the id derived from the step).
    let run = RunId::from_uuid(Uuid::now_v7());
    record(&handler, run, start("rounds", json!({"last": false}))).await;
    let at = Utc::now();
    record(
        &handler,
        run,
        AgentRunCommand::RunPureStep {
            index: 0,
            name: "gate".into(),
            kind: "branch".into(),
            input: Value::Null,
            output: json!({"value": false, "holds": false, "next": "hop"}),
            next: Some(1),
            at,
        },
    )
    .await;
    record(
        &handler,
        run,
        AgentRunCommand::BeginStep {
            index: 1,
            name: "hop".into(),
            kind: "continue_as_new".into(),
            input: json!({"input": {"last": true}}),
            wake_at: None,
            at,
        },
    )
    .await;
    let next = RunId::continuing(run, 0, 1);
    record(
        &handler,
        next,
        AgentRunCommand::StartManaged {
            workflow: "rounds".into(),
            version: 1,
            input: json!({"last": true}),
            fork: None,
            continued_from: Some(run),
            at,
        },
    )
    .await;

    let (stop, tasks) = worker(&store, &read, None).await;
    until("both rounds to complete", async || {
        status(&events(&store, run).await) == Some(AgentRunStatus::Completed)
            && status(&events(&store, next).await) == Some(AgentRunStatus::Completed)
    })
    .await;
    let _ = stop.send(true);
    for task in tasks {
        task.await.unwrap();
    }

    // The hop ended naming the run it had started; no other run continues this one.
    let hop_output = events(&store, run).await.into_iter().find_map(|e| match e {
        AgentRunEvent::AgentStepCompleted {
            index: 1, output, ..
        } => Some(output),
        _ => None,
    });
    assert_eq!(hop_output, Some(json!({"run_id": next.as_uuid()})));
    let all = store.read_all(0, 10_000).await.unwrap();
    let continuing: Vec<Uuid> = all
        .iter()
        .filter(|e| e.event_type == "AgentRunStarted")
        .filter(|e| {
            matches!(
                e.decode::<AgentRunEvent>().unwrap(),
                AgentRunEvent::AgentRunStarted { continued_from: Some(from), .. } if from == run
            )
        })
        .map(|e| e.aggregate_id)
        .collect();
    assert_eq!(continuing, [next.as_uuid()], "the next round started once");
}

async fn a_worker_killed_between_pruning_and_dropping_states_drops_them_next_time(
    fixture: Fixture,
) {
    let (store, read) = open(&fixture.location).await;
    let handler = CommandHandler::new(store.clone());
    define(
        &handler,
        "pair",
        json!([
            {"id": "a", "kind": "tool", "tool": "noop"},
            {"id": "b", "kind": "tool", "tool": "noop"}
        ]),
    )
    .await;
    // A finished run whose pruning was recorded by a worker that died before the store
    // dropped the states.
    let run = RunId::from_uuid(Uuid::now_v7());
    record(&handler, run, start("pair", json!({}))).await;
    for (index, name) in [(0u32, "a"), (1, "b")] {
        record(
            &handler,
            run,
            AgentRunCommand::RunPureStep {
                index,
                name: name.into(),
                kind: "tool".into(),
                input: Value::Null,
                output: json!({"ok": true}),
                next: Some(index + 1),
                at: Utc::now(),
            },
        )
        .await;
    }
    record(
        &handler,
        run,
        AgentRunCommand::Complete {
            output: json!({}),
            at: Utc::now(),
        },
    )
    .await;
    record(
        &handler,
        run,
        AgentRunCommand::PruneCheckpoints {
            keep: 1,
            at: Utc::now(),
        },
    )
    .await;
    let states = |events: &[AgentRunEvent]| -> Vec<Value> {
        events
            .iter()
            .filter_map(|e| match e {
                AgentRunEvent::AgentCheckpointSaved { state, .. } => Some(state.clone()),
                _ => None,
            })
            .collect()
    };
    assert!(states(&events(&store, run).await)
        .iter()
        .all(|s| !s.is_null()));

    let (stop, tasks) = worker(&store, &read, Some(Duration::ZERO)).await;
    until("the pruned states to be dropped", async || {
        let states = states(&events(&store, run).await);
        states[..states.len() - 1].iter().all(Value::is_null)
    })
    .await;
    let _ = stop.send(true);
    for task in tasks {
        task.await.unwrap();
    }
    let history = events(&store, run).await;
    let states = states(&history);
    assert_eq!(states.len(), 3, "the start and one per step");
    assert!(states[..2].iter().all(Value::is_null));
    assert_eq!(
        states[2]["outputs"]["b"],
        json!({"ok": true}),
        "the latest stays"
    );
    let prunings = history
        .iter()
        .filter(|e| matches!(e, AgentRunEvent::AgentCheckpointsPruned { .. }))
        .count();
    assert_eq!(prunings, 1, "the pruning is recorded once");
    assert_eq!(status(&history), Some(AgentRunStatus::Completed));
}

plasma_testkit::on_both_backends!(
    fixture;
    a_run_killed_after_starting_its_next_round_starts_it_once,
    a_worker_killed_between_pruning_and_dropping_states_drops_them_next_time,
);
