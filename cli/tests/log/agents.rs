//! The agent runtime in server mode, with faults: two `plasma agent` workers fed by the agent
//! topic drive runs whose steps call a slow HTTP service, a slow OpenAI-compatible model, wait
//! durably and wait for a person; the workers are SIGKILLed during tool calls, during LLM calls
//! and during waits, and restarted. Every run finishes with the outputs an undisturbed run
//! has, every effect happens once (the receivers count distinct idempotency keys and see no
//! key twice at the same time: no two workers ever drove one run at once), and the human-input
//! waits survive the restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{json, Value};

use super::{Gateway, Proc, Stack};

/// How long the slow services take to answer: long enough to be killed during.
const SLOW: Duration = Duration::from_millis(1200);
const RUNS: usize = 8;

/// What a slow service saw: per idempotency key, requests received, in flight now, the most
/// in flight at once.
#[derive(Debug, Default, Clone)]
struct Seen {
    received: usize,
    in_flight: usize,
    max_in_flight: usize,
}

type Ledger = Arc<Mutex<HashMap<String, Seen>>>;

/// A slow service on loopback: `/effect` (the tool's HTTP call) and `/v1/chat/completions`
/// (an OpenAI-compatible model answering deterministically from the prompt, with usage).
async fn slow_service() -> (String, Ledger, Ledger) {
    let effects: Ledger = Arc::default();
    let completions: Ledger = Arc::default();
    /// Leaves the in-flight count when the request ends, answered or cut (a killed client's
    /// connection drops the handler mid-sleep).
    struct InFlight(Ledger, String);
    impl Drop for InFlight {
        fn drop(&mut self) {
            if let Some(seen) = self.0.lock().unwrap().get_mut(&self.1) {
                seen.in_flight -= 1;
            }
        }
    }
    async fn track(ledger: &Ledger, key: String) {
        {
            let mut l = ledger.lock().unwrap();
            let seen = l.entry(key.clone()).or_default();
            seen.received += 1;
            seen.in_flight += 1;
            seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
        }
        let _guard = InFlight(ledger.clone(), key);
        tokio::time::sleep(SLOW).await;
    }
    let (e, c) = (effects.clone(), completions.clone());
    let app = axum::Router::new()
        .route(
            "/effect",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let e = e.clone();
                async move {
                    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                    track(&e, key).await;
                    axum::Json(json!({"echo": body.0["topic"]}))
                }
            }),
        )
        .route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::Json<Value>| {
                let c = c.clone();
                async move {
                    let prompt = body.0["messages"]
                        .as_array()
                        .and_then(|m| m.last())
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    track(&c, prompt.clone()).await;
                    axum::Json(json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "model": "slow-1",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": format!("Noted: {prompt}")}}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
                    }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, effects, completions)
}

fn in_flight(ledger: &Ledger) -> usize {
    ledger.lock().unwrap().values().map(|s| s.in_flight).sum()
}

