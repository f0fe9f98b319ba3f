//! The agent run endpoints: a run driven step by step, checkpoints, pause and resume, the
//! transitions the domain refuses, tenant isolation, idempotency and bad input.

use plasma_gateway::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    accepted, position, problem, problem_with_field, spawn_app, Backend, TestApp,
};

/// Starts a run of the digest workflow; returns its id.
async fn start_run(app: &TestApp, token: &str) -> String {
    let response = app
        .post_json(
            "/v1/agent-runs",
            token,
            &json!({"workflow": "research-digest", "input": {"topic": "skates"}}),
        )
        .await;
    accepted(response, 201).await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// POSTs `body` to `/v1/agent-runs/{run}/{path}` and expects 200.
async fn command(app: &TestApp, token: &str, run: &str, path: &str, body: Value) -> Value {
    let response = app
        .post_json(&format!("/v1/agent-runs/{run}/{path}"), token, &body)
        .await;
    accepted(response, 200).await
}

async fn a_run_with_steps_and_checkpoints_pauses_and_resumes_from_the_latest_and_a_named_checkpoint(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let response = app
        .post_json(
            "/v1/agent-runs",
            &token,
            &json!({"workflow": "research-digest", "input": {"topic": "skates"}}),
        )
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let started = accepted(response, 201).await;
    let run = started["aggregate_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/agent-runs/{run}"));
    assert_eq!(started["aggregate_type"], "AgentRun");
    assert_eq!(Uuid::parse_str(&run).unwrap().get_version_num(), 7);

    command(
        &app,
        &token,
        &run,
        "steps/0/start",
        json!({"name": "search"}),
    )
    .await;
    command(
        &app,
        &token,
        &run,
        "steps/0/complete",
        json!({"output": {"hits": 3}}),
    )
    .await;
    command(
        &app,
        &token,
        &run,
        "checkpoints",
        json!({"name": "searched", "step_index": 0, "state": {"urls": ["https://a.example"]}}),
    )
    .await;
    let step = command(
        &app,
        &token,
        &run,
        "steps/1/start",
        json!({"name": "summarize"}),
    )
    .await;
    let view = app.read(&location, &token, position(&step)).await;
    assert_eq!(view["status"], "running");
    assert_eq!(view["current_step"], 1);
    assert_eq!(view["current_step_name"], "summarize");
    // One step at a time, ended under the index it started with.
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/steps/2/start"),
            &token,
            &json!({"name": "publish"}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/steps/0/complete"),
            &token,
            &json!({}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;
    command(
        &app,
        &token,
        &run,
        "steps/1/fail",
        json!({"error": "model timed out"}),
    )
    .await;
    command(
        &app,
        &token,
        &run,
        "checkpoints",
        json!({"name": "half-summarized", "step_index": 1, "state": {"done": 2, "of": 4}}),
    )
    .await;
    let paused = command(
        &app,
        &token,
        &run,
        "pause",
        json!({"reason": "rate limited"}),
    )
    .await;
    let view = app.read(&location, &token, position(&paused)).await;
    assert_eq!(view["status"], "paused");
    assert_eq!(view["steps_completed"], 1);
    assert_eq!(view["steps_failed"], 1);
    assert_eq!(view["last_error"], "model timed out");
    // What a worker taking over needs: the latest checkpoint with its state.
    let latest = &view["latest_checkpoint"];
    assert_eq!(latest["name"], "half-summarized");
    assert_eq!(latest["step_index"], 1);
    assert_eq!(latest["state"], json!({"done": 2, "of": 4}));
    // A paused run does nothing until resumed.
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/steps/2/start"),
            &token,
            &json!({"name": "summarize"}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;

    // No body: from the latest checkpoint.
    let response = app
        .post_empty(&format!("/v1/agent-runs/{run}/resume"), &token)
        .await;
    let resumed = accepted(response, 200).await;
    let view = app.read(&location, &token, position(&resumed)).await;
    assert_eq!(view["status"], "running");
    assert_eq!(view["resumed_from"], "half-summarized");
    let response = app
        .post_empty(&format!("/v1/agent-runs/{run}/resume"), &token)
        .await;
    problem(response, 409, "illegal_transition").await;

    command(
        &app,
        &token,
        &run,
        "steps/1/start",
        json!({"name": "summarize"}),
    )
    .await;
    command(&app, &token, &run, "pause", json!({"reason": "operator"})).await;
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/resume"),
            &token,
            &json!({"checkpoint": "no-such-checkpoint"}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "checkpoint").await;
    let resumed = command(
        &app,
        &token,
        &run,
        "resume",
        json!({"checkpoint": "searched"}),
    )
    .await;
    let view = app.read(&location, &token, position(&resumed)).await;
    assert_eq!(view["status"], "running");
    assert_eq!(view["resumed_from"], "searched");
    // Resuming abandoned the step in progress.
    assert!(view["current_step"].is_null(), "{view}");

    command(
        &app,
        &token,
        &run,
        "steps/1/start",
        json!({"name": "summarize"}),
    )
    .await;
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/complete"),
            &token,
            &json!({"output": "early"}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;
    command(
        &app,
        &token,
        &run,
        "steps/1/complete",
        json!({"output": "ok"}),
    )
    .await;
    let completed = command(
        &app,
        &token,
        &run,
        "complete",
        json!({"output": {"digest": "Skates are rolling."}}),
    )
    .await;
    let at = position(&completed);
    let view = app.read(&location, &token, at).await;
    assert_eq!(view["status"], "completed");
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/pause"),
            &token,
            &json!({"reason": "too late"}),
        )
        .await;
    problem(response, 409, "illegal_transition").await;

    let listed = app
        .read("/v1/agent-runs?status=completed", &token, at)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["run_id"], run.as_str());
    let running = app.read("/v1/agent-runs?status=running", &token, at).await;
    assert_eq!(running["items"], json!([]));
}

async fn a_paused_run_without_checkpoints_cannot_resume_but_can_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let run = start_run(&app, &token).await;
    let response = app
        .post_empty(&format!("/v1/agent-runs/{run}/resume"), &token)
        .await;
    let body = problem(response, 409, "illegal_transition").await;
    assert!(
        body["detail"].as_str().unwrap().contains("not paused"),
        "{body}"
    );
    command(&app, &token, &run, "pause", json!({"reason": "waiting"})).await;
    let response = app
        .post_json(&format!("/v1/agent-runs/{run}/resume"), &token, &json!({}))
        .await;
    let body = problem(response, 409, "illegal_transition").await;
    assert!(
        body["detail"].as_str().unwrap().contains("no checkpoint"),
        "{body}"
    );
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/resume"),
            &token,
            &json!({"checkpoint": "start"}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "checkpoint").await;

    let failed = command(&app, &token, &run, "fail", json!({"error": "gave up"})).await;
    let view = app
        .read(&format!("/v1/agent-runs/{run}"), &token, position(&failed))
        .await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["last_error"], "gave up");
    assert!(view["latest_checkpoint"].is_null(), "{view}");
}

