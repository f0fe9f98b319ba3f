//! Brand alerts end to end: a generated stream with injected spikes of known size and time
//! raises exactly the expected alerts, which resolve when the stream returns to its baseline;
//! their webhooks arrive signed (checked by Python's `hmac`), a failing receiver is retried and
//! dead-lettered, and a redelivery keeps the delivery id.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::{accepted, spawn_app_with, Backend, TestApp};

#[derive(Debug, Clone)]
struct Hit {
    delivery: String,
    event: String,
    signature: String,
    body: String,
}

/// A webhook receiver on a free loopback port, answering `status`.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
}

async fn receiver() -> Receiver {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let status = Arc::new(AtomicU16::new(200));
    let (h, s) = (hits.clone(), status.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (hits, status) = (h.clone(), s.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                hits.lock().unwrap().push(Hit {
                    delivery: header("plasma-delivery"),
                    event: header("plasma-event"),
                    signature: header("plasma-signature"),
                    body,
                });
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, hits, status }
}

const POSITIVE: &str = "I love Acme, the rockets are great";
const NEUTRAL: &str = "Acme shipped a new rocket model today";
const NEGATIVE: &str = "Acme is terrible, the worst awful service ever";
const COMPETITOR: &str = "Compared Acme with Globex rockets today";

/// The hours (from the stream's start) of the injected spikes.
const VOLUME_SPIKE: i64 = 180;
const NEGATIVE_SURGE: i64 = 200;
const COMPETITOR_SURGE: i64 = 220;
const HOURS: i64 = 232;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
}

/// One hour's mentions: (volume, negatives, naming the competitor).
fn shape(hour: i64) -> (i64, i64, i64) {
    match hour {
        VOLUME_SPIKE => (80, 8, 1),
        NEGATIVE_SURGE => (12, 9, 1),
        COMPETITOR_SURGE => (14, 1, 12),
        _ => (8 + hour % 5, 1, 1),
    }
}

/// A steady stream (8-12 mentions an hour, one negative, one naming Globex) over ten days with
/// three injected spikes, in publication order.
fn stream() -> Vec<Value> {
    let mut mentions = Vec::new();
    for hour in 0..HOURS {
        let (volume, negatives, competitor) = shape(hour);
        for i in 0..volume {
            let text = if i < negatives {
                NEGATIVE
            } else if i < negatives + competitor {
                COMPETITOR
            } else if i % 2 == 0 {
                POSITIVE
            } else {
                NEUTRAL
            };
            let at = start()
                + chrono::Duration::hours(hour)
                + chrono::Duration::seconds(i * 3599 / volume);
            mentions.push(json!({
                "source": "twitter",
                "external_id": format!("{hour}-{i}"),
                "author": format!("@user{}", i % 7),
                "text": text,
                "published_at": at.to_rfc3339(),
            }));
        }
    }
    mentions
}

async fn setup(app: &TestApp, token: &str, hook: &str) -> String {
    let brand = app.register_brand(token, "Acme").await;
    let brand = brand["aggregate_id"].as_str().unwrap().to_owned();
    let rules = json!({
        "min_volume": 10,
        "channels": [{ "id": "ops", "url": hook }],
    });
    let set = app
        .put_json(&format!("/v1/brands/{brand}/alert-rules"), token, &rules)
        .await;
    accepted(set, 200).await;
    brand
}

async fn ingest_stream(app: &TestApp, token: &str, brand: &str) -> i64 {
    let mut last = 0;
    for batch in stream().chunks(500) {
        last = app.ingest(token, brand, batch.to_vec()).await["last_position"]
            .as_i64()
            .unwrap();
    }
    last
}

