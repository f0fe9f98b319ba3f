//! The drafts, agent runs and documents read models, fed by real commands through the event
//! store, on SQLite and on PostgreSQL: every test body is written once and run on both.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use plasma_commands::{
    CommandContext, CommandHandler, CommandReceipt, EventStore, RecordedEvent, StoreConfig,
};
use plasma_domain::agent::{AgentRun, AgentRunCommand, AgentRunStatus, ResumeFrom};
use plasma_domain::brand::VoiceGuidelines;
use plasma_domain::content::{
    Channel, Draft, DraftCommand, DraftServices, DraftStatus, GeneratorInfo,
};
use plasma_domain::ids::{BrandId, CommandId, DocumentId, DraftId, RunId};
use plasma_domain::research::{
    Document, DocumentCommand, DocumentStatus, Entity, ExtractorInfo, Relation,
};
use plasma_domain::{AggregateId, TenantId};
use plasma_projections::{
    all_projections, catch_up, projection_named, rebuild, AgentCheckpointView, AgentRunView,
    AgentRunsProjection, DocumentEntityView, DocumentView, DocumentsProjection, DraftFilter,
    DraftView, DraftsProjection, PageRequest, Projection, ProjectionError, ProjectionRunner,
    ReadModels, ReadStore, ReadStoreConfig, ReadTx, RunnerOptions, StoreSubscription, Tables,
};
use plasma_testkit::{Backend, TestPg};
use serde_json::json;
use uuid::Uuid;

plasma_testkit::on_both_backends!(
    env;
    a_draft_shows_each_step_of_its_lifecycle,
    drafts_filter_by_status_and_brand_and_page_through_every_draft_once,
    an_agent_run_shows_its_progress_latest_checkpoint_and_what_it_resumed_from,
    agent_runs_filter_by_status_and_page_newest_first,
    a_document_shows_its_counts_and_a_new_extraction_replaces_its_entities,
    another_tenant_sees_none_of_these_read_models,
    rebuilding_each_read_model_yields_the_live_query_results,
    events_applied_again_change_nothing,
    two_runners_of_one_projection_apply_the_first_batch_once,
);

/// One backend: an event store, a read store, and a clock for command times.
struct Env {
    store: EventStore,
    read: ReadStore,
    models: ReadModels,
    handler: CommandHandler,
    clock: AtomicI64,
    _dir: Option<tempfile::TempDir>,
    // Last: the cluster stops only after the pools above are dropped.
    _pg: Option<TestPg>,
}

/// The environment for `backend`: the setup for `plasma_testkit::on_both_backends!`.
async fn env(backend: Backend) -> Env {
    match backend {
        Backend::Sqlite => Env::sqlite().await,
        Backend::Postgres => Env::postgres().await,
    }
}

impl Env {
    async fn sqlite() -> Self {
        let dir = plasma_testkit::temp_dir();
        let store = EventStore::open(&StoreConfig::Sqlite {
            path: dir.path().join("events.db"),
        })
        .await
        .unwrap();
        let read = ReadStore::open(&ReadStoreConfig::Sqlite {
            path: dir.path().join("read.db"),
        })
        .await
        .unwrap();
        Self::new(store, read, Some(dir), None)
    }

    async fn postgres() -> Self {
        let pg = TestPg::start().await;
        let store = EventStore::open(&StoreConfig::Postgres {
            url: pg.url().into(),
            max_connections: 5,
        })
        .await
        .unwrap();
        let pool = match &store {
            EventStore::Postgres(s) => s.pool().clone(),
            _ => unreachable!(),
        };
        let read = ReadStore::open(&ReadStoreConfig::Postgres { pool })
            .await
            .unwrap();
        Self::new(store, read, None, Some(pg))
    }

    fn new(
        store: EventStore,
        read: ReadStore,
        dir: Option<tempfile::TempDir>,
        pg: Option<TestPg>,
    ) -> Self {
        Self {
            handler: CommandHandler::new(store.clone()),
            models: ReadModels::new(read.clone()),
            store,
            read,
            clock: AtomicI64::new(0),
            _dir: dir,
            _pg: pg,
        }
    }