async fn agent_runs_stay_with_their_tenant_and_a_retried_start_starts_one_run(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.token("tenant-a", &[Role::Admin]);
    let b = app.token("tenant-b", &[Role::Admin]);
    let key = Uuid::new_v4().to_string();
    let body = json!({"workflow": "research-digest"});
    let first = app
        .post_json_with_key("/v1/agent-runs", &a, &key, &body)
        .await;
    let second = app
        .post_json_with_key("/v1/agent-runs", &a, &key, &body)
        .await;
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let first = accepted(first, 201).await;
    assert_eq!(first, accepted(second, 201).await);
    assert_eq!(app.event_count(&a).await, 1);
    let run = first["aggregate_id"].as_str().unwrap();

    let saved = command(
        &app,
        &a,
        run,
        "checkpoints",
        json!({"name": "secret", "step_index": 0, "state": {"token": "s3cr3t"}}),
    )
    .await;
    let at = position(&saved);
    problem(
        app.get(&format!("/v1/agent-runs/{run}?min_position={at}"), &b)
            .await,
        404,
        "not_found",
    )
    .await;
    for (path, body) in [
        ("pause", json!({"reason": "mine now"})),
        ("steps/0/start", json!({"name": "hijack"})),
        ("fail", json!({"error": "sabotage"})),
    ] {
        let response = app
            .post_json(&format!("/v1/agent-runs/{run}/{path}"), &b, &body)
            .await;
        problem(response, 404, "not_found").await;
    }
    let response = app
        .post_empty(&format!("/v1/agent-runs/{run}/resume"), &b)
        .await;
    problem(response, 404, "not_found").await;
    assert_eq!(app.read("/v1/agent-runs", &b, at).await["items"], json!([]));
    assert_eq!(app.event_count(&b).await, 0);
    assert_eq!(app.event_count(&a).await, 2);
}