/// Polls `path` until `done` holds (the detector and the delivery worker run behind the API).
async fn eventually(
    app: &TestApp,
    path: &str,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..300 {
        let value = accepted(app.get(path, token).await, 200).await;
        if done(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there");
}

fn python_verifies(secret: &str, signature: &str, body: &str) -> bool {
    let script = "import hmac, hashlib, sys\n\
        secret, header, body = sys.argv[1], sys.argv[2], sys.stdin.read()\n\
        parts = dict(p.split('=', 1) for p in header.split(','))\n\
        expected = hmac.new(secret.encode(), (parts['t'] + '.' + body).encode(), hashlib.sha256).hexdigest()\n\
        sys.exit(0 if hmac.compare_digest(expected, parts['v1']) else 1)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret, signature])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

async fn injected_spikes_raise_exactly_the_expected_alerts_and_notify_signed(backend: Backend) {
    let hook = receiver().await;
    let app = spawn_app_with(backend, |_| {}).await;
    let token = app.admin();
    let brand = setup(&app, &token, &hook.url).await;
    let last = ingest_stream(&app, &token, &brand).await;

    let alerts = eventually(
        &app,
        &format!("/v1/alerts?brand_id={brand}&min_position={last}"),
        &token,
        |v| {
            let items = v["items"].as_array().unwrap();
            items.len() >= 3 && items.iter().all(|a| a["status"] == "resolved")
        },
    )
    .await;
    let items = alerts["items"].as_array().unwrap();
    let found: Vec<(String, String, Option<String>)> = items
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["window_start"].as_str().unwrap().to_owned(),
                a["competitor"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let at = |hour: i64| {
        (start() + chrono::Duration::hours(hour))
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    assert_eq!(
        found,
        vec![
            (
                "competitor_surge".to_owned(),
                at(COMPETITOR_SURGE),
                Some("Globex".to_owned())
            ),
            ("negative_surge".to_owned(), at(NEGATIVE_SURGE), None),
            ("volume_spike".to_owned(), at(VOLUME_SPIKE), None),
        ],
        "{alerts:#}"
    );
    let spike = &items[2];
    assert_eq!(spike["evidence"]["value"], 80.0);
    assert_eq!(spike["evidence"]["mentions"], 80);
    assert!(spike["evidence"]["threshold"].as_f64().unwrap() < 30.0);
    assert_eq!(
        spike["evidence"]["sample_mention_ids"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert!(!spike["evidence"]["top_terms"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(spike["rule_version"], 1);
    assert_eq!(spike["resolved_automatically"], true);
    assert_eq!(items[1]["evidence"]["dominant_sentiment"], "negative");

    // Six notifications: each alert raised and resolved, each once, each signed.
    let detail = eventually(
        &app,
        &format!("/v1/alerts/{}", spike["alert_id"].as_str().unwrap()),
        &token,
        |v| {
            v["deliveries"].as_array().unwrap().len() == 2
                && v["deliveries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|d| d["status"] == "delivered")
        },
    )
    .await;
    assert_eq!(detail["deliveries"][0]["log"][0]["status"], 200);
    for _ in 0..100 {
        if hook.hits.lock().unwrap().len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits = hook.hits.lock().unwrap().clone();
    let mut ids: Vec<&str> = hits.iter().map(|h| h.delivery.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{hits:#?}");
    let rules = accepted(
        app.get(&format!("/v1/brands/{brand}/alert-rules"), &token)
            .await,
        200,
    )
    .await;
    let secret = rules["signing_secrets"]["ops"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    let raised = hits.iter().find(|h| h.event == "alert.raised").unwrap();
    let body: Value = serde_json::from_str(&raised.body).unwrap();
    assert_eq!(body["id"], raised.delivery.as_str());
    assert!(python_verifies(secret, &raised.signature, &raised.body));
    assert!(!python_verifies(
        "whsec_wrong",
        &raised.signature,
        &raised.body
    ));

    // A replay of the brand's events into a rebuilt read model shows the same alerts.
    let rebuild = app
        .post_empty("/v1/admin/read-models/alerts/rebuild", &token)
        .await;
    assert_eq!(rebuild.status(), 202);
    let after = eventually(&app, &format!("/v1/alerts?brand_id={brand}"), &token, |v| {
        v["items"].as_array().unwrap().len() == 3
    })
    .await;
    assert_eq!(after["items"].as_array().unwrap().len(), 3);
}

async fn a_failing_receiver_is_retried_dead_lettered_then_redelivered_under_the_same_id(
    backend: Backend,
) {
    let hook = receiver().await;
    hook.status.store(500, Ordering::SeqCst);
    let app = spawn_app_with(backend, |layer| {
        layer.alerts.max_attempts = Some(3);
        layer.alerts.retry_base = Some(Duration::from_millis(20));
    })
    .await;
    let token = app.admin();
    let brand = setup(&app, &token, &hook.url).await;
    let last = ingest_stream(&app, &token, &brand).await;
    let alerts = eventually(
        &app,
        &format!("/v1/alerts?brand_id={brand}&kind=volume_spike&min_position={last}"),
        &token,
        |v| !v["items"].as_array().unwrap().is_empty(),
    )
    .await;
    let alert = alerts["items"][0]["alert_id"].as_str().unwrap().to_owned();
    let detail = eventually(&app, &format!("/v1/alerts/{alert}"), &token, |v| {
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["event"] == "alert.raised" && d["status"] == "dead_lettered")
    })
    .await;
    let delivery = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event"] == "alert.raised")
        .unwrap();
    let id = delivery["delivery_id"].as_str().unwrap().to_owned();
    assert_eq!(delivery["attempts"], 3);
    let log = delivery["log"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|a| a["status"] == 500));
    assert!(log[0]["retry_at"].is_string() && log[2]["retry_at"].is_null());

    hook.status.store(204, Ordering::SeqCst);
    let redeliver = app
        .post_empty(&format!("/v1/deliveries/{id}/redeliver"), &token)
        .await;
    accepted(redeliver, 200).await;
    let delivered = eventually(&app, &format!("/v1/deliveries/{id}"), &token, |v| {
        v["status"] == "delivered"
    })
    .await;
    assert_eq!(delivered["attempts"], 4);
    let hits = hook.hits.lock().unwrap().clone();
    let same: Vec<_> = hits.iter().filter(|h| h.delivery == id).collect();
    assert_eq!(
        same.len(),
        4,
        "three failures and one success, all under one id"
    );
    // Redelivering what is delivered is allowed again; what is pending is not.
    let missing = app
        .post_empty(
            "/v1/deliveries/00000000-0000-0000-0000-000000000000/redeliver",
            &token,
        )
        .await;
    assert_eq!(missing.status(), 404);
}

async fn acknowledging_snoozing_and_bad_rules_follow_the_lifecycle(backend: Backend) {
    let hook = receiver().await;
    let app = spawn_app_with(backend, |_| {}).await;
    let token = app.admin();
    let brand = setup(&app, &token, &hook.url).await;
    let bad = app
        .put_json(
            &format!("/v1/brands/{brand}/alert-rules"),
            &token,
            &json!({"k": 0}),
        )
        .await;
    crate::helpers::problem_with_field(bad, 422, "validation_failed", "k").await;
    let bad_channel = app
        .put_json(
            &format!("/v1/brands/{brand}/alert-rules"),
            &token,
            &json!({"channels": [{"id": "ops", "url": "ftp://nope"}]}),
        )
        .await;
    crate::helpers::problem(bad_channel, 422, "validation_failed").await;
    let rules = accepted(
        app.get(&format!("/v1/brands/{brand}/alert-rules"), &token)
            .await,
        200,
    )
    .await;
    assert_eq!(rules["version"], 1, "refused rules change nothing");

    let last = ingest_stream(&app, &token, &brand).await;
    let alerts = eventually(
        &app,
        &format!("/v1/alerts?brand_id={brand}&kind=volume_spike&min_position={last}"),
        &token,
        |v| !v["items"].as_array().unwrap().is_empty(),
    )
    .await;
    let alert = alerts["items"][0]["alert_id"].as_str().unwrap().to_owned();
    // Resolved automatically by now or soon; acknowledging a resolved alert is refused.
    eventually(&app, &format!("/v1/alerts/{alert}"), &token, |v| {
        v["status"] == "resolved"
    })
    .await;
    let ack = app
        .post_json(
            &format!("/v1/alerts/{alert}/acknowledge"),
            &token,
            &json!({"note": "late"}),
        )
        .await;
    crate::helpers::problem(ack, 409, "illegal_transition").await;
    let snooze = app
        .post_json(
            &format!("/v1/alerts/{alert}/snooze"),
            &token,
            &json!({"until": "2020-01-01T00:00:00Z"}),
        )
        .await;
    crate::helpers::problem(snooze, 409, "illegal_transition").await;
    let unknown = app
        .post_empty(
            "/v1/alerts/00000000-0000-0000-0000-000000000000/acknowledge",
            &token,
        )
        .await;
    crate::helpers::problem(unknown, 404, "not_found").await;
}

async fn a_webhook_to_an_internal_address_is_refused_unless_allowed(backend: Backend) {
    let hook = receiver().await;
    let app = spawn_app_with(backend, |layer| {
        // What `plasma serve` does by default.
        layer.alerts.allow_private_targets = Some(false);
        layer.alerts.max_attempts = Some(1);
    })
    .await;
    let token = app.admin();
    let brand = setup(&app, &token, &hook.url).await;
    let last = ingest_stream(&app, &token, &brand).await;
    let alerts = eventually(
        &app,
        &format!("/v1/alerts?brand_id={brand}&kind=volume_spike&min_position={last}"),
        &token,
        |v| !v["items"].as_array().unwrap().is_empty(),
    )
    .await;
    let alert = alerts["items"][0]["alert_id"].as_str().unwrap().to_owned();
    let detail = eventually(&app, &format!("/v1/alerts/{alert}"), &token, |v| {
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["status"] == "dead_lettered")
    })
    .await;
    let error = detail["deliveries"][0]["log"][0]["error"].as_str().unwrap();
    assert!(error.contains("internal address 127.0.0.1"), "{error}");
    assert!(
        hook.hits.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
}

plasma_testkit::on_both_backends!(
    a_webhook_to_an_internal_address_is_refused_unless_allowed,
    injected_spikes_raise_exactly_the_expected_alerts_and_notify_signed,
    a_failing_receiver_is_retried_dead_lettered_then_redelivered_under_the_same_id,
    acknowledging_snoozing_and_bad_rules_follow_the_lifecycle,
);
