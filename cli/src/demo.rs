//! `plasma dev --demo`: a realistic data set, loaded through the command path (the same
//! [`CommandHandler`] the API uses, so every event is one a client could have caused).
//!
//! Three brands with keywords, competitors and voice guidelines; about 6,000 mentions over the
//! last 30 days from several sources, with varied sentiment and one visible spike (a burst of
//! angry mentions of Acme Rockets six days ago); drafts in every status; agent runs paused,
//! completed, failed and resumed, with checkpoints; research documents ingested, chunked and
//! with entities. Pseudo-random but deterministic (a fixed seed; ids and command ids derived
//! from names), and loaded only into an empty store.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use cqrs_es::Aggregate;
use plasma_adapters::VaderScorer;
use plasma_bench::mentions::{self, BrandProfile, MentionGenerator, Tone, Window};
use plasma_commands::{CommandContext, CommandError, CommandHandler, StoreError};
use plasma_domain::agent::{builtin, AgentRun, AgentRunCommand, ResumeFrom};
use plasma_domain::brand::{AlertRules, Brand, BrandCommand, MentionServices, VoiceGuidelines};
use plasma_domain::content::{Channel, Draft, DraftCommand, DraftServices, GeneratorInfo};
use plasma_domain::ids::{BrandId, CommandId, DraftId, RunId};
use plasma_domain::research::{
    chunk_text, Chunking, Document, DocumentCommand, Entity, ExtractorInfo, Relation,
};
use plasma_domain::{AggregateId, TenantId};
use serde_json::json;
use uuid::Uuid;

/// The tenant `plasma dev` loads the demo into and issues its token for.
pub const DEMO_TENANT: &str = "demo";
/// How many days before "now" the spike happens.
pub const SPIKE_DAYS_AGO: i64 = 6;
const SPIKE_MENTIONS: usize = 600;
/// The demo brands' alert threshold on volume (see `load`).
const DEMO_MIN_VOLUME: u32 = 20;
/// Mentions of the wave breaking as the demo loads (its alert is still open).
const SURGE_MENTIONS: usize = 40;
/// Mentions per bulk command (well under the API's 10,000).
const INGEST_CHUNK: usize = 2_000;
/// Fixed forever: demo ids derive from it.
const NAMESPACE: Uuid = Uuid::from_u128(0x0d3e_5a1c_7b9f_4e2a_8c6d_1f0e_3b5a_7c9d);

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoOutcome {
    Loaded(DemoSummary),
    /// The store already held events (up to `head`); nothing was loaded.
    Skipped {
        head: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub brands: Vec<(String, BrandId)>,
    pub mentions: u32,
    pub drafts: u32,
    pub agent_runs: u32,
    pub documents: u32,
    /// Position of the last event loaded: wait for it before querying.
    pub last_position: i64,
    pub spike: Spike,
}

/// The burst of negative mentions the demo plants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spike {
    pub brand: BrandId,
    pub day: NaiveDate,
    pub mentions: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the event store failed while loading the demo")]
    Store(#[from] StoreError),
    /// A demo command was refused: a bug in the generator.
    #[error("demo step `{step}` was refused: {reason}")]
    Refused { step: String, reason: String },
    /// The FAQ compiled into the binary does not parse: a bug in data/python-faq.
    #[error("the demo's Python FAQ does not parse: {0}")]
    Faq(#[from] serde_json::Error),
}

struct BrandSpec {
    name: &'static str,
    keywords: &'static [&'static str],
    competitors: &'static [&'static str],
    products: &'static [&'static str],
    tone: &'static str,
    banned: &'static [&'static str],
    mentions: usize,
}

