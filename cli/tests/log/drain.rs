//! Rollouts: every process kind drains on SIGTERM. Under a steady ingest load, the relay
//! leader, a projection worker and the gateway are each sent SIGTERM in turn; no request is
//! answered 5xx, the gateway's `/ready` fails as soon as it drains while it still serves, every
//! accepted mention is in the store exactly once, the topics hold every event once (a drained
//! relay republishes nothing), and the read model equals a rebuild. Each process's `/ready`
//! reflects its own dependencies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::*;

/// Sends SIGTERM to the process.
fn sigterm(proc: &Proc) {
    let child = proc.child.as_ref().expect("a running process");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded, without blocking the load clients) for the process to exit cleanly.
async fn exits_cleanly(proc: &mut Proc) {
    let mut child = proc.child.take().expect("a running process");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not stop within 30 s of SIGTERM:\n{}",
            proc.name,
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        exit.success(),
        "{} exited with {exit} after SIGTERM:\n{}",
        proc.name,
        proc.output()
    );
}

async fn ready(client: &reqwest::Client, url: &str) -> (u16, Value) {
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(error) => (0, json!({ "error": error.to_string() })),
    }
}

#[derive(Default)]
struct Load {
    accepted_mentions: AtomicU64,
    /// Answers other than 2xx (5xx above all): there must be none.
    refused: Mutex<Vec<(u16, String)>>,
    /// When each 2xx answer arrived.
    accepted_at: Mutex<Vec<Instant>>,
    stop: AtomicBool,
}

#[tokio::test]
async fn sigterm_drains_every_process_kind_without_5xx_loss_or_duplicates() {
    let stack = Stack::start().await;
    stack.run_ok(&["migrate"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let spawn = |name: &str, args: &[&str], env: &[(&str, &str)]| stack.spawn_with(name, args, env);
    let mut gateway = spawn(
        "gateway",
        &["serve"],
        &[
            ("PLASMA_LISTEN", &listen),
            ("PLASMA_PROJECTIONS", "external"),
            ("PLASMA_DRAIN_DELAY", "1500ms"),
            ("PLASMA_RATE_LIMIT_PER_SECOND", "0"),
        ],
    );
    let metrics = |port: u16| format!("127.0.0.1:{port}");
    let (relay_a_port, relay_b_port, worker_port) = (free_port(), free_port(), free_port());
    let mut relay_a = spawn(
        "relay-a",
        &[
            "relay",
            "--batch",
            "200",
            "--metrics-listen",
            &metrics(relay_a_port),
        ],
        &[],
    );
    wait_for_log(&relay_a, "relay is the leader").await;
    let relay_b = spawn(
        "relay-b",
        &[
            "relay",
            "--batch",
            "200",
            "--metrics-listen",
            &metrics(relay_b_port),
        ],
        &[],
    );
    let mut worker = spawn(
        "projector",
        &[
            "project",
            "--read-model",
            "mentions",
            "--batch",
            "200",
            "--metrics-listen",
            &metrics(worker_port),
        ],
        &[],
    );
    wait_for_log(&gateway, "serving on").await;
    wait_for_log(&relay_b, "standing by").await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Every process kind is ready once its dependencies answer; a standby relay too.
    for (name, port) in [
        ("relay-a", relay_a_port),
        ("relay-b", relay_b_port),
        ("projector", worker_port),
    ] {
        let url = format!("http://127.0.0.1:{port}/ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = ready(&client, &url).await;
            if status == 200 {
                if name == "projector" {
                    assert!(body["lag"].is_i64(), "{body}");
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never ready: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let token = stack.admin_token();
    let api = format!("http://{listen}/v1");
    let brand = client
        .post(format!("{api}/brands"))
        .bearer_auth(&token)
        .json(&json!({"name": "Acme", "keywords": ["acme"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Four clients ingest 20 mentions a request until the gateway is gone.
    let load = Arc::new(Load::default());
    let mut clients = Vec::new();
    for task in 0..4 {
        let (load, client, token, url) = (
            load.clone(),
            client.clone(),
            token.clone(),
            format!("{api}/brands/{brand}/mentions"),
        );
        clients.push(tokio::spawn(async move {
            let mut refused_since: Option<Instant> = None;
            for round in 0.. {
                if load.stop.load(Ordering::SeqCst) {
                    break;
                }
                let mentions: Vec<Value> = (0..20)
                    .map(|k| {
                        json!({
                            "source": "news",
                            "external_id": format!("{task}-{round}-{k}"),
                            "text": "Acme ships again",
                            "published_at": "2026-11-01T10:00:00Z",
                        })
                    })
                    .collect();
                match client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "mentions": mentions }))
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => {
                        refused_since = None;
                        load.accepted_mentions.fetch_add(20, Ordering::SeqCst);
                        load.accepted_at.lock().unwrap().push(Instant::now());
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = response.text().await.unwrap_or_default();
                        load.refused.lock().unwrap().push((status, body));
                    }
                    // The listener closed: the gateway is gone (or going).
                    Err(_) => {
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(2) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The relay leader first: the standby takes over, nothing is published twice.
    sigterm(&relay_a);
    exits_cleanly(&mut relay_a).await;
    wait_for_log(&relay_b, "relay is the leader").await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    // A projection worker: it stops cleanly; a new one carries on where it committed.
    sigterm(&worker);
    exits_cleanly(&mut worker).await;
    let _worker = spawn(
        "projector-2",
        &["project", "--read-model", "mentions", "--batch", "200"],
        &[],
    );

    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The gateway: /ready fails at once, requests are still served through the drain delay.
    sigterm(&gateway);
    let signalled = Instant::now();
    let not_ready_at = loop {
        let (status, body) = ready(&client, &format!("http://{listen}/ready")).await;
        if status == 503 {
            assert!(body.to_string().contains("shutting down"), "{body}");
            break Instant::now();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "/ready still {status} a second after SIGTERM: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let the drain finish (delay, then in-flight requests), then stop the clients.
    exits_cleanly(&mut gateway).await;
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let errors = load.refused.lock().unwrap().clone();
    assert!(errors.is_empty(), "answers other than 2xx: {errors:?}");
    let served_while_draining = load
        .accepted_at
        .lock()
        .unwrap()
        .iter()
        .filter(|at| **at > not_ready_at)
        .count();
    assert!(
        served_while_draining > 0,
        "no request was served after /ready turned 503: traffic was cut, not drained"
    );

    // Every accepted mention is stored once; nothing else was.
    let pool = stack.pool().await;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Mention'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let accepted = load.accepted_mentions.load(Ordering::SeqCst);
    assert_eq!(stored as u64, accepted, "mentions stored vs. accepted");
    assert!(
        accepted >= 200,
        "too little load to mean anything: {accepted}"
    );

    // The projection caught up with everything, exactly as a rebuild would have it.
    let target = head(&pool).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE name = 'mentions'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if position == Some(target) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mentions stuck at {position:?} of {target}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_these_read_models_equal_a_rebuild(&stack, &["mentions"]).await;
    let redelivered = assert_topics_hold_every_event_in_order(&stack).await;
    assert_eq!(redelivered, 0, "a drained relay republishes nothing");

    // Readiness follows the dependencies: without the registry the relay is not ready.
    let Stack { registry, .. } = stack;
    drop(registry);
    let url = format!("http://127.0.0.1:{relay_b_port}/ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = ready(&client, &url).await;
        if status == 503 {
            assert!(body.to_string().contains("registry"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relay still {status} without a registry: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
