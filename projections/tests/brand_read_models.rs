//! Brands, mentions and daily stats read models, on both backends.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use plasma_adapters::VaderScorer;
use plasma_commands::{CommandHandler, MentionInput};
use plasma_domain::brand::{
    Brand, BrandCommand, MentionCommand, MentionEvent, MentionServices, SentimentLabel,
    VoiceGuidelines,
};
use plasma_domain::ids::BrandId;
use plasma_domain::AggregateId;
use plasma_projections::models::{BrandStatsProjection, BrandsProjection, MentionsProjection};
use plasma_projections::{
    rebuild, Cursor, MentionFilter, PageRequest, ProjectionError, RunnerOptions,
};
use support::{context, stores, tenant, Stores};
use uuid::Uuid;

plasma_testkit::on_both_backends!(
    stores;
    brands_show_their_current_keywords_competitors_and_archive_state,
    mentions_are_listed_newest_first_and_filter_by_time_sentiment_and_source,
    keyset_pagination_visits_every_mention_exactly_once,
    daily_stats_add_up_volume_sentiment_and_share_of_voice,
    a_flagged_mention_shows_as_flagged,
    another_tenant_sees_none_of_it,
    a_malformed_cursor_is_refused,
    a_rebuild_swaps_in_while_queries_keep_answering_and_the_live_runner_follows,
);

fn services() -> MentionServices {
    MentionServices {
        scorer: Arc::new(VaderScorer::new()),
    }
}

fn day(d: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, d, 12, 0, 0).single().unwrap()
}

async fn brand(handler: &CommandHandler, tenant_name: &str) -> BrandId {
    let id = BrandId::from_uuid(Uuid::now_v7());
    handler
        .execute::<Brand>(
            &context(tenant_name),
            id.as_uuid(),
            BrandCommand::Register {
                name: "Acme".into(),
                keywords: vec!["acme".into()],
                competitors: vec!["Globex".into(), "Initech".into()],
                voice: VoiceGuidelines::default(),
                at: day(1),
            },
            &(),
        )
        .await
        .unwrap();
    id
}

/// `n` mentions over days 1..=5: every third positive, every third naming Globex, and
/// alternating sources.
fn mentions(n: usize) -> Vec<MentionInput> {
    (0..n)
        .map(|i| MentionInput {
            source: if i % 2 == 0 { "twitter" } else { "news" }.into(),
            external_id: format!("m{i}"),
            author: format!("@a{i}"),
            text: match i % 3 {
                0 => format!("I love Acme, wonderful product #{i}"),
                1 => format!("Acme is awful compared to Globex #{i}"),
                _ => format!("Acme opened a store on Main Street #{i}"),
            },
            url: None,
            published_at: day(1 + (i % 5) as u32) + chrono::Duration::minutes(i as i64),
            language: None,
        })
        .collect()
}

async fn ingest(stores: &Stores, tenant_name: &str, n: usize) -> BrandId {
    let handler = CommandHandler::new(stores.events.clone());
    let id = brand(&handler, tenant_name).await;
    handler
        .ingest_mentions(&context(tenant_name), id, mentions(n), day(6), &services())
        .await
        .unwrap();
    for projection in plasma_projections::all_projections() {
        stores.catch_up(projection).await;
    }
    id
}

async fn brands_show_their_current_keywords_competitors_and_archive_state(stores: Stores) {
    let handler = CommandHandler::new(stores.events.clone());
    let id = brand(&handler, "acme").await;
    for command in [
        BrandCommand::ChangeKeywords {
            keywords: vec!["acme".into(), "anvil".into()],
            at: day(2),
        },
        BrandCommand::ChangeCompetitors {
            competitors: vec!["Hooli".into()],
            at: day(2),
        },
        BrandCommand::Archive { at: day(3) },
    ] {
        handler
            .execute::<Brand>(&context("acme"), id.as_uuid(), command, &())
            .await
            .unwrap();
    }
    stores.catch_up(Arc::new(BrandsProjection)).await;
    let view = stores
        .queries()
        .brand(&tenant("acme"), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.keywords, vec!["acme", "anvil"]);
    assert_eq!(view.competitors, vec!["Hooli"]);
    assert!(view.archived);
    assert_eq!(view.version, 4);
    assert_eq!(
        stores.queries().brands(&tenant("acme")).await.unwrap(),
        vec![view]
    );
}