    /// The next command time: one second after the previous one.
    fn at(&self) -> DateTime<Utc> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        base_time() + Duration::seconds(tick)
    }

    async fn draft(&self, tenant: &TenantId, id: DraftId, command: DraftCommand) -> CommandReceipt {
        self.handler
            .execute::<Draft>(
                &ctx(tenant),
                id.as_uuid(),
                command,
                &DraftServices::default(),
            )
            .await
            .unwrap()
    }

    async fn run(&self, tenant: &TenantId, id: RunId, command: AgentRunCommand) -> CommandReceipt {
        self.handler
            .execute::<AgentRun>(&ctx(tenant), id.as_uuid(), command, &())
            .await
            .unwrap()
    }

    async fn document(
        &self,
        tenant: &TenantId,
        id: DocumentId,
        command: DocumentCommand,
    ) -> CommandReceipt {
        self.handler
            .execute::<Document>(&ctx(tenant), id.as_uuid(), command, &())
            .await
            .unwrap()
    }

    /// Brings the three read models up to the store's head, resuming from their checkpoints.
    async fn catch_up(&self) {
        for projection in content_projections() {
            let mut runner = ProjectionRunner::start(
                self.read.clone(),
                projection,
                StoreSubscription::new(self.store.clone()),
                RunnerOptions::default(),
            )
            .await
            .unwrap();
            catch_up(&mut runner).await.unwrap();
        }
    }

    async fn draft_view(&self, tenant: &TenantId, id: DraftId) -> DraftView {
        self.models.draft(tenant, id).await.unwrap().unwrap()
    }

    async fn run_view(&self, tenant: &TenantId, id: RunId) -> AgentRunView {
        self.models.agent_run(tenant, id).await.unwrap().unwrap()
    }

    async fn document_view(&self, tenant: &TenantId, id: DocumentId) -> DocumentView {
        self.models.document(tenant, id).await.unwrap().unwrap()
    }

    /// Every draft matching `filter`, page after page of `limit`; also the number of pages.
    async fn all_drafts(
        &self,
        tenant: &TenantId,
        filter: &DraftFilter,
        limit: u32,
    ) -> (Vec<DraftView>, usize) {
        let mut page = PageRequest { limit, after: None };
        let (mut all, mut pages) = (Vec::new(), 0);
        loop {
            let got = self.models.drafts(tenant, filter, &page).await.unwrap();
            assert!(got.items.len() <= limit as usize);
            pages += 1;
            all.extend(got.items);
            match got.next_cursor {
                Some(cursor) => {
                    page.after = Some(plasma_projections::Cursor::parse(&cursor).unwrap())
                }
                None => return (all, pages),
            }
        }
    }

    /// Every agent run with `status`, page after page of `limit`; also the number of pages.
    async fn all_runs(
        &self,
        tenant: &TenantId,
        status: Option<AgentRunStatus>,
        limit: u32,
    ) -> (Vec<AgentRunView>, usize) {
        let mut page = PageRequest { limit, after: None };
        let (mut all, mut pages) = (Vec::new(), 0);
        loop {
            let got = self.models.agent_runs(tenant, status, &page).await.unwrap();
            assert!(got.items.len() <= limit as usize);
            pages += 1;
            all.extend(got.items);
            match got.next_cursor {
                Some(cursor) => {
                    page.after = Some(plasma_projections::Cursor::parse(&cursor).unwrap())
                }
                None => return (all, pages),
            }
        }
    }

    /// Every document, page after page of `limit`; also the number of pages.
    async fn all_documents(&self, tenant: &TenantId, limit: u32) -> (Vec<DocumentView>, usize) {
        let mut page = PageRequest { limit, after: None };
        let (mut all, mut pages) = (Vec::new(), 0);
        loop {
            let got = self.models.documents(tenant, &page).await.unwrap();
            assert!(got.items.len() <= limit as usize);
            pages += 1;
            all.extend(got.items);
            match got.next_cursor {
                Some(cursor) => {
                    page.after = Some(plasma_projections::Cursor::parse(&cursor).unwrap())
                }
                None => return (all, pages),
            }
        }
    }

    /// Everything the queries answer for `tenant`, for comparing two copies of the read models.
    async fn snapshot(&self, tenant: &TenantId) -> Snapshot {
        let (drafts, _) = self.all_drafts(tenant, &DraftFilter::default(), 2).await;
        let (runs, _) = self.all_runs(tenant, None, 2).await;
        let (documents, _) = self.all_documents(tenant, 2).await;
        let mut single_drafts = Vec::new();
        for d in &drafts {
            single_drafts.push(
                self.draft_view(tenant, DraftId::from_uuid(d.draft_id))
                    .await,
            );
        }
        let mut single_runs = Vec::new();
        for r in &runs {
            single_runs.push(self.run_view(tenant, RunId::from_uuid(r.run_id)).await);
        }
        let mut single_documents = Vec::new();
        for d in &documents {
            single_documents.push(
                self.document_view(tenant, DocumentId::from_uuid(d.document_id))
                    .await,
            );
        }
        assert_eq!(drafts, single_drafts);
        assert_eq!(runs, single_runs);
        assert_eq!(documents, single_documents);
        Snapshot {
            drafts,
            runs,
            documents,
        }
    }
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    drafts: Vec<DraftView>,
    runs: Vec<AgentRunView>,
    documents: Vec<DocumentView>,
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 0).single().unwrap()
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn ctx(tenant: &TenantId) -> CommandContext {
    CommandContext::new(tenant.clone(), CommandId::from_uuid(Uuid::now_v7()), None)
}

fn content_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(DraftsProjection),
        Arc::new(AgentRunsProjection),
        Arc::new(DocumentsProjection),
    ]
}

