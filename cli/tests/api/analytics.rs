//! Brand analytics over a small stream with known answers: timelines, share of voice, authors
//! (keyset paged), sources and trending terms; bad ranges are refused.

use serde_json::{json, Value};

use crate::helpers::{accepted, problem_with_field, spawn_app, Backend};

fn mention(id: &str, author: &str, source: &str, text: &str, at: &str) -> Value {
    json!({ "source": source, "external_id": id, "author": author, "text": text, "published_at": at })
}

async fn analytics_answer_what_the_stream_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let brand = brand["aggregate_id"].as_str().unwrap().to_owned();
    let mut mentions = vec![
        mention(
            "a1",
            "@ana",
            "twitter",
            "Acme rocket #launch was fun",
            "2026-11-01T09:10:00Z",
        ),
        mention(
            "a2",
            "@ana",
            "twitter",
            "Acme rocket again #launch",
            "2026-11-01T09:40:00Z",
        ),
        mention(
            "a3",
            "@ana",
            "twitter",
            "Acme rocket third time",
            "2026-11-01T10:05:00Z",
        ),
        mention(
            "b1",
            "@bob",
            "news",
            "Acme and Globex rocket compared",
            "2026-11-01T11:00:00Z",
        ),
    ];
    for i in 0..6 {
        let competitor = if i < 2 { " unlike Initech" } else { "" };
        mentions.push(mention(
            &format!("r{i}"),
            &format!("@user{i}"),
            "news",
            &format!("Acme battery fire #recall{competitor}"),
            &format!("2026-11-02T0{i}:30:00Z"),
        ));
    }
    let last = app.ingest(&token, &brand, mentions).await["last_position"]
        .as_i64()
        .unwrap();
    let base = format!("/v1/brands/{brand}");
    let range = "from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z";

    let days = app
        .read(&format!("{base}/timeline?{range}"), &token, last)
        .await;
    let points = days["points"].as_array().unwrap();
    assert_eq!(days["interval"], "day");
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["start"], "2026-11-01T00:00:00Z");
    assert_eq!(
        (points[0]["volume"].as_i64(), points[1]["volume"].as_i64()),
        (Some(4), Some(6))
    );
    let hours = app
        .read(
            &format!("{base}/timeline?{range}&interval=hour"),
            &token,
            last,
        )
        .await;
    assert_eq!(hours["points"].as_array().unwrap().len(), 3 + 6);
    assert_eq!(hours["points"][0]["volume"], 2);

    let voice = app
        .read(&format!("{base}/share-of-voice?{range}"), &token, last)
        .await;
    assert_eq!(voice[0]["competitor_mentions"]["Globex"], 1);
    assert_eq!(voice[0]["share_against"]["Globex"], 0.8);
    assert_eq!(voice[1]["competitor_mentions"]["Initech"], 2);
    assert_eq!(voice[1]["share_of_voice"], 0.75);

    let authors = app
        .read(&format!("{base}/authors?{range}&limit=1"), &token, last)
        .await;
    assert_eq!(authors["unique_authors"], 8);
    assert_eq!(authors["mentions"], 10);
    assert_eq!(authors["top"][0]["value"], "@ana");
    assert_eq!(authors["top"][0]["mentions"], 3);
    let cursor = authors["next_cursor"].as_str().unwrap();
    let next = app
        .read(
            &format!("{base}/authors?{range}&limit=1&after={cursor}"),
            &token,
            last,
        )
        .await;
    assert_eq!(next["top"][0]["value"], "@bob");

    let sources = app
        .read(&format!("{base}/sources?{range}"), &token, last)
        .await;
    assert_eq!(sources[0]["value"], "news");
    assert_eq!(sources[0]["mentions"], 7);
    assert_eq!(sources[1]["value"], "twitter");

    let window = "from=2026-11-02T00:00:00Z&to=2026-11-03T00:00:00Z&baseline_days=1";
    let trending = app
        .read(&format!("{base}/trending?{window}"), &token, last)
        .await;
    let terms: Vec<&str> = trending
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["term"].as_str().unwrap())
        .collect();
    // New today: first, ties by term. The brand's own name grew 4 → 6: far behind.
    assert_eq!(terms[..3], ["#recall", "battery", "fire"], "{trending:#}");
    assert_eq!(terms[3], "acme", "{trending:#}");
    assert!(trending[3]["score"].as_f64().unwrap() < 1.0);
    assert!(
        !terms.contains(&"rocket"),
        "fell, not trending: {trending:#}"
    );
    let tags = app
        .read(
            &format!("{base}/trending?{window}&hashtags=true"),
            &token,
            last,
        )
        .await;
    assert_eq!(tags[0]["term"], "#recall");
    assert_eq!(tags[0]["hashtag"], true);

    let backwards = app
        .get(
            &format!("{base}/timeline?from=2026-11-03T00:00:00Z&to=2026-11-01T00:00:00Z"),
            &token,
        )
        .await;
    // Every window the schema allows is answered: a backwards one is empty...
    assert_eq!(backwards.status(), 200);
    let backwards: serde_json::Value = backwards.json().await.unwrap();
    assert_eq!(backwards["points"], serde_json::json!([]));
    let too_long = app
        .get(
            &format!(
                "{base}/timeline?from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&interval=hour"
            ),
            &token,
        )
        .await;
    // ...and a longer one keeps its last 31 days (hourly), as the answer says.
    assert_eq!(too_long.status(), 200);
    let too_long: serde_json::Value = too_long.json().await.unwrap();
    assert_eq!(too_long["from"], "2026-10-01T00:00:00Z");
    assert_eq!(too_long["to"], "2026-11-01T00:00:00Z");
    let bad_limit = app.get(&format!("{base}/authors?limit=0"), &token).await;
    problem_with_field(bad_limit, 400, "invalid_query", "limit").await;
    let bad_cursor = app.get(&format!("{base}/authors?after=zz"), &token).await;
    assert_eq!(bad_cursor.status(), 400);
    let unknown = app
        .get(
            "/v1/brands/00000000-0000-0000-0000-000000000000/sources",
            &token,
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let _ = accepted;
}

plasma_testkit::on_both_backends!(analytics_answer_what_the_stream_holds,);