const BRANDS: [BrandSpec; 3] = [
    BrandSpec {
        name: "Acme Rockets",
        keywords: &["acme", "acme rockets", "rocket skates"],
        competitors: &["Globex", "Initech"],
        products: &[
            "rocket skates",
            "jet pack",
            "anvil subscription",
            "Acme app",
        ],
        tone: "playful, confident, never snarky",
        banned: &["cheap", "guaranteed"],
        mentions: 1_900,
    },
    BrandSpec {
        name: "Northwind Outdoor",
        keywords: &["northwind", "northwind outdoor"],
        competitors: &["Summit Gear", "TrailCo"],
        products: &[
            "Ridge 40 backpack",
            "Storm shell jacket",
            "trail runners",
            "Dome 2 tent",
        ],
        tone: "warm, practical, outdoorsy",
        banned: &["extreme"],
        mentions: 1_800,
    },
    BrandSpec {
        name: "Lumen Bank",
        keywords: &["lumen bank", "lumen card"],
        competitors: &["Crestline", "Harbor Financial"],
        products: &[
            "mobile app",
            "savings account",
            "Lumen card",
            "mortgage desk",
        ],
        tone: "clear, calm, trustworthy",
        banned: &["free money", "risk-free"],
        mentions: 1_700,
    },
];

fn demo_id(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{kind}/{name}").as_bytes())
}

/// Runs the demo's commands with deterministic command ids and remembers the last position.
struct Loader<'a> {
    handler: &'a CommandHandler,
    tenant: TenantId,
    now: DateTime<Utc>,
    last_position: i64,
}

impl Loader<'_> {
    fn context(&self, step: &str) -> CommandContext {
        let id = CommandId::from_uuid(demo_id("command", &format!("{}/{step}", self.tenant)));
        CommandContext::new(self.tenant.clone(), id, None)
    }

    async fn run<A>(
        &mut self,
        step: &str,
        id: Uuid,
        command: A::Command,
        services: &A::Services,
    ) -> Result<(), DemoError>
    where
        A: Aggregate,
        A::Command: Clone + serde::Serialize,
        A::Error: 'static,
    {
        let context = self.context(step);
        let receipt = self
            .handler
            .execute::<A>(&context, id, command, services)
            .await
            .map_err(refused(step))?;
        self.last_position = self.last_position.max(receipt.last_position.unwrap_or(0));
        Ok(())
    }

    fn ago(&self, minutes: i64) -> DateTime<Utc> {
        self.now - Duration::minutes(minutes)
    }
}