async fn mentions_are_listed_newest_first_and_filter_by_time_sentiment_and_source(stores: Stores) {
    let id = ingest(&stores, "acme", 30).await;
    let q = stores.queries();
    let all = q
        .mentions(
            &tenant("acme"),
            id,
            &MentionFilter::default(),
            &PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 30);
    assert!(all.next_cursor.is_none());
    assert!(all
        .items
        .windows(2)
        .all(|w| w[0].published_at >= w[1].published_at));

    let filter = MentionFilter {
        published_from: Some(day(2)),
        published_to: Some(day(4)),
        sentiment: Some(SentimentLabel::Positive),
        source: Some("TWITTER".into()),
    };
    let page = q
        .mentions(
            &tenant("acme"),
            id,
            &filter,
            &PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    let expected: Vec<String> = all
        .items
        .iter()
        .filter(|m| m.published_at >= day(2) && m.published_at < day(4))
        .filter(|m| m.sentiment == "positive" && m.source == "twitter")
        .map(|m| m.external_id.clone())
        .collect();
    assert!(
        !expected.is_empty(),
        "the fixture should match some mentions"
    );
    let got: Vec<String> = page.items.iter().map(|m| m.external_id.clone()).collect();
    assert_eq!(got, expected);
}

async fn keyset_pagination_visits_every_mention_exactly_once(stores: Stores) {
    let id = ingest(&stores, "acme", 53).await;
    let q = stores.queries();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = q
            .mentions(
                &tenant("acme"),
                id,
                &MentionFilter::default(),
                &PageRequest { limit: 10, after },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|m| m.mention_id));
        match page.next_cursor {
            Some(cursor) => after = Some(Cursor::parse(&cursor).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 53);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 53);
}

async fn daily_stats_add_up_volume_sentiment_and_share_of_voice(stores: Stores) {
    let id = ingest(&stores, "acme", 40).await;
    // The expectation comes from the recorded events themselves, not from re-scoring.
    let mut expected: BTreeMap<String, (i64, i64, i64, i64, i64)> = BTreeMap::new();
    for event in stores.events.read_all(0, 1000).await.unwrap() {
        if let Ok(MentionEvent::MentionIngested(m)) = event.decode::<MentionEvent>() {
            let e = expected
                .entry(m.published_at.format("%Y-%m-%d").to_string())
                .or_default();
            e.0 += 1;
            match m.sentiment.label {
                SentimentLabel::Positive => e.1 += 1,
                SentimentLabel::Neutral => e.2 += 1,
                SentimentLabel::Negative => e.3 += 1,
            }
            e.4 += m.competitors_mentioned.len() as i64;
        }
    }
    let stats = stores
        .queries()
        .brand_stats(
            &tenant("acme"),
            id,
            NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stats.days.len(), 5);
    for d in &stats.days {
        let (volume, pos, neu, neg, competitor) = expected[&d.day];
        assert_eq!(
            (d.volume, d.positive, d.neutral, d.negative),
            (volume, pos, neu, neg)
        );
        assert_eq!(d.competitor_mentions.values().sum::<i64>(), competitor);
        let sov = volume as f64 / (volume + competitor) as f64;
        assert!(
            (d.share_of_voice - sov).abs() < 1e-9,
            "{} vs {sov}",
            d.share_of_voice
        );
        let net = (pos - neg) as f64 / volume as f64;
        assert!((d.net_sentiment - net).abs() < 1e-9);
    }
    assert_eq!(stats.total.volume, 40);
    assert!(stats.total.competitor_mentions["Globex"] > 0);
    assert!(stats.total.positive > 0 && stats.total.negative > 0);
}

