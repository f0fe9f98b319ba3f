//! The event store's contract, checked on both backends against real databases.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use plasma_adapters::VaderScorer;
use plasma_commands::{
    BulkIngestError, CommandContext, CommandError, CommandHandler, EventStore, MentionInput,
    StoreConfig,
};
use plasma_domain::brand::{
    Brand, BrandCommand, BrandError, Mention, MentionCommand, MentionServices, VoiceGuidelines,
};
use plasma_domain::ids::{BrandId, CommandId, CorrelationId};
use plasma_domain::{AggregateId, TenantId};
use plasma_testkit::Backend;
use uuid::Uuid;

/// A store plus whatever keeps its database alive for the test. Tests take it as
/// `Fixture { _guard, store }`: bindings drop in reverse order, so the store closes before the
/// guard removes its database.
struct Fixture {
    store: EventStore,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn fixture(backend: Backend) -> Fixture {
    match backend {
        Backend::Sqlite => {
            let dir = plasma_testkit::temp_dir();
            let path = dir.path().join("events.db");
            let store = EventStore::open(&StoreConfig::Sqlite { path })
                .await
                .unwrap();
            Fixture {
                store,
                _guard: Box::new(dir),
            }
        }
        Backend::Postgres => {
            let pg = plasma_testkit::TestPg::start().await;
            let store = EventStore::open(&StoreConfig::Postgres {
                url: pg.url().to_owned(),
                max_connections: 16,
            })
            .await
            .unwrap();
            Fixture {
                store,
                _guard: Box::new(pg),
            }
        }
    }
}

plasma_testkit::on_both_backends!(
    fixture;
    a_command_appends_events_with_full_metadata,
    a_retried_command_id_returns_the_first_receipt_and_appends_nothing,
    concurrent_commands_on_one_aggregate_are_retried_until_all_apply,
    concurrent_appends_get_gap_free_positions_and_readers_never_skip_one,
    commands_appending_together_each_keep_their_own_receipt_and_answer,
    bulk_ingest_is_one_transaction_with_contiguous_positions,
    ingesting_the_same_mentions_again_yields_no_new_events,
    one_bad_mention_refuses_the_whole_bulk_and_writes_nothing,
    a_nul_character_is_refused_before_it_could_wedge_a_projection,
    bulk_ingest_into_an_unknown_brand_is_refused,
    a_tenant_never_sees_another_tenants_stream,
    a_domain_error_writes_nothing,
);

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn context(tenant_name: &str) -> CommandContext {
    CommandContext::new(
        tenant(tenant_name),
        CommandId::from_uuid(Uuid::now_v7()),
        None,
    )
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 9, 30, 0).single().unwrap()
}

fn services() -> MentionServices {
    MentionServices {
        scorer: Arc::new(VaderScorer::new()),
    }
}

fn register(name: &str) -> BrandCommand {
    BrandCommand::Register {
        name: name.into(),
        keywords: vec![name.to_lowercase()],
        competitors: vec!["Globex".into(), "Initech".into()],
        voice: VoiceGuidelines::default(),
        at: at(),
    }
}

async fn new_brand(handler: &CommandHandler, tenant_name: &str) -> BrandId {
    let id = BrandId::from_uuid(Uuid::now_v7());
    handler
        .execute::<Brand>(&context(tenant_name), id.as_uuid(), register("Acme"), &())
        .await
        .unwrap();
    id
}

fn mentions(n: usize, prefix: &str) -> Vec<MentionInput> {
    (0..n)
        .map(|i| MentionInput {
            source: "twitter".into(),
            external_id: format!("{prefix}-{i}"),
            author: format!("@user{i}"),
            text: if i % 3 == 0 {
                format!("I love Acme, so much better than Globex #{i}")
            } else {
                format!("Acme support was terrible today #{i}")
            },
            url: Some(format!("https://social.example/{prefix}/{i}")),
            published_at: at(),
            language: Some("en".into()),
        })
        .collect()
}