fn refused<E: std::error::Error + 'static>(
    step: &str,
) -> impl FnOnce(CommandError<E>) -> DemoError + '_ {
    move |err| match err {
        CommandError::Store(err) => DemoError::Store(err),
        other => DemoError::Refused {
            step: step.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Loads the demo into `tenant` as of `now`, unless the store already holds events.
pub async fn load(
    handler: &CommandHandler,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<DemoOutcome, DemoError> {
    let head = handler.store().head().await?;
    if head > 0 {
        return Ok(DemoOutcome::Skipped { head });
    }
    let mut loader = Loader {
        handler,
        tenant: tenant.clone(),
        now,
        last_position: 0,
    };
    let mut generator = MentionGenerator::new(0x9E37_79B9_7F4A_7C15);

    let mut brands = Vec::new();
    for (index, spec) in BRANDS.iter().enumerate() {
        let id = BrandId::from_uuid(demo_id("brand", spec.name));
        let command = BrandCommand::Register {
            name: spec.name.to_owned(),
            keywords: spec.keywords.iter().map(|k| (*k).to_owned()).collect(),
            competitors: spec.competitors.iter().map(|c| (*c).to_owned()).collect(),
            voice: voice(spec),
            at: loader.ago(60 * 24 * 45 - index as i64),
        };
        loader
            .run::<Brand>(&format!("brand/{}", spec.name), id.as_uuid(), command, &())
            .await?;
        // About three mentions an hour: at the default minimum of 10, one chance hour in a
        // few hundred would alert; 20 leaves only the spike and the wave.
        let rules = BrandCommand::SetAlertRules {
            rules: AlertRules {
                min_volume: DEMO_MIN_VOLUME,
                ..AlertRules::default()
            },
            at: loader.ago(60 * 24 * 45 - index as i64),
        };
        loader
            .run::<Brand>(
                &format!("alert-rules/{}", spec.name),
                id.as_uuid(),
                rules,
                &(),
            )
            .await?;
        brands.push((spec.name.to_owned(), id));
    }

    let services = MentionServices {
        scorer: Arc::new(VaderScorer::new()),
    };
    let spike_day = (now - Duration::days(SPIKE_DAYS_AGO)).date_naive();
    let spike_start = spike_day
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let mut mentions = 0u32;
    for (index, spec) in BRANDS.iter().enumerate() {
        let brand = brands[index].1;
        let profile = BrandProfile {
            name: spec.name,
            products: spec.products,
            competitors: spec.competitors,
        };
        let mut batch = generator.generate(&mentions::Batch {
            brand: profile,
            tone: Tone::Mixed,
            window: Window::Before { end: now, days: 29 },
            count: spec.mentions,
            prefix: "m",
            sentences: 1,
        });
        if index == 0 {
            batch.extend(generator.generate(&mentions::Batch {
                brand: profile,
                tone: Tone::Spike,
                window: Window::Day {
                    start: spike_start,
                    end: now,
                },
                count: SPIKE_MENTIONS,
                prefix: "spike",
                sentences: 1,
            }));
            // A complaint wave breaking right now: an alert still open to acknowledge.
            batch.extend(generator.generate(&mentions::Batch {
                brand: profile,
                tone: Tone::Spike,
                window: Window::Day {
                    start: now - Duration::minutes(30),
                    end: now,
                },
                count: SURGE_MENTIONS,
                prefix: "surge",
                sentences: 1,
            }));
        }
        // In publication order, as a live feed would have delivered them: the alert detector
        // judges each hour as the stream reaches it.
        batch.sort_by_key(|m| m.published_at);
        for (chunk_index, chunk) in batch.chunks(INGEST_CHUNK).enumerate() {
            let step = format!("mentions/{}/{chunk_index}", spec.name);
            let context = loader.context(&step);
            let receipt = handler
                .ingest_mentions(&context, brand, chunk.to_vec(), now, &services)
                .await
                .map_err(refused(&step))?;
            mentions += receipt.ingested;
            loader.last_position = loader.last_position.max(receipt.last_position.unwrap_or(0));
        }
    }

    let drafts = load_drafts(&mut loader, &brands).await?;
    let agent_runs = load_agent_runs(&mut loader).await?;
    let documents = load_documents(&mut loader).await? + load_python_faq(&mut loader).await?;

    Ok(DemoOutcome::Loaded(DemoSummary {
        brands: brands.clone(),
        mentions,
        drafts,
        agent_runs,
        documents,
        last_position: loader.last_position,
        spike: Spike {
            brand: brands[0].1,
            day: spike_day,
            mentions: SPIKE_MENTIONS as u32,
        },
    }))
}

fn voice(spec: &BrandSpec) -> VoiceGuidelines {
    VoiceGuidelines {
        tone: spec.tone.to_owned(),
        banned_words: spec.banned.iter().map(|w| (*w).to_owned()).collect(),
        required_phrases: Vec::new(),
    }
}

/// Seven drafts for Acme Rockets, one in each status, and three the drafting workflow writes.
async fn load_drafts(
    loader: &mut Loader<'_>,
    brands: &[(String, BrandId)],
) -> Result<u32, DemoError> {
    let spec = &BRANDS[0];
    let brand = brands[0].1;
    let guidelines = voice(spec);
    let generator = GeneratorInfo {
        name: "demo-writer".to_owned(),
        version: "1".to_owned(),
    };
    let services = DraftServices::default();
    // (name, channel, brief, text, how far it gets)
    let drafts: [(&str, Channel, &str, &str, usize); 7] = [
        ("requested", Channel::Blog, "A behind-the-scenes post on how rocket skates are tested.", "", 0),
        ("generated", Channel::Twitter, "Tease the spring jet pack colours.", "Spring is here and so are three new jet pack colours. Which one are you flying first?", 1),
        ("voice-checked", Channel::LinkedIn, "Announce the Acme safety lab opening.", "Today we open the Acme safety lab: forty engineers whose only job is to try to break our rocket skates before you can.", 2),
        ("approved", Channel::Newsletter, "Monthly newsletter: anvil subscription tips.", "Five ways to get more out of your anvil subscription, from storage to safe drop heights.", 3),
        ("scheduled", Channel::Twitter, "Weekend flash sale on rocket skates.", "This weekend only: 20% off rocket skates. Helmets sold separately, brains included.", 4),
        ("published", Channel::Blog, "Customer story: a coyote's year on rocket skates.", "A year, forty-one launches and one very patient coyote: what we learned from our most dedicated customer.", 5),
        ("rejected", Channel::Twitter, "Price-led promo for the Acme app.", "The Acme app is so cheap it is basically free. Download now!", 9),
    ];
    for (index, (name, channel, brief, text, stage)) in drafts.iter().enumerate() {
        let id = demo_id("draft", name);
        let step = |what: &str| format!("draft/{name}/{what}");
        let minutes = 60 * 24 * (10 - index as i64);
        loader
            .run::<Draft>(
                &step("request"),
                id,
                DraftCommand::Request {
                    brand_id: brand,
                    brief: (*brief).to_owned(),
                    channel: *channel,
                    at: loader.ago(minutes),
                },
                &services,
            )
            .await?;
        if *stage >= 1 {
            let command = DraftCommand::RecordGenerated {
                text: (*text).to_owned(),
                generator: generator.clone(),
                at: loader.ago(minutes - 30),
            };
            loader
                .run::<Draft>(&step("generate"), id, command, &services)
                .await?;
        }
        if *stage >= 2 {
            let command = DraftCommand::CheckVoice {
                guidelines: guidelines.clone(),
                at: loader.ago(minutes - 40),
            };
            loader
                .run::<Draft>(&step("check"), id, command, &services)
                .await?;
        }
        if *stage == 9 {
            let command = DraftCommand::Reject {
                reason: "Uses a banned word and leads on price; rewrite around the app's features."
                    .to_owned(),
                at: loader.ago(minutes - 50),
            };
            loader
                .run::<Draft>(&step("reject"), id, command, &services)
                .await?;
            continue;
        }
        if *stage >= 3 {
            let command = DraftCommand::Approve {
                approver: "maria@acme.example".to_owned(),
                at: loader.ago(minutes - 60),
            };
            loader
                .run::<Draft>(&step("approve"), id, command, &services)
                .await?;
        }
        if *stage >= 4 {
            let command = DraftCommand::Schedule {
                publish_at: loader.now + Duration::days(2 + index as i64),
                at: loader.ago(minutes - 70),
            };
            loader
                .run::<Draft>(&step("schedule"), id, command, &services)
                .await?;
        }
        if *stage >= 5 {
            let command = DraftCommand::MarkPublished {
                url: Some(format!("https://blog.acme.example/{name}")),
                at: loader.ago(minutes - 80),
            };
            loader
                .run::<Draft>(&step("publish"), id, command, &services)
                .await?;
        }
    }
    // Three more the platform writes itself once `plasma dev` runs: the drafting workflow, with
    // the in-process model when it is installed (templates otherwise). They wait for a decision.
    let written: [(&str, Channel, &str); 3] = [
        (
            "written-tweet",
            Channel::Twitter,
            "Announce rocket skates with auto-balance, made for first-time riders.",
        ),
        (
            "written-linkedin",
            Channel::LinkedIn,
            "Share what the Acme safety lab learned from its first thousand test flights.",
        ),
        (
            "written-newsletter",
            Channel::Newsletter,
            "Invite subscribers to the spring test-flight day at the Acme proving grounds.",
        ),
    ];
    for (name, channel, brief) in written {
        let id = demo_id("draft", name);
        loader
            .run::<Draft>(
                &format!("draft/{name}/request"),
                id,
                DraftCommand::Request {
                    brand_id: brand,
                    brief: brief.to_owned(),
                    channel,
                    at: loader.ago(30),
                },
                &services,
            )
            .await?;
        let draft = DraftId::from_uuid(id);
        let start = AgentRunCommand::StartManaged {
            workflow: builtin::DRAFT_WORKFLOW.to_owned(),
            version: builtin::DRAFT_WORKFLOW_VERSION,
            input: json!({ "draft_id": draft, "publish_at": null }),
            fork: None,
            continued_from: None,
            at: loader.ago(30),
        };
        loader
            .run::<AgentRun>(
                &format!("draft/{name}/run"),
                RunId::for_draft(draft).as_uuid(),
                start,
                &(),
            )
            .await?;
    }
    Ok((drafts.len() + written.len()) as u32)
}

/// Four agent runs: paused, completed, failed, and resumed from a checkpoint (running again).
async fn load_agent_runs(loader: &mut Loader<'_>) -> Result<u32, DemoError> {
    use AgentRunCommand as C;
    let base = 60 * 24 * 3;
    let runs: [(&str, &str, Vec<C>); 4] = [
        (
            "paused",
            "competitor-digest",
            vec![
                C::StartStep {
                    index: 0,
                    name: "collect mentions".into(),
                    at: loader.ago(base - 1),
                },
                C::CompleteStep {
                    index: 0,
                    output: json!({"mentions": 412}),
                    at: loader.ago(base - 2),
                },
                C::SaveCheckpoint {
                    name: "after-collect".into(),
                    step_index: 0,
                    state: json!({"cursor": "2026-w14", "mentions": 412}),
                    at: loader.ago(base - 3),
                },
                C::StartStep {
                    index: 1,
                    name: "summarise".into(),
                    at: loader.ago(base - 4),
                },
                C::Pause {
                    reason: "waiting for an analyst to review the sources".into(),
                    at: loader.ago(base - 5),
                },
            ],
        ),
        (
            "completed",
            "weekly-report",
            vec![
                C::StartStep {
                    index: 0,
                    name: "gather stats".into(),
                    at: loader.ago(base - 11),
                },
                C::CompleteStep {
                    index: 0,
                    output: json!({"brands": 3}),
                    at: loader.ago(base - 12),
                },
                C::SaveCheckpoint {
                    name: "stats".into(),
                    step_index: 0,
                    state: json!({"brands": 3}),
                    at: loader.ago(base - 13),
                },
                C::StartStep {
                    index: 1,
                    name: "write report".into(),
                    at: loader.ago(base - 14),
                },
                C::CompleteStep {
                    index: 1,
                    output: json!({"words": 850}),
                    at: loader.ago(base - 15),
                },
                C::SaveCheckpoint {
                    name: "report".into(),
                    step_index: 1,
                    state: json!({"words": 850}),
                    at: loader.ago(base - 16),
                },
                C::StartStep {
                    index: 2,
                    name: "send".into(),
                    at: loader.ago(base - 17),
                },
                C::CompleteStep {
                    index: 2,
                    output: json!({"recipients": 12}),
                    at: loader.ago(base - 18),
                },
                C::Complete {
                    output: json!({"report": "weekly-2026-w14"}),
                    at: loader.ago(base - 19),
                },
            ],
        ),
        (
            "failed",
            "mention-triage",
            vec![
                C::StartStep {
                    index: 0,
                    name: "classify".into(),
                    at: loader.ago(base - 21),
                },
                C::FailStep {
                    index: 0,
                    error: "classifier timed out after 30s".into(),
                    at: loader.ago(base - 22),
                },
                C::StartStep {
                    index: 0,
                    name: "classify (retry)".into(),
                    at: loader.ago(base - 23),
                },
                C::FailStep {
                    index: 0,
                    error: "classifier timed out after 30s".into(),
                    at: loader.ago(base - 24),
                },
                C::Fail {
                    error: "gave up after 2 attempts at step 0".into(),
                    at: loader.ago(base - 25),
                },
            ],
        ),
        (
            "resumed",
            "campaign-brief",
            vec![
                C::StartStep {
                    index: 0,
                    name: "outline".into(),
                    at: loader.ago(base - 31),
                },
                C::CompleteStep {
                    index: 0,
                    output: json!({"sections": 4}),
                    at: loader.ago(base - 32),
                },
                C::SaveCheckpoint {
                    name: "outline".into(),
                    step_index: 0,
                    state: json!({"sections": ["goal", "audience", "message", "channels"]}),
                    at: loader.ago(base - 33),
                },
                C::StartStep {
                    index: 1,
                    name: "write copy".into(),
                    at: loader.ago(base - 34),
                },
                C::Pause {
                    reason: "rate limited by the model provider".into(),
                    at: loader.ago(base - 35),
                },
                C::Resume {
                    from: ResumeFrom::Latest,
                    at: loader.ago(base - 95),
                },
                C::StartStep {
                    index: 1,
                    name: "write copy".into(),
                    at: loader.ago(base - 96),
                },
            ],
        ),
    ];
    let count = runs.len() as u32;
    for (name, workflow, commands) in runs {
        let id = demo_id("run", name);
        let start = C::Start {
            workflow: workflow.to_owned(),
            input: json!({"tenant": loader.tenant.as_str(), "requested_by": "demo"}),
            at: loader.ago(base),
        };
        loader
            .run::<AgentRun>(&format!("run/{name}/start"), id, start, &())
            .await?;
        for (i, command) in commands.into_iter().enumerate() {
            loader
                .run::<AgentRun>(&format!("run/{name}/{i}"), id, command, &())
                .await?;
        }
    }
    Ok(count)
}

const MARKET_TEXT: &str = "Consumer rocketry grew quickly this year. Acme Rockets still leads the \
market for rocket skates, while Globex pushes hard on price and Initech bets on software.\n\n\
Safety dominates the conversation. After the overheating reports, regulators in several \
countries asked Acme Rockets for test data, and Globex used the moment to advertise its own \
certification programme. Initech stayed quiet and kept shipping updates to its flight app.\n\n\
Retail matters more than expected. Northwind Outdoor started carrying rocket skates in twelve \
stores, a sign that outdoor retailers see the category as mainstream. Analysts at Harbor \
Financial expect the segment to double within three years if safety concerns are addressed.\n\n\
For marketers the lesson is simple: trust is the product. Brands that publish test results and \
answer complaints quickly keep their share of voice; brands that stay silent lose it to \
competitors who talk.";

const OUTDOOR_TEXT: &str = "Outdoor retail had a strong third quarter. Backpacks and shell \
jackets sold best, helped by a wet September across most regions.\n\nNorthwind Outdoor grew \
faster than the market, mostly through its Ridge 40 backpack. Summit Gear held its position in \
technical climbing gear, and TrailCo expanded into trail running shoes with mixed reviews.\n\n\
Online sales kept rising, but stores remained where most customers tried boots and packs before \
buying. Retailers that combined both channels reported the highest customer satisfaction.";

const SAFETY_TEXT: &str = "Draft safety standard for personal rocket propulsion devices, \
including rocket skates and jet packs. Scope: devices sold to consumers for recreational use.\n\n\
Requirements cover battery thermal runaway protection, automatic shut-off on tip-over, and \
labelling of maximum speed. Manufacturers must keep test records for five years.";

/// Three documents: ingested only, chunked, and chunked with entities extracted.
async fn load_documents(loader: &mut Loader<'_>) -> Result<u32, DemoError> {
    let base = 60 * 24 * 2;
    let docs: [(&str, &str, &str, &str, usize); 3] = [
        (
            "safety",
            "Rocket propulsion safety standard (draft)",
            "https://standards.example/rps-draft.pdf",
            SAFETY_TEXT,
            0,
        ),
        (
            "outdoor",
            "Outdoor retail market, Q3",
            "https://research.example/outdoor-q3",
            OUTDOOR_TEXT,
            1,
        ),
        (
            "rocketry",
            "Competitive landscape: consumer rocketry",
            "https://research.example/rocketry",
            MARKET_TEXT,
            2,
        ),
    ];
    let (max_chars, overlap) = (400, 40);
    for (index, (name, title, source, text, stage)) in docs.iter().enumerate() {
        let id = demo_id("document", name);
        let minutes = base - 10 * index as i64;
        let ingest = DocumentCommand::Ingest {
            title: (*title).to_owned(),
            source: (*source).to_owned(),
            text: (*text).to_owned(),
            chunking: None,
            at: loader.ago(minutes),
        };
        loader
            .run::<Document>(&format!("document/{name}/ingest"), id, ingest, &())
            .await?;
        if *stage >= 1 {
            let chunk = DocumentCommand::Chunk {
                max_chars,
                overlap,
                at: loader.ago(minutes - 1),
            };
            loader
                .run::<Document>(&format!("document/{name}/chunk"), id, chunk, &())
                .await?;
        }
        if *stage >= 2 {
            let chunks = chunk_text(text, max_chars, overlap);
            let entity = |name: &str, kind: &str| Entity {
                name: name.to_owned(),
                kind: kind.to_owned(),
                chunk_indexes: chunks
                    .iter()
                    .filter(|c| c.slice(text).contains(name))
                    .map(|c| c.index)
                    .collect(),
                aliases: Vec::new(),
            };
            let entities = vec![
                entity("Acme Rockets", "organization"),
                entity("Globex", "organization"),
                entity("Initech", "organization"),
                entity("Northwind Outdoor", "organization"),
                entity("Harbor Financial", "organization"),
                entity("rocket skates", "product"),
            ];
            let relation = |from: &str, kind: &str, to: &str| Relation {
                from: from.to_owned(),
                to: to.to_owned(),
                kind: kind.to_owned(),
            };
            let record = DocumentCommand::RecordEntities {
                entities,
                relations: vec![
                    relation("Globex", "competes_with", "Acme Rockets"),
                    relation("Initech", "competes_with", "Acme Rockets"),
                    relation("Acme Rockets", "makes", "rocket skates"),
                    relation("Northwind Outdoor", "sells", "rocket skates"),
                ],
                extractor: ExtractorInfo {
                    name: "demo-ner".to_owned(),
                    version: "1".to_owned(),
                },
                replace: true,
                at: loader.ago(minutes - 2),
            };
            loader
                .run::<Document>(&format!("document/{name}/entities"), id, record, &())
                .await?;
        }
    }
    Ok(docs.len() as u32)
}

/// The Python FAQ (data/python-faq/, PSF License): real public text for research search.
const PYTHON_FAQ: &str = include_str!("../../data/python-faq/faq.json");

#[derive(serde::Deserialize)]
struct Faq {
    entries: Vec<FaqEntry>,
}

#[derive(serde::Deserialize)]
struct FaqEntry {
    page: String,
    question: String,
    answer: String,
}

/// Every answer of the Python FAQ as a document titled by its question, chunked on ingest, so
/// the embedding worker indexes them and a new user's first search finds real answers.
async fn load_python_faq(loader: &mut Loader<'_>) -> Result<u32, DemoError> {
    let faq: Faq = serde_json::from_str(PYTHON_FAQ)?;
    let base = 60 * 24;
    for (index, entry) in faq.entries.iter().enumerate() {
        let name = format!("python-faq/{index}");
        let ingest = DocumentCommand::Ingest {
            title: entry.question.clone(),
            source: format!("https://docs.python.org/3.11/faq/{}.html", entry.page),
            text: entry.answer.clone(),
            chunking: Some(Chunking::DEFAULT),
            at: loader.ago(base - index as i64),
        };
        loader
            .run::<Document>(
                &format!("document/{name}/ingest"),
                demo_id("document", &name),
                ingest,
                &(),
            )
            .await?;
    }
    Ok(faq.entries.len() as u32)
}