fn new_draft() -> DraftId {
    DraftId::from_uuid(Uuid::now_v7())
}

fn new_run() -> RunId {
    RunId::from_uuid(Uuid::now_v7())
}

fn new_document() -> DocumentId {
    DocumentId::from_uuid(Uuid::now_v7())
}

fn generator() -> GeneratorInfo {
    GeneratorInfo {
        name: "llm".into(),
        version: "1".into(),
    }
}

fn no_cheap_words() -> VoiceGuidelines {
    VoiceGuidelines {
        banned_words: vec!["cheap".into()],
        ..VoiceGuidelines::default()
    }
}

/// Three paragraphs of 148 characters each, 448 characters in all.
fn report_text() -> String {
    ["a", "b", "c"]
        .map(|w| format!("{}.", format!("{w} ").repeat(74).trim_end()))
        .join("\n\n")
}

fn entity(name: &str, kind: &str, chunk_indexes: Vec<usize>) -> Entity {
    Entity {
        name: name.into(),
        kind: kind.into(),
        chunk_indexes,
        aliases: Vec::new(),
    }
}

fn entity_view(name: &str, kind: &str) -> DocumentEntityView {
    DocumentEntityView {
        name: name.into(),
        kind: kind.into(),
    }
}

fn extraction(
    env: &Env,
    entities: Vec<Entity>,
    relations: Vec<Relation>,
    version: &str,
) -> DocumentCommand {
    DocumentCommand::RecordEntities {
        entities,
        relations,
        extractor: ExtractorInfo {
            name: "ner".into(),
            version: version.into(),
        },
        replace: true,
        at: env.at(),
    }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    items.iter().map(id).collect()
}