async fn a_command_appends_events_with_full_metadata(Fixture { _guard, store }: Fixture) {
    let handler = CommandHandler::new(store.clone());
    let ctx = CommandContext::new(
        tenant("acme"),
        CommandId::from_uuid(Uuid::now_v7()),
        Some(CorrelationId::from_uuid(Uuid::now_v7())),
    );
    let id = Uuid::now_v7();
    let receipt = handler
        .execute::<Brand>(&ctx, id, register("Acme"), &())
        .await
        .unwrap();
    assert_eq!(
        (
            receipt.version,
            receipt.last_position,
            receipt.events_appended
        ),
        (1, Some(1), 1)
    );

    let events = store.read_all(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.position, 1);
    assert_eq!(event.event_type, "BrandRegistered");
    assert_eq!(event.event_version, 1);
    assert_eq!(event.aggregate_type, "Brand");
    assert_eq!(event.aggregate_id, id);
    assert_eq!(event.sequence, 1);
    assert_eq!(event.tenant, tenant("acme"));
    assert_eq!(event.event_id.get_version_num(), 7, "event ids are UUIDv7");
    assert_eq!(event.command_id, ctx.command_id.as_uuid());
    assert_eq!(event.correlation_id, ctx.correlation_id.as_uuid());
    assert_eq!(event.causation_id, ctx.causation_id);
    assert!((Utc::now() - event.recorded_at).num_seconds().abs() < 60);
    let decoded: plasma_domain::brand::BrandEvent = event.decode().unwrap();
    assert_eq!(decoded.clone(), decoded);
}

async fn a_retried_command_id_returns_the_first_receipt_and_appends_nothing(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let ctx = context("acme");
    let id = Uuid::now_v7();
    let first = handler
        .execute::<Brand>(&ctx, id, register("Acme"), &())
        .await
        .unwrap();
    // The same command id with the same command (its time aside) returns the first outcome.
    let again = handler
        .execute::<Brand>(&ctx, id, register("Acme"), &())
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.version, again.last_position),
        (first.version, first.last_position)
    );
    assert_eq!(store.head().await.unwrap(), 1);
    // The same command id for a different request is refused, and changes nothing.
    let reused = handler
        .execute::<Brand>(
            &ctx,
            id,
            BrandCommand::ChangeKeywords {
                keywords: vec!["other".into()],
                at: at(),
            },
            &(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(reused, CommandError::IdempotencyKeyReused),
        "{reused:?}"
    );
    assert_eq!(store.head().await.unwrap(), 1);

    // Bulk ingest too.
    let brand = new_brand(&handler, "acme").await;
    let bulk_ctx = context("acme");
    let receipt = handler
        .ingest_mentions(&bulk_ctx, brand, mentions(20, "r"), at(), &services())
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let replay = handler
        .ingest_mentions(&bulk_ctx, brand, mentions(20, "r"), at(), &services())
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.ingested, receipt.ingested);
    assert_eq!(replay.last_position, receipt.last_position);
    let reused = handler
        .ingest_mentions(&bulk_ctx, brand, mentions(50, "other"), at(), &services())
        .await
        .unwrap_err();
    assert!(
        matches!(reused, CommandError::IdempotencyKeyReused),
        "{reused:?}"
    );
    assert_eq!(store.head().await.unwrap(), head);
}