async fn a_flagged_mention_shows_as_flagged(stores: Stores) {
    let id = ingest(&stores, "acme", 3).await;
    let q = stores.queries();
    let page = q
        .mentions(
            &tenant("acme"),
            id,
            &MentionFilter::default(),
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    let target = page.items[1].mention_id;
    CommandHandler::new(stores.events.clone())
        .execute::<plasma_domain::brand::Mention>(
            &context("acme"),
            target,
            MentionCommand::Flag {
                reason: "spam".into(),
                at: day(7),
            },
            &services(),
        )
        .await
        .unwrap();
    stores.catch_up(Arc::new(MentionsProjection)).await;
    let page = q
        .mentions(
            &tenant("acme"),
            id,
            &MentionFilter::default(),
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    let flagged: Vec<Uuid> = page
        .items
        .iter()
        .filter(|m| m.flagged)
        .map(|m| m.mention_id)
        .collect();
    assert_eq!(flagged, vec![target]);
}

async fn another_tenant_sees_none_of_it(stores: Stores) {
    let id = ingest(&stores, "tenant-a", 10).await;
    let q = stores.queries();
    let b = tenant("tenant-b");
    assert!(q.brand(&b, id).await.unwrap().is_none());
    assert!(q.brands(&b).await.unwrap().is_empty());
    let page = q
        .mentions(
            &b,
            id,
            &MentionFilter::default(),
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
    let stats = q
        .brand_stats(
            &b,
            id,
            NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stats.total.volume, 0);
}

async fn a_malformed_cursor_is_refused(_stores: Stores) {
    for bad in [
        "not-a-cursor",
        "12.not-a-uuid",
        "x.00000000-0000-0000-0000-000000000000",
        "",
    ] {
        let err = Cursor::parse(bad).unwrap_err();
        assert!(
            matches!(err, ProjectionError::BadCursor(_)),
            "{bad:?}: {err:?}"
        );
    }
    assert!(Cursor::parse("1700000000000000.00000000000000000000000000000000").is_ok());
}

async fn a_rebuild_swaps_in_while_queries_keep_answering_and_the_live_runner_follows(
    stores: Stores,
) {
    let id = ingest(&stores, "acme", 600).await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // A live runner keeps following the log during and after the swap.
    let live = stores.runner(Arc::new(MentionsProjection)).await;
    let live = tokio::spawn(live.run(shutdown));
    // Queries keep being answered from the live tables throughout.
    let reader = {
        let q = stores.queries();
        tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..200 {
                let page = q
                    .mentions(
                        &tenant("acme"),
                        id,
                        &MentionFilter::default(),
                        &PageRequest {
                            limit: 5,
                            after: None,
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    page.items.len(),
                    5,
                    "a query saw an empty read model mid-rebuild"
                );
                answered += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            answered
        })
    };
    let progress = rebuild(
        &stores.read,
        &stores.events,
        Arc::new(MentionsProjection),
        RunnerOptions {
            batch_size: 50,
            ..RunnerOptions::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(progress.position, stores.events.head().await.unwrap());
    assert_eq!(reader.await.unwrap(), 200);

    // New events after the swap reach the swapped-in tables through the live runner.
    let handler = CommandHandler::new(stores.events.clone());
    let mut more = mentions(610);
    more.drain(..600);
    handler
        .ingest_mentions(&context("acme"), id, more, day(8), &services())
        .await
        .unwrap();
    let head = stores.events.head().await.unwrap();
    let q = stores.queries();
    assert!(q
        .wait_for(&["mentions"], head, Duration::from_secs(10))
        .await
        .unwrap());
    stop.send(true).unwrap();
    live.await.unwrap().unwrap();
    let page = q
        .mentions(
            &tenant("acme"),
            id,
            &MentionFilter::default(),
            &PageRequest {
                limit: 500,
                after: None,
            },
        )
        .await
        .unwrap();
    let mut total = page.items.len();
    let mut after = page.next_cursor;
    while let Some(cursor) = after {
        let page = q
            .mentions(
                &tenant("acme"),
                id,
                &MentionFilter::default(),
                &PageRequest {
                    limit: 500,
                    after: Some(Cursor::parse(&cursor).unwrap()),
                },
            )
            .await
            .unwrap();
        total += page.items.len();
        after = page.next_cursor;
    }
    assert_eq!(
        total, 610,
        "every mention exactly once after rebuild + live follow-up"
    );
    let _ = BrandStatsProjection;
}

mod index_hygiene {
    use super::*;

    /// Index names of `table` on SQLite.
    async fn indexes(stores: &Stores, table: &str) -> Vec<String> {
        let plasma_projections::ReadStore::Sqlite { reader, .. } = &stores.read else {
            unreachable!()
        };
        sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
        )
        .bind(table)
        .fetch_all(reader)
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runner_started_after_a_rebuild_adds_no_second_set_of_indexes() {
        let stores = Stores::sqlite().await;
        ingest(&stores, "acme", 5).await;
        rebuild(
            &stores.read,
            &stores.events,
            Arc::new(MentionsProjection),
            RunnerOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
        stores.catch_up(Arc::new(MentionsProjection)).await;
        let names = indexes(&stores, "rm_mentions").await;
        assert_eq!(names.len(), 1, "{names:?}");
    }
}

mod planner_statistics {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runner_refreshes_postgres_statistics_after_a_large_catch_up() {
        let stores = Stores::postgres().await;
        let handler = CommandHandler::new(stores.events.clone());
        let id = brand(&handler, "acme").await;
        handler
            .ingest_mentions(&context("acme"), id, mentions(40), day(6), &services())
            .await
            .unwrap();
        let mut runner = plasma_projections::ProjectionRunner::start(
            stores.read.clone(),
            Arc::new(MentionsProjection),
            plasma_projections::StoreSubscription::new(stores.events.clone()),
            RunnerOptions {
                batch_size: 10,
                analyze_every: 25,
                ..RunnerOptions::default()
            },
        )
        .await
        .unwrap();
        plasma_projections::catch_up(&mut runner).await.unwrap();
        let plasma_projections::ReadStore::Postgres { pool } = &stores.read else {
            unreachable!()
        };
        let analyzed: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'rm_mentions'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(analyzed.is_some(), "rm_mentions was never analyzed");
    }
}
