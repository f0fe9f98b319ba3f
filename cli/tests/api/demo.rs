//! The `plasma dev --demo` data set, loaded through the library and read through the API.

use std::collections::BTreeSet;

use plasma_cli::demo::{DemoOutcome, DEMO_TENANT};
use plasma_gateway::Role;
use serde_json::Value;

use crate::helpers::{spawn_app_with_demo, spawn_app_with_demo_and, Backend};

async fn the_demo_loads_once_and_its_stats_show_the_spike(backend: Backend) {
    let (app, first, second) = spawn_app_with_demo(backend).await;
    let DemoOutcome::Loaded(summary) = first else {
        panic!("the first load should load: {first:?}");
    };
    assert!(
        matches!(second, DemoOutcome::Skipped { head } if head == summary.last_position),
        "{second:?}"
    );
    assert_eq!(summary.brands.len(), 3);
    assert!((5_500..=6_500).contains(&summary.mentions), "{summary:?}");

    let token = app.token(DEMO_TENANT, &[Role::Admin]);
    let position = summary.last_position;
    let brands: Value = app
        .get(&format!("/v1/brands?min_position={position}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(brands["items"].as_array().unwrap().len(), 3);

    let response = app
        .get(
            &format!(
                "/v1/brands/{}/stats?min_position={position}",
                summary.spike.brand
            ),
            &token,
        )
        .await;
    assert_eq!(response.status(), 200);
    let stats: Value = response.json().await.unwrap();
    let days = stats["days"].as_array().unwrap();
    assert!(days.len() >= 25, "{} days", days.len());
    let spike_day = summary.spike.day.to_string();
    let spike = days
        .iter()
        .find(|d| d["day"] == spike_day.as_str())
        .unwrap();
    let mut volumes: Vec<i64> = days.iter().map(|d| d["volume"].as_i64().unwrap()).collect();
    volumes.sort_unstable();
    let median = volumes[volumes.len() / 2];
    let volume = spike["volume"].as_i64().unwrap();
    assert!(volume > 5 * median, "spike {volume} vs median {median}");
    assert!(spike["negative"].as_i64().unwrap() > spike["positive"].as_i64().unwrap() * 3);
    // Today holds the complaint wave breaking as the demo loads (its own alert): in the first
    // hours after midnight it is most of the day's mentions, so it is no baseline to compare.
    let today = chrono::Utc::now().date_naive().to_string();
    let others_negative = days
        .iter()
        .filter(|d| d["day"] != spike_day.as_str() && d["day"] != today.as_str())
        .map(|d| d["net_sentiment"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(spike["net_sentiment"].as_f64().unwrap() < others_negative);

    // The spike raised an alert, with evidence pointing at it.
    let mut alerts = Value::Null;
    for _ in 0..300 {
        alerts = app
            .get(
                &format!(
                    "/v1/alerts?brand_id={}&kind=volume_spike",
                    summary.spike.brand
                ),
                &token,
            )
            .await
            .json()
            .await
            .unwrap();
        // Caught up: the wave breaking now has its alert, and the spike day's is resolved.
        let items = alerts["items"].as_array().unwrap();
        if items.len() >= 2 && items.last().unwrap()["status"] == "resolved" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let items = alerts["items"].as_array().unwrap();
    // One for the whole spike day (resolved once the day was over), one for the wave breaking
    // as the demo loads (still open).
    assert_eq!(items.len(), 2, "{alerts:#}");
    assert_eq!(items[0]["status"], "open");
    assert_eq!(items[1]["status"], "resolved");
    assert_eq!(items[1]["resolved_automatically"], true);
    let evidence = &items[1]["evidence"];
    assert!(
        evidence["window_start"]
            .as_str()
            .unwrap()
            .starts_with(&spike_day),
        "{evidence:#}"
    );
    assert!(evidence["value"].as_f64().unwrap() > evidence["threshold"].as_f64().unwrap());
    assert_eq!(evidence["dominant_sentiment"], "negative");
    assert!(!evidence["top_terms"].as_array().unwrap().is_empty());

    // Every kind of aggregate, in every state the demo promises.
    let types: BTreeSet<String> = app
        .tenant_events(&token)
        .await
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "BrandRegistered",
        "MentionIngested",
        "DraftRequested",
        "DraftVoiceChecked",
        "DraftApproved",
        "DraftRejected",
        "DraftScheduled",
        "DraftPublished",
        "AgentCheckpointSaved",
        "AgentRunPaused",
        "AgentRunResumed",
        "AgentRunCompleted",
        "AgentRunFailed",
        "DocumentIngested",
        "DocumentChunked",
        "DocumentEntitiesExtracted",
    ] {
        assert!(types.contains(expected), "{expected} missing: {types:?}");
    }
}

/// A new user's first research search: the demo's Python FAQ answers are embedded by the
/// worker in the background, and a question in other words finds the answer to it.
async fn the_demos_first_search_finds_the_faq_answer_to_a_question(backend: Backend) {
    let (app, first, _) = spawn_app_with_demo_and(backend, |layer| {
        layer.research.embedders = Some(vec!["wordllama-l2-supercat-256".to_owned()]);
    })
    .await;
    let DemoOutcome::Loaded(summary) = first else {
        panic!("the demo did not load");
    };
    assert!(summary.documents >= 174, "{summary:?}");
    let token = app.token(DEMO_TENANT, &[plasma_gateway::Role::Viewer]);
    let body = serde_json::json!({
        "query": "How do I turn my script into a program that runs without Python installed?",
        "mode": "vector_lexical",
        "k": 3,
    });
    let expected = "How can I create a stand-alone binary from a Python script?";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let response = app.post_json("/v1/research/search", &token, &body).await;
        let answer = crate::helpers::accepted(response, 200).await;
        let titles: Vec<&str> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        if titles.contains(&expected) {
            assert!(answer["results"][0]["source"]
                .as_str()
                .unwrap()
                .starts_with("https://docs.python.org/3.11/faq/"));
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not found in time: {titles:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

plasma_testkit::on_both_backends!(
    the_demo_loads_once_and_its_stats_show_the_spike,
    the_demos_first_search_finds_the_faq_answer_to_a_question,
);