async fn a_draft_shows_each_step_of_its_lifecycle(env: Env) {
    let t = tenant("acme");
    let id = new_draft();
    let brand = BrandId::from_uuid(Uuid::now_v7());
    let mut statuses = Vec::new();

    let requested_at = env.at();
    let receipt = env
        .draft(
            &t,
            id,
            DraftCommand::Request {
                brand_id: brand,
                brief: "Announce the new skates".into(),
                channel: Channel::Twitter,
                at: requested_at,
            },
        )
        .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(
        view,
        DraftView {
            draft_id: id.as_uuid(),
            brand_id: brand.as_uuid(),
            channel: Channel::Twitter,
            status: DraftStatus::Requested,
            brief: "Announce the new skates".into(),
            text: None,
            voice_passed: None,
            voice_issues: vec![],
            approver: None,
            rejection_reason: None,
            publish_at: None,
            published_url: None,
            requested_at,
            updated_at: requested_at,
            version: 1,
            position: receipt.last_position.unwrap(),
        }
    );
    statuses.push(view.status);

    let at = env.at();
    let receipt = env
        .draft(
            &t,
            id,
            DraftCommand::RecordGenerated {
                text: "Cheap skates for everyone!".into(),
                generator: generator(),
                at,
            },
        )
        .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::Generated);
    assert_eq!(view.text.as_deref(), Some("Cheap skates for everyone!"));
    assert_eq!((view.updated_at, view.requested_at), (at, requested_at));
    assert_eq!(
        (view.version, view.position),
        (2, receipt.last_position.unwrap())
    );
    statuses.push(view.status);

    env.draft(
        &t,
        id,
        DraftCommand::CheckVoice {
            guidelines: no_cheap_words(),
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::VoiceChecked);
    assert_eq!(view.voice_passed, Some(false));
    assert_eq!(view.voice_issues, ["uses the banned word `cheap`"]);
    statuses.push(view.status);

    env.draft(
        &t,
        id,
        DraftCommand::Reject {
            reason: "off-brand".into(),
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::Rejected);
    assert_eq!(view.rejection_reason.as_deref(), Some("off-brand"));
    assert_eq!(view.voice_passed, None, "a rejection voids the verdict");
    assert!(view.voice_issues.is_empty());
    statuses.push(view.status);

    env.draft(
        &t,
        id,
        DraftCommand::Revise {
            text: "Great skates for everyone!".into(),
            note: "drop `cheap`".into(),
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::Generated);
    assert_eq!(view.text.as_deref(), Some("Great skates for everyone!"));
    assert_eq!(view.rejection_reason, None, "new text leaves `rejected`");
    statuses.push(view.status);

    env.draft(
        &t,
        id,
        DraftCommand::CheckVoice {
            guidelines: no_cheap_words(),
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::VoiceChecked);
    assert_eq!(view.voice_passed, Some(true));
    assert!(view.voice_issues.is_empty());
    statuses.push(view.status);

    env.draft(
        &t,
        id,
        DraftCommand::Approve {
            approver: "ana".into(),
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::Approved);
    assert_eq!(view.approver.as_deref(), Some("ana"));
    statuses.push(view.status);

    let at = env.at();
    let publish_at = at + Duration::days(1);
    env.draft(&t, id, DraftCommand::Schedule { publish_at, at })
        .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::Scheduled);
    assert_eq!(view.publish_at, Some(publish_at));
    statuses.push(view.status);

    let at = env.at();
    let receipt = env
        .draft(
            &t,
            id,
            DraftCommand::MarkPublished {
                url: Some("https://x.example/1".into()),
                at,
            },
        )
        .await;
    env.catch_up().await;
    let view = env.draft_view(&t, id).await;
    assert_eq!(view.status, DraftStatus::Published);
    assert_eq!(view.published_url.as_deref(), Some("https://x.example/1"));
    assert_eq!(view.approver.as_deref(), Some("ana"));
    assert_eq!(view.publish_at, Some(publish_at));
    assert_eq!(view.text.as_deref(), Some("Great skates for everyone!"));
    assert_eq!((view.requested_at, view.updated_at), (requested_at, at));
    assert_eq!(
        (view.version, view.position),
        (9, receipt.last_position.unwrap())
    );
    statuses.push(view.status);

    assert_eq!(
        statuses,
        [
            DraftStatus::Requested,
            DraftStatus::Generated,
            DraftStatus::VoiceChecked,
            DraftStatus::Rejected,
            DraftStatus::Generated,
            DraftStatus::VoiceChecked,
            DraftStatus::Approved,
            DraftStatus::Scheduled,
            DraftStatus::Published,
        ]
    );
}

async fn drafts_filter_by_status_and_brand_and_page_through_every_draft_once(env: Env) {
    let t = tenant("acme");
    let (brand_a, brand_b) = (
        BrandId::from_uuid(Uuid::now_v7()),
        BrandId::from_uuid(Uuid::now_v7()),
    );
    // Drafts 0-3 for brand A, 4-6 for brand B; the even ones get a text afterwards.
    let drafts: Vec<DraftId> = (0..7).map(|_| new_draft()).collect();
    for (i, id) in drafts.iter().enumerate() {
        let brand_id = if i < 4 { brand_a } else { brand_b };
        let command = DraftCommand::Request {
            brand_id,
            brief: format!("brief {i}"),
            channel: Channel::Blog,
            at: env.at(),
        };
        env.draft(&t, *id, command).await;
    }
    for id in drafts.iter().step_by(2) {
        let command = DraftCommand::RecordGenerated {
            text: "Skates!".into(),
            generator: generator(),
            at: env.at(),
        };
        env.draft(&t, *id, command).await;
    }
    env.catch_up().await;

    // Most recently changed first: the generated ones (last generated first), then the others.
    let by =
        |indexes: &[usize]| -> Vec<Uuid> { indexes.iter().map(|&i| drafts[i].as_uuid()).collect() };
    let draft_id = |d: &DraftView| d.draft_id;

    let (all, pages) = env.all_drafts(&t, &DraftFilter::default(), 3).await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&all, draft_id), by(&[6, 4, 2, 0, 5, 3, 1]));
    assert_eq!(
        ids(&all, draft_id)
            .into_iter()
            .collect::<HashSet<_>>()
            .len(),
        7
    );

    let generated = DraftFilter {
        status: Some(DraftStatus::Generated),
        brand: None,
    };
    let (all, pages) = env.all_drafts(&t, &generated, 3).await;
    assert_eq!(pages, 2);
    assert_eq!(ids(&all, draft_id), by(&[6, 4, 2, 0]));
    assert!(all.iter().all(|d| d.status == DraftStatus::Generated));

    let brand = DraftFilter {
        status: None,
        brand: Some(brand_a),
    };
    let (all, _) = env.all_drafts(&t, &brand, 3).await;
    assert_eq!(ids(&all, draft_id), by(&[2, 0, 3, 1]));

    let both = DraftFilter {
        status: Some(DraftStatus::Requested),
        brand: Some(brand_b),
    };
    let (all, pages) = env.all_drafts(&t, &both, 3).await;
    assert_eq!((ids(&all, draft_id), pages), (by(&[5]), 1));

    let (exact, pages) = env.all_drafts(&t, &generated, 4).await;
    assert_eq!(
        (exact.len(), pages),
        (4, 1),
        "a full last page has no cursor"
    );

    let err = plasma_projections::Cursor::parse("not-a-cursor").unwrap_err();
    assert!(matches!(err, ProjectionError::BadCursor(_)), "{err:?}");
}

async fn an_agent_run_shows_its_progress_latest_checkpoint_and_what_it_resumed_from(env: Env) {
    let t = tenant("acme");
    let id = new_run();
    let started_at = env.at();
    let commands = vec![
        AgentRunCommand::Start {
            workflow: "research-digest".into(),
            input: json!({"topic": "skates"}),
            at: started_at,
        },
        AgentRunCommand::StartStep {
            index: 0,
            name: "search".into(),
            at: env.at(),
        },
        AgentRunCommand::CompleteStep {
            index: 0,
            output: json!({"hits": 1}),
            at: env.at(),
        },
        AgentRunCommand::SaveCheckpoint {
            name: "a".into(),
            step_index: 0,
            state: json!({"hits": 1}),
            at: env.at(),
        },
        AgentRunCommand::StartStep {
            index: 1,
            name: "summarise".into(),
            at: env.at(),
        },
        AgentRunCommand::FailStep {
            index: 1,
            error: "timeout".into(),
            at: env.at(),
        },
        AgentRunCommand::SaveCheckpoint {
            name: "b".into(),
            step_index: 1,
            state: json!({"hits": 2}),
            at: env.at(),
        },
    ];
    for command in commands {
        env.run(&t, id, command).await;
    }
    // Saving `a` again replaces it and makes it the latest, ahead of `b`.
    let saved_at = env.at();
    env.run(
        &t,
        id,
        AgentRunCommand::SaveCheckpoint {
            name: "a".into(),
            step_index: 2,
            state: json!({"hits": 3, "notes": ["x"]}),
            at: saved_at,
        },
    )
    .await;
    let at = env.at();
    let receipt = env
        .run(
            &t,
            id,
            AgentRunCommand::StartStep {
                index: 3,
                name: "write".into(),
                at,
            },
        )
        .await;
    env.catch_up().await;
    let latest = AgentCheckpointView {
        name: "a".into(),
        step_index: 2,
        state: json!({"hits": 3, "notes": ["x"]}),
        saved_at,
    };
    assert_eq!(
        env.run_view(&t, id).await,
        AgentRunView {
            run_id: id.as_uuid(),
            workflow: "research-digest".into(),
            status: AgentRunStatus::Running,
            current_step: Some(3),
            current_step_name: Some("write".into()),
            steps_completed: 1,
            steps_failed: 1,
            last_error: Some("timeout".into()),
            latest_checkpoint: Some(latest.clone()),
            resumed_from: None,
            started_at,
            updated_at: at,
            version: 9,
            position: receipt.last_position.unwrap(),
        }
    );

    let pause = |env: &Env| AgentRunCommand::Pause {
        reason: "waiting for review".into(),
        at: env.at(),
    };
    env.run(&t, id, pause(&env)).await;
    env.catch_up().await;
    let view = env.run_view(&t, id).await;
    assert_eq!(view.status, AgentRunStatus::Paused);
    assert_eq!(
        view.current_step,
        Some(3),
        "pausing keeps the step in progress"
    );

    env.run(
        &t,
        id,
        AgentRunCommand::Resume {
            from: ResumeFrom::Latest,
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.run_view(&t, id).await;
    assert_eq!(view.status, AgentRunStatus::Running);
    assert_eq!(view.resumed_from.as_deref(), Some("a"));
    assert_eq!((view.current_step, view.current_step_name), (None, None));
    assert_eq!(view.latest_checkpoint.as_ref(), Some(&latest));

    env.run(&t, id, pause(&env)).await;
    env.run(
        &t,
        id,
        AgentRunCommand::Resume {
            from: ResumeFrom::Named("b".into()),
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let view = env.run_view(&t, id).await;
    assert_eq!(view.resumed_from.as_deref(), Some("b"));
    assert_eq!(
        view.latest_checkpoint.as_ref(),
        Some(&latest),
        "resuming from an older checkpoint does not make it the latest"
    );

    let at = env.at();
    env.run(
        &t,
        id,
        AgentRunCommand::Complete {
            output: json!("done"),
            at,
        },
    )
    .await;
    env.catch_up().await;
    let view = env.run_view(&t, id).await;
    assert_eq!(view.status, AgentRunStatus::Completed);
    assert_eq!((view.steps_completed, view.steps_failed), (1, 1));
    assert_eq!((view.started_at, view.updated_at), (started_at, at));
    assert_eq!(view.version, 14);
}

async fn agent_runs_filter_by_status_and_page_newest_first(env: Env) {
    let t = tenant("acme");
    let runs: Vec<RunId> = (0..5).map(|_| new_run()).collect();
    for id in &runs {
        let command = AgentRunCommand::Start {
            workflow: "digest".into(),
            input: json!(null),
            at: env.at(),
        };
        env.run(&t, *id, command).await;
    }
    let fail = AgentRunCommand::Fail {
        error: "boom".into(),
        at: env.at(),
    };
    env.run(&t, runs[1], fail).await;
    let complete = AgentRunCommand::Complete {
        output: json!(1),
        at: env.at(),
    };
    env.run(&t, runs[3], complete).await;
    env.catch_up().await;

    let run_id = |r: &AgentRunView| r.run_id;
    let by =
        |indexes: &[usize]| -> Vec<Uuid> { indexes.iter().map(|&i| runs[i].as_uuid()).collect() };

    let (all, pages) = env.all_runs(&t, None, 2).await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&all, run_id), by(&[4, 3, 2, 1, 0]));

    let (failed, _) = env.all_runs(&t, Some(AgentRunStatus::Failed), 2).await;
    assert_eq!(ids(&failed, run_id), by(&[1]));
    assert_eq!(failed[0].last_error.as_deref(), Some("boom"));
    let (running, pages) = env.all_runs(&t, Some(AgentRunStatus::Running), 2).await;
    assert_eq!((ids(&running, run_id), pages), (by(&[4, 2, 0]), 2));
    let (paused, _) = env.all_runs(&t, Some(AgentRunStatus::Paused), 2).await;
    assert!(paused.is_empty());
    assert_eq!(env.run_view(&t, runs[3]).await.latest_checkpoint, None);
}

async fn a_document_shows_its_counts_and_a_new_extraction_replaces_its_entities(env: Env) {
    let t = tenant("acme");
    let id = new_document();
    let ingested_at = env.at();
    env.document(
        &t,
        id,
        DocumentCommand::Ingest {
            title: "Skates market".into(),
            source: "https://example.org/report".into(),
            text: format!("\n{}\n", report_text()),
            chunking: None,
            at: ingested_at,
        },
    )
    .await;
    env.catch_up().await;
    let view = env.document_view(&t, id).await;
    assert_eq!(view.status, DocumentStatus::Ingested);
    assert_eq!(
        (view.title.as_str(), view.source.as_str()),
        ("Skates market", "https://example.org/report")
    );
    assert_eq!(view.char_count, 448, "counted in the trimmed text");
    assert_eq!(
        (view.chunk_count, view.entity_count, view.relation_count),
        (0, 0, 0)
    );
    assert!(view.entities.is_empty());
    assert_eq!(
        (view.ingested_at, view.updated_at),
        (ingested_at, ingested_at)
    );

    let chunk = |env: &Env| DocumentCommand::Chunk {
        max_chars: 200,
        overlap: 0,
        at: env.at(),
    };
    env.document(&t, id, chunk(&env)).await;
    let again = env.document(&t, id, chunk(&env)).await;
    assert_eq!(again.events_appended, 0, "chunking again is a no-op");
    env.catch_up().await;
    let view = env.document_view(&t, id).await;
    assert_eq!(view.status, DocumentStatus::Chunked);
    assert_eq!((view.chunk_count, view.version), (3, 2));

    let command = extraction(
        &env,
        vec![
            entity("Acme", "org", vec![2, 0]),
            entity("Globex", "org", vec![1]),
        ],
        vec![Relation {
            from: "Acme".into(),
            to: "Globex".into(),
            kind: "competes_with".into(),
        }],
        "1",
    );
    env.document(&t, id, command).await;
    env.catch_up().await;
    let view = env.document_view(&t, id).await;
    assert_eq!(view.status, DocumentStatus::EntitiesExtracted);
    assert_eq!((view.entity_count, view.relation_count), (2, 1));
    assert_eq!(
        view.entities,
        [entity_view("Acme", "org"), entity_view("Globex", "org")]
    );

    let at = env.at();
    let command = DocumentCommand::RecordEntities {
        entities: vec![entity("Initech", "org", vec![0])],
        relations: vec![],
        extractor: ExtractorInfo {
            name: "ner".into(),
            version: "2".into(),
        },
        replace: true,
        at,
    };
    let receipt = env.document(&t, id, command).await;
    env.catch_up().await;
    let view = env.document_view(&t, id).await;
    assert_eq!(view.status, DocumentStatus::EntitiesExtracted);
    assert_eq!((view.entity_count, view.relation_count), (1, 0));
    assert_eq!(view.entities, [entity_view("Initech", "org")]);
    assert_eq!((view.chunk_count, view.char_count), (3, 448));
    assert_eq!((view.ingested_at, view.updated_at), (ingested_at, at));
    assert_eq!(
        (view.version, view.position),
        (4, receipt.last_position.unwrap())
    );

    // A second document lists first, and each page holds one.
    let newer = new_document();
    env.document(
        &t,
        newer,
        DocumentCommand::Ingest {
            title: "Later".into(),
            source: "notes.txt".into(),
            text: "Short.".into(),
            chunking: None,
            at: env.at(),
        },
    )
    .await;
    env.catch_up().await;
    let (all, pages) = env.all_documents(&t, 1).await;
    assert_eq!(pages, 2);
    assert_eq!(
        ids(&all, |d| d.document_id),
        [newer.as_uuid(), id.as_uuid()]
    );
    assert_eq!(all[1], view);
}

async fn another_tenant_sees_none_of_these_read_models(env: Env) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let populated = populate(&env, &acme).await;
    env.catch_up().await;

    assert!(!env.snapshot(&acme).await.drafts.is_empty());
    assert_eq!(
        env.snapshot(&globex).await,
        Snapshot {
            drafts: vec![],
            runs: vec![],
            documents: vec![],
        }
    );
    for id in &populated.drafts {
        assert_eq!(env.models.draft(&globex, *id).await.unwrap(), None);
    }
    for id in &populated.runs {
        assert_eq!(env.models.agent_run(&globex, *id).await.unwrap(), None);
    }
    for id in &populated.documents {
        assert_eq!(env.models.document(&globex, *id).await.unwrap(), None);
    }

    // The same draft id in another tenant is another draft: each sees only its own.
    let shared = populated.drafts[0];
    let command = DraftCommand::Request {
        brand_id: BrandId::from_uuid(Uuid::now_v7()),
        brief: "globex brief".into(),
        channel: Channel::Newsletter,
        at: env.at(),
    };
    env.draft(&globex, shared, command).await;
    env.catch_up().await;
    let theirs = env.draft_view(&globex, shared).await;
    let ours = env.draft_view(&acme, shared).await;
    assert_eq!((theirs.brief.as_str(), theirs.version), ("globex brief", 1));
    assert_ne!(ours.brief, theirs.brief);
    let (listed, _) = env.all_drafts(&globex, &DraftFilter::default(), 10).await;
    assert_eq!(listed, [theirs]);
}

async fn rebuilding_each_read_model_yields_the_live_query_results(env: Env) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    populate(&env, &acme).await;
    populate(&env, &globex).await;
    env.catch_up().await;
    let live = (env.snapshot(&acme).await, env.snapshot(&globex).await);
    assert_eq!(live.0.drafts.len(), 4);
    let head = env.store.head().await.unwrap();

    // Twice: the second rebuild replaces tables that were themselves swapped in.
    for _ in 0..2 {
        for projection in content_projections() {
            let options = RunnerOptions {
                batch_size: 3,
                ..RunnerOptions::default()
            };
            let progress = rebuild(&env.read, &env.store, projection, options, |_| {})
                .await
                .unwrap();
            assert_eq!(progress.position, head);
        }
        let rebuilt = (env.snapshot(&acme).await, env.snapshot(&globex).await);
        assert_eq!(rebuilt, live);
    }

    // The live runners carry on from the rebuilt copies.
    let id = new_draft();
    let command = DraftCommand::Request {
        brand_id: BrandId::from_uuid(Uuid::now_v7()),
        brief: "after the rebuild".into(),
        channel: Channel::Blog,
        at: env.at(),
    };
    env.draft(&acme, id, command).await;
    env.catch_up().await;
    assert_eq!(env.draft_view(&acme, id).await.brief, "after the rebuild");
    assert_eq!(env.snapshot(&acme).await.drafts.len(), 5);
    assert_eq!(env.snapshot(&globex).await, live.1);
}

async fn events_applied_again_change_nothing(env: Env) {
    let t = tenant("acme");
    populate(&env, &t).await;
    env.catch_up().await;
    let before = env.snapshot(&t).await;

    // As a log-fed subscription may redeliver: everything again, in one batch and one by one.
    let events: Vec<RecordedEvent> = env.store.read_all(0, 10_000).await.unwrap();
    for projection in content_projections() {
        let mut tx = env.read.begin().await.unwrap();
        projection
            .apply(&mut tx, &Tables::LIVE, &events)
            .await
            .unwrap();
        for event in events.iter().rev() {
            projection
                .apply(&mut tx, &Tables::LIVE, std::slice::from_ref(event))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    assert_eq!(env.snapshot(&t).await, before);
}

/// Counts the events it is given, slowly and without any idempotence: applied twice, it counts
/// twice, which is what two runners applying one batch would do to an additive read model.
#[derive(Debug)]
struct SlowEventCounter;

#[async_trait::async_trait]
impl Projection for SlowEventCounter {
    fn name(&self) -> &'static str {
        "test_event_counter"
    }

    fn contexts(&self) -> &'static [plasma_domain::Context] {
        &plasma_domain::Context::ALL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_test_event_count"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS rm_test_event_count{t} (
            id     INTEGER PRIMARY KEY,
            events BIGINT  NOT NULL
        )"]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // Long enough for a second runner to be inside its own batch meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let table = tables.name("rm_test_event_count");
        let sql = format!(
            "INSERT INTO {table} (id, events) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET events = {table}.events + excluded.events"
        );
        let n = events.len() as i64;
        match tx {
            ReadTx::Sqlite(tx) => sqlx::query(&sql)
                .bind(n)
                .execute(&mut **tx)
                .await
                .map(|_| ()),
            ReadTx::Postgres(tx) => sqlx::query(&sql)
                .bind(n)
                .execute(&mut **tx)
                .await
                .map(|_| ()),
        }
        .unwrap();
        Ok(())
    }
}