async fn concurrent_commands_on_one_aggregate_are_retried_until_all_apply(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    let writers = 6;
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let handler = handler.clone();
            tokio::spawn(async move {
                handler
                    .execute::<Brand>(
                        &context("acme"),
                        brand.as_uuid(),
                        BrandCommand::ChangeKeywords {
                            keywords: vec![format!("keyword-{i}")],
                            at: at(),
                        },
                        &(),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stream = store
        .load_stream(&tenant("acme"), "Brand", brand.as_uuid())
        .await
        .unwrap();
    assert_eq!(
        stream.version(),
        1 + writers,
        "every concurrent change applied once"
    );
    let sequences: Vec<i64> = stream.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=1 + writers).collect::<Vec<_>>());
}

async fn concurrent_appends_get_gap_free_positions_and_readers_never_skip_one(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // A reader following the log the way a projection does: it must only ever see the next
    // position after the last one it saw.
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut after = 0;
            let mut seen = 0u64;
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let events = store.read_all(after, 1000).await.unwrap();
                for event in &events {
                    assert_eq!(event.position, after + 1, "reader skipped past a position");
                    after = event.position;
                    seen += 1;
                }
                if done && events.is_empty() {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let handler = handler.clone();
            tokio::spawn(async move {
                for batch in 0..5 {
                    handler
                        .ingest_mentions(
                            &context("acme"),
                            brand,
                            mentions(1 + (w * 7 + batch) % 40, &format!("w{w}b{batch}")),
                            at(),
                            &services(),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(seen as i64, head, "the reader saw every event exactly once");
    let all = store.read_all(0, 100_000).await.unwrap();
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>());
}

/// Many commands at once (PostgreSQL commits them in groups): each receipt names where its
/// own events landed, a command id sent twice at once appends once and both get its receipt,
/// and a command refused by its aggregate changes nothing for the others.
async fn commands_appending_together_each_keep_their_own_receipt_and_answer(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let taken = new_brand(&handler, "acme").await;
    let ids: Vec<(BrandId, CommandContext)> = (0..40)
        .map(|_| (BrandId::from_uuid(Uuid::now_v7()), context("acme")))
        .collect();
    let mut tasks = Vec::new();
    for (i, (brand, ctx)) in ids.iter().enumerate() {
        // Every fifth command is sent twice at once, under the same id.
        let copies = if i % 5 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let (handler, brand, ctx) = (handler.clone(), *brand, ctx.clone());
            tasks.push(tokio::spawn(async move {
                let receipt = handler
                    .execute::<Brand>(&ctx, brand.as_uuid(), register("Acme"), &())
                    .await
                    .unwrap();
                (brand, receipt)
            }));
        }
    }
    // And a command its aggregate refuses (registering a brand twice), in the same rush.
    let refused = {
        let handler = handler.clone();
        tokio::spawn(async move {
            handler
                .execute::<Brand>(&context("acme"), taken.as_uuid(), register("Again"), &())
                .await
        })
    };
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.unwrap());
    }
    assert!(matches!(
        refused.await.unwrap(),
        Err(CommandError::Domain(_))
    ));
    for (brand, receipt) in &receipts {
        let stream = store
            .load_stream(&tenant("acme"), "Brand", brand.as_uuid())
            .await
            .unwrap();
        assert_eq!(stream.version(), 1, "registered once");
        assert_eq!(receipt.version, 1);
        assert_eq!(
            receipt.last_position,
            stream.last_position(),
            "the receipt names its own event's position"
        );
    }
    let twice: Vec<_> = receipts
        .iter()
        .filter(|(b, _)| receipts.iter().filter(|(o, _)| o == b).count() == 2)
        .collect();
    assert_eq!(twice.len(), 16, "8 commands sent twice");
    let head = store.head().await.unwrap();
    assert_eq!(head, 41, "one event per brand, nothing doubled");
    let positions: Vec<i64> = store
        .read_all(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=41).collect::<Vec<_>>());
}

async fn bulk_ingest_is_one_transaction_with_contiguous_positions(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    let ctx = context("acme");
    let receipt = handler
        .ingest_mentions(&ctx, brand, mentions(1500, "bulk"), at(), &services())
        .await
        .unwrap();
    assert_eq!(
        (receipt.requested, receipt.ingested, receipt.duplicates),
        (1500, 1500, 0)
    );
    assert_eq!(
        (receipt.first_position, receipt.last_position),
        (Some(2), Some(1501))
    );
    let events = store.read_all(1, 10_000).await.unwrap();
    assert_eq!(events.len(), 1500);
    assert!(events
        .iter()
        .all(|e| e.command_id == ctx.command_id.as_uuid()));
    let ids: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 1500, "every event has its own id");

    // Sentiment and competitors were decided at ingest and recorded.
    let first: plasma_domain::brand::MentionEvent = events[0].decode().unwrap();
    let plasma_domain::brand::MentionEvent::MentionIngested(m) = first else {
        panic!("expected an ingest, got {first:?}");
    };
    assert_eq!(m.scorer.name, "vader");
    assert!(m.sentiment.score_millis > 0, "{:?}", m.sentiment);
    assert_eq!(m.competitors_mentioned, vec!["Globex".to_owned()]);
}