async fn until(what: &str, workers: &[&Proc], check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        if Instant::now() > deadline {
            let logs: Vec<String> = workers.iter().map(|w| w.output()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn timelines(gateway: &Gateway, runs: &[String]) -> Vec<Value> {
    let mut all = Vec::new();
    for run in runs {
        all.push(gateway.get(&format!("/agent-runs/{run}/timeline")).await);
    }
    all
}

/// Waits until every run has completed, and answers their timelines; `logs` says what the
/// workers printed when they do not.
async fn until_completed(
    gateway: &Gateway,
    runs: &[String],
    limit: Duration,
    logs: impl Fn() -> String,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let all = timelines(gateway, runs).await;
        if all.iter().all(|t| t["status"] == "completed") {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "runs did not complete: {:#}\n{}",
            json!(all
                .iter()
                .map(|t| (&t["status"], &t["error"], &t["waiting"]))
                .collect::<Vec<_>>()),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_workers_survive_sigkill_during_tool_calls_llm_calls_and_waits() {
    let started = Instant::now();
    let (base, effects, completions) = slow_service().await;
    let stack = Stack::start().await;
    stack.run_ok(&["migrate"]);
    let gateway = stack.gateway().await;
    let _relay = stack.spawn("relay", &["relay", "--batch", "200"]);
    let env = [
        ("PLASMA_AGENT_LEASE", "2s"),
        ("PLASMA_AGENT_HTTP_ALLOWED_HOSTS", "127.0.0.1"),
        ("PLASMA_LLM_PROVIDER", "openai"),
        ("PLASMA_LLM_MAX_RETRIES", "0"),
    ];
    let openai = format!("{base}/v1");
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("PLASMA_OPENAI_BASE_URL", &openai));
    env.push(("PLASMA_OPENAI_MODEL", "slow-1"));
    let spawn = |name: &str| stack.spawn_with(name, &["agent"], &env);
    let mut a = spawn("agent-a");
    let mut b = spawn("agent-b");

    gateway
        .client
        .put(format!("{}/workflows/faulty", gateway.base))
        .bearer_auth(&gateway.token)
        .json(&json!({"steps": [
            {"id": "call", "kind": "tool", "tool": "http.request",
             "input": {"method": "POST", "url": format!("{base}/effect"), "body": {"topic": "{{input.topic}}"}},
             "retry": {"max_attempts": 10, "backoff_ms": 100}},
            {"id": "think", "kind": "llm", "prompt": "Summarise {{input.topic}}",
             "retry": {"max_attempts": 10, "backoff_ms": 100}},
            {"id": "nap", "kind": "wait", "seconds": 2},
            {"id": "ask", "kind": "input", "prompt": "Approve {{input.topic}}?"},
            {"id": "done", "kind": "tool", "tool": "noop"}],
            "output": {"call": "{{steps.call.body}}", "think": "{{steps.think.text}}",
                       "answer": "{{steps.ask}}"}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let outcome = gateway
            .post(
                "/agent-runs",
                json!({"workflow": "faulty", "input": {"topic": format!("topic-{i}")}}),
            )
            .await;
        runs.push(outcome["aggregate_id"].as_str().unwrap().to_owned());
    }

    // SIGKILL a worker while tool calls are in flight.
    until("tool calls in flight", &[&a, &b], || {
        in_flight(&effects) > 0
    })
    .await;
    a.sigkill();
    eprintln!(
        "agents test: killed agent-a during tool calls at {:?}",
        started.elapsed()
    );
    let a2 = spawn("agent-a2");
    // SIGKILL the other while LLM calls are in flight.
    until("LLM calls in flight", &[&a2, &b], || {
        in_flight(&completions) > 0
    })
    .await;
    b.sigkill();
    eprintln!(
        "agents test: killed agent-b during LLM calls at {:?}",
        started.elapsed()
    );
    let b2 = spawn("agent-b2");
    // SIGKILL a worker while runs wait durably.
    let waiting = |kind: &'static str| {
        let gateway = gateway.clone();
        let runs = runs.clone();
        async move {
            timelines(&gateway, &runs)
                .await
                .iter()
                .filter(|t| t["waiting"]["kind"] == kind)
                .count()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while waiting("time").await == 0 {
        assert!(Instant::now() < deadline, "no run reached its wait");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut a2 = a2;
    a2.sigkill();
    eprintln!(
        "agents test: killed agent-a2 during waits at {:?}",
        started.elapsed()
    );
    let a3 = spawn("agent-a3");

    // Every run reaches its human-input wait, across the restarts.
    let deadline = Instant::now() + Duration::from_secs(90);
    while waiting("input").await < RUNS {
        assert!(
            Instant::now() < deadline,
            "runs did not all reach their input step:\n{:#}\n{}\n{}",
            json!(timelines(&gateway, &runs).await),
            a3.output(),
            b2.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Restart the workers while every run waits for its person.
    let (mut a3, mut b2) = (a3, b2);
    a3.sigkill();
    b2.sigkill();
    let _a4 = spawn("agent-a4");
    let _b3 = spawn("agent-b3");
    for run in &runs {
        gateway
            .post(&format!("/agent-runs/{run}/input"), json!({"value": "yes"}))
            .await;
    }
    let finished = until_completed(&gateway, &runs, Duration::from_secs(60), String::new).await;

    // The outputs an undisturbed run has.
    for (i, t) in finished.iter().enumerate() {
        assert_eq!(
            t["output"],
            json!({"call": {"echo": format!("topic-{i}")},
                   "think": format!("Noted: Summarise topic-{i}"), "answer": "yes"}),
            "run {i}"
        );
        assert!(t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] != "running"));
    }
    // Each run's HTTP call had one key, never in flight twice at once (one worker per run);
    // a call cut by a kill was sent again under the same key, so the receiver acts once.
    let effects = effects.lock().unwrap().clone();
    assert_eq!(
        effects.len(),
        RUNS,
        "one idempotency key per run: {effects:?}"
    );
    assert!(
        effects.values().all(|s| s.max_in_flight == 1),
        "{effects:?}"
    );
    let resent: usize = effects.values().map(|s| s.received - 1).sum();
    let completions = completions.lock().unwrap().clone();
    assert_eq!(completions.len(), RUNS);
    assert!(
        completions.values().all(|s| s.max_in_flight == 1),
        "{completions:?}"
    );
    eprintln!(
        "agents test: {RUNS} runs completed after 4 kills in {:?}; {resent} tool calls resent under their key",
        started.elapsed()
    );
}

/// The in-process model in a worker killed while it writes: the run resumes on another worker,
/// the step records one generation, and it is the text the step's seed writes (the retried
/// generation wrote what the killed one would have).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_an_in_process_generation_resumes_and_records_it_once() {
    use plasma_adapters::local_llm::{LocalLlm, LocalLlmSettings};
    use plasma_domain::content::{GenerationRequest, TextGenerator};

    let models = std::env::var_os("PLASMA_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(plasma_adapters::embedding::default_models_dir);
    let local = LocalLlm::load(LocalLlmSettings::in_models_dir(&models))
        .expect("the in-process model: run scripts/install-models.sh");
    let stack = Stack::start().await;
    stack.run_ok(&["migrate"]);
    let gateway = stack.gateway().await;
    let _relay = stack.spawn("relay", &["relay", "--batch", "200"]);
    let env = [
        ("PLASMA_AGENT_LEASE", "2s"),
        ("PLASMA_LLM_PROVIDER", "local"),
    ];
    let spawn = |name: &str| stack.spawn_with(name, &["agent"], &env);
    let mut a = spawn("agent-a");
    gateway
        .client
        .put(format!("{}/workflows/story", gateway.base))
        .bearer_auth(&gateway.token)
        .json(&json!({"steps": [
            {"id": "write", "kind": "llm", "prompt": "Write a long story about {{input.topic}}.",
             "max_tokens": 160, "retry": {"max_attempts": 5, "backoff_ms": 100}}],
            "output": {"text": "{{steps.write.text}}"}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut runs = Vec::new();
    for topic in ["a lighthouse", "a rocket skate"] {
        let outcome = gateway
            .post(
                "/agent-runs",
                json!({"workflow": "story", "input": {"topic": topic}}),
            )
            .await;
        runs.push(outcome["aggregate_id"].as_str().unwrap().to_owned());
    }
    // Kill the worker once a generation has started and before any has finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = timelines(&gateway, &runs).await;
        let steps: Vec<&Value> = all
            .iter()
            .flat_map(|t| t["steps"].as_array().into_iter().flatten())
            .collect();
        if steps.iter().any(|s| s["status"] == "completed") {
            panic!(
                "a generation finished before the kill: {:#}\n{}",
                json!(all),
                a.output()
            );
        }
        if steps.iter().any(|s| s["status"] == "running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no generation started: {}",
            a.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.sigkill();
    let b = spawn("agent-b");
    let finished = until_completed(&gateway, &runs, Duration::from_secs(120), || b.output()).await;
    for (run, timeline) in runs.iter().zip(&finished) {
        let history = gateway.get(&format!("/audit/AgentRun/{run}/events")).await;
        let completed = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_type"] == "AgentStepCompleted")
            .count();
        assert_eq!(completed, 1, "one generation recorded: {history:#}");
        // The streamed pieces: numbered 0, 1, 2, … once each (the killed attempt's pieces were
        // not written again by the retry), and together the recorded text.
        let pieces: Vec<(u64, String)> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_type"] == "AgentStepOutputStreamed")
            .map(|e| {
                let p = e["payload"]
                    .get("AgentStepOutputStreamed")
                    .unwrap_or(&e["payload"]);
                (
                    p["chunk"].as_u64().unwrap(),
                    p["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(pieces.len() > 1, "{history:#}");
        let numbers: Vec<u64> = pieces.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (0..pieces.len() as u64).collect::<Vec<_>>());
        let streamed: String = pieces.iter().map(|(_, t)| t.as_str()).collect();
        let step = &timeline["steps"][0];
        let output = &step["output"];
        assert_eq!(output["provider"], "local", "{output:#}");
        let text = output["text"].as_str().unwrap();
        assert!(!text.is_empty());
        // The step's seed writes exactly the recorded text.
        let seed = output["sampling"]["seed"].as_u64().unwrap();
        let again = local
            .generate(&GenerationRequest {
                system: None,
                prompt: step["input"]["prompt"].as_str().unwrap().to_owned(),
                max_tokens: Some(160),
                draft: None,
                seed: Some(seed),
                stop: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(again.text, text);
        assert_eq!(streamed.trim(), text);
        assert_eq!(timeline["output"]["text"], text);
    }
}