async fn bad_agent_run_input_is_refused_with_the_field_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let run = start_run(&app, &token).await;
    let events = app.event_count(&token).await;

    let cases: [(String, Value, &str); 5] = [
        ("/v1/agent-runs".into(), json!({"workflow": 5}), "workflow"),
        (
            "/v1/agent-runs".into(),
            json!({"workflow": "x", "inputs": {}}),
            "inputs",
        ),
        (
            format!("/v1/agent-runs/{run}/checkpoints"),
            json!({"name": "c", "step_index": -1, "state": {}}),
            "step_index",
        ),
        (
            format!("/v1/agent-runs/{run}/checkpoints"),
            json!({"name": "c", "state": {}}),
            "step_index",
        ),
        // The resume body names a checkpoint; ResumeFrom's own shape is not the wire format.
        (
            format!("/v1/agent-runs/{run}/resume"),
            json!({"from": "latest"}),
            "from",
        ),
    ];
    for (path, body, field) in cases {
        let response = app.post_json(&path, &token, &body).await;
        problem_with_field(response, 400, "invalid_body", field).await;
    }
    let response = app
        .post_json("/v1/agent-runs", &token, &json!({"workflow": ""}))
        .await;
    problem_with_field(response, 422, "validation_failed", "workflow").await;
    let big = "x".repeat(300 * 1024);
    let response = app
        .post_json(
            "/v1/agent-runs",
            &token,
            &json!({"workflow": "w", "input": {"blob": big}}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "input").await;
    for index in ["first", "-1", "4294967296"] {
        let response = app
            .post_json(
                &format!("/v1/agent-runs/{run}/steps/{index}/start"),
                &token,
                &json!({"name": "s"}),
            )
            .await;
        problem_with_field(response, 400, "invalid_id", "index").await;
    }
    let response = app
        .post_json(
            "/v1/agent-runs/not-a-run/steps/0/start",
            &token,
            &json!({"name": "s"}),
        )
        .await;
    problem_with_field(response, 400, "invalid_id", "id").await;
    for (query, field) in [("status=sleeping", "status"), ("limit=501", "limit")] {
        let response = app.get(&format!("/v1/agent-runs?{query}"), &token).await;
        problem_with_field(response, 400, "invalid_query", field).await;
    }
    assert_eq!(app.event_count(&token).await, events);
}

plasma_testkit::on_both_backends!(
    a_run_with_steps_and_checkpoints_pauses_and_resumes_from_the_latest_and_a_named_checkpoint,
    a_paused_run_without_checkpoints_cannot_resume_but_can_fail,
    agent_runs_stay_with_their_tenant_and_a_retried_start_starts_one_run,
    bad_agent_run_input_is_refused_with_the_field_and_writes_nothing,
);