async fn two_runners_of_one_projection_apply_the_first_batch_once(env: Env) {
    let t = tenant("acme");
    populate(&env, &t).await;
    let head = env.store.head().await.unwrap();

    // Both start on a fresh read store, as two replicas would, then step at the same time.
    let start = || {
        ProjectionRunner::start(
            env.read.clone(),
            Arc::new(SlowEventCounter),
            StoreSubscription::new(env.store.clone()),
            RunnerOptions::default(),
        )
    };
    let (mut a, mut b) = (start().await.unwrap(), start().await.unwrap());
    let (applied_a, applied_b) = tokio::join!(catch_up(&mut a), catch_up(&mut b));
    assert_eq!(applied_a.unwrap() + applied_b.unwrap(), head as u64);

    let sql = "SELECT events FROM rm_test_event_count WHERE id = 1";
    let counted: i64 = match &env.read {
        ReadStore::Sqlite { reader, .. } => sqlx::query_scalar(sql).fetch_one(reader).await,
        ReadStore::Postgres { pool } => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .unwrap();
    assert_eq!(counted, head, "every event counted exactly once");
}

#[test]
fn the_content_read_models_are_registered_by_name() {
    let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
    for name in ["drafts", "agent_runs", "documents"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
        assert_eq!(projection_named(name).unwrap().name(), name);
    }
}

struct Populated {
    drafts: Vec<DraftId>,
    runs: Vec<RunId>,
    documents: Vec<DocumentId>,
}

/// Drafts, runs and documents in assorted states, for comparing whole read models.
async fn populate(env: &Env, t: &TenantId) -> Populated {
    let brand = BrandId::from_uuid(Uuid::now_v7());
    let drafts: Vec<DraftId> = (0..4).map(|_| new_draft()).collect();
    for (i, id) in drafts.iter().enumerate() {
        let command = DraftCommand::Request {
            brand_id: brand,
            brief: format!("brief {i}"),
            channel: Channel::ALL[i % Channel::ALL.len()],
            at: env.at(),
        };
        env.draft(t, *id, command).await;
    }
    // Draft 1 is generated and failed its voice check; draft 2 rejected; draft 3 published.
    for id in &drafts[1..] {
        let command = DraftCommand::RecordGenerated {
            text: "Cheap skates!".into(),
            generator: generator(),
            at: env.at(),
        };
        env.draft(t, *id, command).await;
        let command = DraftCommand::CheckVoice {
            guidelines: no_cheap_words(),
            at: env.at(),
        };
        env.draft(t, *id, command).await;
    }
    let reject = DraftCommand::Reject {
        reason: "off-brand".into(),
        at: env.at(),
    };
    env.draft(t, drafts[2], reject).await;
    let at = env.at();
    let commands = vec![
        DraftCommand::Revise {
            text: "Great skates!".into(),
            note: String::new(),
            at,
        },
        DraftCommand::CheckVoice {
            guidelines: no_cheap_words(),
            at,
        },
        DraftCommand::Approve {
            approver: "ana".into(),
            at,
        },
        DraftCommand::Schedule {
            publish_at: at + Duration::hours(2),
            at,
        },
        DraftCommand::MarkPublished { url: None, at },
    ];
    for command in commands {
        env.draft(t, drafts[3], command).await;
    }

    let runs: Vec<RunId> = (0..2).map(|_| new_run()).collect();
    for id in &runs {
        let command = AgentRunCommand::Start {
            workflow: "digest".into(),
            input: json!({}),
            at: env.at(),
        };
        env.run(t, *id, command).await;
    }
    let at = env.at();
    let commands = vec![
        AgentRunCommand::StartStep {
            index: 0,
            name: "search".into(),
            at,
        },
        AgentRunCommand::CompleteStep {
            index: 0,
            output: json!(1),
            at,
        },
        AgentRunCommand::SaveCheckpoint {
            name: "a".into(),
            step_index: 0,
            state: json!({"k": [1, 2]}),
            at,
        },
        AgentRunCommand::StartStep {
            index: 1,
            name: "write".into(),
            at,
        },
        AgentRunCommand::FailStep {
            index: 1,
            error: "timeout".into(),
            at,
        },
        AgentRunCommand::Pause {
            reason: "review".into(),
            at,
        },
        AgentRunCommand::Resume {
            from: ResumeFrom::Latest,
            at,
        },
    ];
    for command in commands {
        env.run(t, runs[0], command).await;
    }
    let fail = AgentRunCommand::Fail {
        error: "boom".into(),
        at: env.at(),
    };
    env.run(t, runs[1], fail).await;

    let documents: Vec<DocumentId> = (0..2).map(|_| new_document()).collect();
    for id in &documents {
        let command = DocumentCommand::Ingest {
            title: "Report".into(),
            source: "report.pdf".into(),
            text: report_text(),
            chunking: None,
            at: env.at(),
        };
        env.document(t, *id, command).await;
    }
    let chunk = DocumentCommand::Chunk {
        max_chars: 200,
        overlap: 0,
        at: env.at(),
    };
    env.document(t, documents[0], chunk).await;
    for version in ["1", "2"] {
        let command = extraction(
            env,
            vec![entity(&format!("Acme v{version}"), "org", vec![0])],
            vec![],
            version,
        );
        env.document(t, documents[0], command).await;
    }

    Populated {
        drafts,
        runs,
        documents,
    }
}