async fn ingesting_the_same_mentions_again_yields_no_new_events(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    handler
        .ingest_mentions(
            &context("acme"),
            brand,
            mentions(30, "m"),
            at(),
            &services(),
        )
        .await
        .unwrap();
    let head = store.head().await.unwrap();

    // The same 30, plus 10 new, plus a repeat inside the request.
    let mut again = mentions(40, "m");
    again.push(again[35].clone());
    let receipt = handler
        .ingest_mentions(&context("acme"), brand, again, at(), &services())
        .await
        .unwrap();
    assert_eq!(
        (receipt.requested, receipt.ingested, receipt.duplicates),
        (41, 10, 31)
    );
    assert_eq!(store.head().await.unwrap(), head + 10);

    // A single ingest of an existing mention is a no-op too.
    let existing = &mentions(1, "m")[0];
    let command = MentionCommand::Ingest(plasma_domain::brand::IngestMention {
        brand_id: brand,
        mention: MentionInput {
            source: " TWITTER ".into(),
            external_id: existing.external_id.clone(),
            author: existing.author.clone(),
            text: existing.text.clone(),
            url: None,
            published_at: existing.published_at,
            language: None,
        },
        competitors: vec![],
        at: at(),
    });
    let id = match &command {
        MentionCommand::Ingest(ingest) => ingest.mention_id(&tenant("acme")).as_uuid(),
        _ => unreachable!(),
    };
    let receipt = handler
        .execute::<Mention>(&context("acme"), id, command, &services())
        .await
        .unwrap();
    assert_eq!((receipt.events_appended, receipt.version), (0, 1));
    assert_eq!(store.head().await.unwrap(), head + 10);
}

async fn one_bad_mention_refuses_the_whole_bulk_and_writes_nothing(
    Fixture { _guard, store }: Fixture,
) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    let head = store.head().await.unwrap();
    let mut batch = mentions(10, "bad");
    batch[7].text = "   ".into();
    let err = handler
        .ingest_mentions(&context("acme"), brand, batch, at(), &services())
        .await
        .unwrap_err();
    match err {
        CommandError::Domain(BulkIngestError::InvalidMention { index, error }) => {
            assert_eq!(index, 7);
            assert!(error.to_string().contains("text"), "{error}");
        }
        other => panic!("expected an invalid mention, got {other:?}"),
    }
    assert_eq!(store.head().await.unwrap(), head);
}

async fn a_nul_character_is_refused_before_it_could_wedge_a_projection(
    Fixture { _guard, store }: Fixture,
) {
    // JSON allows "\u0000"; PostgreSQL text columns do not, so a read model could never apply it.
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    let head = store.head().await.unwrap();
    let mut batch = mentions(3, "nul");
    batch[2].text = "Acme\u{0}rocks".into();
    let err = handler
        .ingest_mentions(&context("acme"), brand, batch, at(), &services())
        .await
        .unwrap_err();
    match err {
        CommandError::Domain(BulkIngestError::InvalidMention { index, error }) => {
            assert_eq!(index, 2);
            assert_eq!(
                error,
                plasma_domain::brand::MentionError::Invalid(
                    plasma_domain::text::TextError::NulCharacter { field: "text" }
                )
            );
        }
        other => panic!("expected an invalid mention, got {other:?}"),
    }
    assert_eq!(store.head().await.unwrap(), head);
}

async fn bulk_ingest_into_an_unknown_brand_is_refused(Fixture { _guard, store }: Fixture) {
    let handler = CommandHandler::new(store.clone());
    let err = handler
        .ingest_mentions(
            &context("acme"),
            BrandId::from_uuid(Uuid::now_v7()),
            mentions(3, "x"),
            at(),
            &services(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(BulkIngestError::BrandNotFound)),
        "{err:?}"
    );
    assert_eq!(store.head().await.unwrap(), 0);
}

async fn a_tenant_never_sees_another_tenants_stream(Fixture { _guard, store }: Fixture) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "tenant-a").await;
    let other = store
        .load_stream(&tenant("tenant-b"), "Brand", brand.as_uuid())
        .await
        .unwrap();
    assert!(other.events.is_empty());
    // Tenant B acting on tenant A's id meets an empty aggregate, not A's brand.
    let err = handler
        .execute::<Brand>(
            &context("tenant-b"),
            brand.as_uuid(),
            BrandCommand::Archive { at: at() },
            &(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(BrandError::NotFound)),
        "{err:?}"
    );
    // And B ingesting into A's brand finds no brand.
    let err = handler
        .ingest_mentions(
            &context("tenant-b"),
            brand,
            mentions(1, "x"),
            at(),
            &services(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(BulkIngestError::BrandNotFound)),
        "{err:?}"
    );
}

async fn a_domain_error_writes_nothing(Fixture { _guard, store }: Fixture) {
    let handler = CommandHandler::new(store.clone());
    let brand = new_brand(&handler, "acme").await;
    let err = handler
        .execute::<Brand>(&context("acme"), brand.as_uuid(), register("Acme"), &())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(BrandError::AlreadyRegistered)
    ));
    assert_eq!(store.head().await.unwrap(), 1);
}
