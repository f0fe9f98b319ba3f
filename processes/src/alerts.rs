//! The alert detector: a process manager that follows the brand context's events, keeps hourly
//! series per brand (volume, negative mentions, mentions naming each competitor; event time is
//! the mentions' `published_at`), and raises an alert when an hour rises above its baseline by
//! the brand's rules (`plasma_domain::brand::detection`).
//!
//! Its state lives in the read store (`px_alert_*` tables) and changes in the transaction that
//! records its checkpoint, so a crash neither loses nor double-counts a mention. Its decisions
//! are commands on Alert aggregates whose ids are derived from (brand, kind, competitor, hour):
//! handling the same events again, a replay of the whole log, or a late mention for a window
//! already raised all land on the existing alert and record nothing.
//!
//! An open alert is resolved automatically once the brand's stream has moved past its hour and
//! the last complete hour is back to its baseline (within one spread of it); until then, the
//! following hours of the same surge raise nothing new. Only the current and the previous hour of
//! a brand's stream are evaluated, so a backfill of old mentions raises nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use plasma_commands::{CommandContext, CommandError, CommandHandler, RecordedEvent};
use plasma_domain::brand::detection::{self, HISTORY_HOURS};
use plasma_domain::brand::{
    terms, Alert, AlertCommand, AlertEvent, AlertEvidence, AlertKind, AlertRules, Brand,
    BrandEvent, Count, Mention, MentionEvent, RaiseAlert, SentimentLabel,
};
use plasma_domain::ids::{AlertId, BrandId, CommandId, CorrelationId, MentionId};
use plasma_domain::{AggregateId as _, Context, TenantId};
use plasma_projections::{on_tx, ProjectionError, ReadTx};
use uuid::Uuid;

use crate::{Process, ProcessError};

/// The detector's checkpoint and consumer group.
pub const NAME: &str = "alert_detector";

/// Alerts raised, by `kind`.
pub const METRIC_ALERTS_RAISED: &str = "plasma_alerts_raised_total";
/// Mentions the detector has folded into its series.
pub const METRIC_MENTIONS_EVALUATED: &str = "plasma_alert_mentions_evaluated_total";

/// Registers the detector's metric descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(METRIC_ALERTS_RAISED, "Alerts the detector raised");
    metrics::describe_counter!(
        METRIC_MENTIONS_EVALUATED,
        "Mentions the alert detector folded into its hourly series"
    );
}

const SECONDS_PER_HOUR: i64 = 3600;
/// Mentions kept per brand for evidence (top terms, authors, samples): the last two days.
const EVIDENCE_HOURS: i64 = 48;
const TOP: usize = 10;
const ROWS_PER_INSERT: usize = 400;

/// Namespace of the command ids the detector derives.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x3b0e_52d1_7f4a_4c8e_9d16_a2c7_55e9_01b3);

const VOLUME: &str = "volume";
const NEGATIVE: &str = "negative";
const COMPETITOR_PREFIX: &str = "competitor:";

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS px_alert_brands (
        tenant_id     TEXT   NOT NULL,
        brand_id      {uuid} NOT NULL,
        rules         TEXT,
        rule_version  BIGINT NOT NULL,
        first_hour    BIGINT,
        last_hour     BIGINT,
        PRIMARY KEY (tenant_id, brand_id)
    )",
    "CREATE TABLE IF NOT EXISTS px_alert_series (
        tenant_id TEXT   NOT NULL,
        brand_id  {uuid} NOT NULL,
        series    TEXT   NOT NULL,
        hour      BIGINT NOT NULL,
        value     BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, brand_id, series, hour)
    )",
    "CREATE TABLE IF NOT EXISTS px_alert_mentions (
        tenant_id   TEXT   NOT NULL,
        brand_id    {uuid} NOT NULL,
        hour        BIGINT NOT NULL,
        mention_id  {uuid} NOT NULL,
        author      TEXT   NOT NULL,
        sentiment   TEXT   NOT NULL,
        terms       TEXT   NOT NULL,
        competitors TEXT   NOT NULL,
        PRIMARY KEY (tenant_id, brand_id, hour, mention_id)
    )",
    "CREATE TABLE IF NOT EXISTS px_alert_windows (
        tenant_id TEXT   NOT NULL,
        alert_id  {uuid} NOT NULL,
        brand_id  {uuid} NOT NULL,
        kind      TEXT   NOT NULL,
        subject   TEXT   NOT NULL,
        hour      BIGINT NOT NULL,
        open      BOOLEAN NOT NULL,
        PRIMARY KEY (tenant_id, alert_id)
    )",
    "CREATE INDEX IF NOT EXISTS px_alert_windows_open ON px_alert_windows (tenant_id, brand_id, open)",
    "CREATE TABLE IF NOT EXISTS px_alert_snoozes (
        tenant_id TEXT   NOT NULL,
        brand_id  {uuid} NOT NULL,
        kind      TEXT   NOT NULL,
        until     BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, brand_id, kind)
    )",
];

/// Raises and resolves a tenant's brand alerts.
#[derive(Debug)]
pub struct AlertDetector {
    handler: CommandHandler,
    /// Brands' hourly series as read back from the read store, kept up to date with every
    /// batch this process folds in: judging a batch then reads nothing back. Forgotten
    /// whenever a batch's transaction may not have committed (a restart, a moved checkpoint).
    series: Mutex<HashMap<(TenantId, Uuid), CachedSeries>>,
}

/// A brand's series from hour `from` on.
#[derive(Debug, Clone)]
struct CachedSeries {
    from: i64,
    values: HashMap<String, BTreeMap<i64, f64>>,
}

/// Brands whose series are kept in memory at most; beyond, the cache starts over.
const CACHED_BRANDS: usize = 20_000;

impl AlertDetector {
    pub fn new(handler: CommandHandler) -> Self {
        Self {
            handler,
            series: Mutex::new(HashMap::new()),
        }
    }

    fn forget_series(&self) {
        if let Ok(mut cache) = self.series.lock() {
            cache.clear();
        }
    }

    /// The brand's series from `from` on, if they are in memory that far back.
    fn cached_series(
        &self,
        tenant: &TenantId,
        brand: Uuid,
        from: i64,
    ) -> Option<HashMap<String, BTreeMap<i64, f64>>> {
        let cache = self.series.lock().ok()?;
        let cached = cache.get(&(tenant.clone(), brand))?;
        (cached.from <= from).then(|| cached.values.clone())
    }

    fn remember_series(
        &self,
        tenant: &TenantId,
        brand: Uuid,
        from: i64,
        values: HashMap<String, BTreeMap<i64, f64>>,
    ) {
        if let Ok(mut cache) = self.series.lock() {
            if cache.len() >= CACHED_BRANDS {
                cache.clear();
            }
            cache.insert((tenant.clone(), brand), CachedSeries { from, values });
        }
    }

    /// Adds a batch's deltas to the brands in memory, as `fold_series` adds them to the store.
    fn fold_cached(&self, deltas: &Deltas<'_>) {
        let Ok(mut cache) = self.series.lock() else {
            return;
        };
        for ((tenant, brand, series, hour), n) in deltas {
            let Ok(tenant) = TenantId::parse(tenant) else {
                continue;
            };
            if let Some(cached) = cache.get_mut(&(tenant, *brand)) {
                if *hour >= cached.from {
                    *cached
                        .values
                        .entry(series.clone())
                        .or_default()
                        .entry(*hour)
                        .or_default() += *n as f64;
                }
            }
        }
    }

    /// Drops what no judgement will read again: hours before `from`.
    fn trim_cached(&self, tenant: &TenantId, brand: Uuid, from: i64) {
        if let Ok(mut cache) = self.series.lock() {
            if let Some(cached) = cache.get_mut(&(tenant.clone(), brand)) {
                if from > cached.from {
                    for values in cached.values.values_mut() {
                        *values = values.split_off(&from);
                    }
                    cached.from = from;
                }
            }
        }
    }
}

/// A batch's additions to the hourly series: (tenant, brand, series, hour) → mentions.
type Deltas<'a> = BTreeMap<(&'a str, Uuid, String, i64), i64>;

/// One ingested mention, as the detector keeps it.
struct Fact {
    tenant: TenantId,
    brand: Uuid,
    hour: i64,
    mention: Uuid,
    author: String,
    sentiment: SentimentLabel,
    terms: Vec<String>,
    competitors: Vec<String>,
    event_id: Uuid,
    correlation: Uuid,
}

type BrandKey = (TenantId, Uuid);

/// A brand's detector settings and stream extent.
struct BrandState {
    rules: AlertRules,
    rule_version: u32,
    first_hour: Option<i64>,
    last_hour: Option<i64>,
}

/// What triggered an evaluation: the newest mention event for the brand in the batch.
#[derive(Clone, Copy)]
struct Cause {
    event_id: Uuid,
    correlation: Uuid,
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> ProcessError {
    move |err| ProcessError::Projection(ProjectionError::db(what)(err))
}

fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SECONDS_PER_HOUR)
}

fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour * SECONDS_PER_HOUR, 0).unwrap_or_default()
}

fn label_str(label: SentimentLabel) -> &'static str {
    match label {
        SentimentLabel::Positive => "positive",
        SentimentLabel::Neutral => "neutral",
        SentimentLabel::Negative => "negative",
    }
}

impl AlertDetector {
    fn command_id(action: &str, alert: AlertId) -> CommandId {
        let key = format!("{action}/{alert}");
        CommandId::from_uuid(Uuid::new_v5(&COMMAND_NAMESPACE, key.as_bytes()))
    }

    async fn execute(
        &self,
        tenant: &TenantId,
        alert: AlertId,
        action: &str,
        cause: Cause,
        command: AlertCommand,
    ) -> Result<bool, ProcessError> {
        let mut context = CommandContext::new(
            tenant.clone(),
            Self::command_id(action, alert),
            Some(CorrelationId::from_uuid(cause.correlation)),
        );
        context.causation_id = cause.event_id;
        match self
            .handler
            .execute::<Alert>(&context, alert.as_uuid(), command, &())
            .await
        {
            Ok(receipt) => Ok(!receipt.replayed && receipt.events_appended > 0),
            // Decided before, from a different batch (other counts in the evidence): the first
            // decision stands.
            Err(CommandError::IdempotencyKeyReused) => Ok(false),
            Err(CommandError::Store(err)) => Err(err.into()),
            Err(other) => Err(ProcessError::Refused(other.to_string())),
        }
    }
}

#[async_trait]
impl Process for AlertDetector {
    fn name(&self) -> &str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    async fn handle(&self, _events: &[RecordedEvent]) -> Result<(), ProcessError> {
        Err(ProcessError::Task(
            "the alert detector keeps state: run it with a transaction".into(),
        ))
    }

    fn keeps_state(&self) -> bool {
        true
    }

    fn abandoned(&self) {
        self.forget_series();
    }

    async fn prepare(&self, tx: &mut ReadTx) -> Result<(), ProcessError> {
        // A (re)start: whatever is in memory may include a batch that never committed.
        self.forget_series();
        let uuid = if tx.is_postgres() { "uuid" } else { "BLOB" };
        for ddl in DDL {
            tx.execute(
                &ddl.replace("{uuid}", uuid),
                "creating the alert detector's tables",
            )
            .await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn handle_in(
        &self,
        tx: &mut ReadTx,
        events: &[RecordedEvent],
    ) -> Result<(), ProcessError> {
        let mut facts = Vec::new();
        for event in events {
            match event.aggregate_type.as_str() {
                Mention::TYPE => {
                    if event.event_type != "MentionIngested" {
                        continue;
                    }
                    let MentionEvent::MentionIngested(m) = event.decode::<MentionEvent>()? else {
                        continue;
                    };
                    facts.push(Fact {
                        tenant: event.tenant.clone(),
                        brand: m.brand_id.as_uuid(),
                        hour: hour_of(m.published_at),
                        mention: event.aggregate_id,
                        author: m.author.clone(),
                        sentiment: m.sentiment.label,
                        terms: terms::terms(&m.text),
                        competitors: m.competitors_mentioned.clone(),
                        event_id: event.event_id,
                        correlation: event.correlation_id,
                    });
                }
                Brand::TYPE => apply_brand_event(tx, event).await?,
                Alert::TYPE => apply_alert_event(tx, event).await?,
                _ => {}
            }
        }
        if facts.is_empty() {
            return Ok(());
        }
        metrics::counter!(METRIC_MENTIONS_EVALUATED).increment(facts.len() as u64);
        let mut by_brand: BTreeMap<BrandKey, Vec<&Fact>> = BTreeMap::new();
        for fact in &facts {
            by_brand
                .entry((fact.tenant.clone(), fact.brand))
                .or_default()
                .push(fact);
        }
        let deltas = deltas(&facts);
        fold_series(tx, &deltas).await?;
        self.fold_cached(&deltas);
        insert_mentions(tx, &facts).await?;
        for ((tenant, brand), facts) in by_brand {
            self.evaluate_brand(tx, &tenant, brand, &facts).await?;
        }
        Ok(())
    }
}

async fn apply_brand_event(tx: &mut ReadTx, event: &RecordedEvent) -> Result<(), ProcessError> {
    let (rules, version) = match event.event_type.as_str() {
        "BrandRegistered" => (None, 0i64),
        "BrandAlertRulesChanged" => match event.decode::<BrandEvent>()? {
            BrandEvent::BrandAlertRulesChanged { rules, version, .. } => (
                Some(serde_json::to_string(&rules).unwrap_or_default()),
                i64::from(version),
            ),
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    let sql = "INSERT INTO px_alert_brands (tenant_id, brand_id, rules, rule_version) \
               VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, brand_id) DO UPDATE SET \
               rules = excluded.rules, rule_version = excluded.rule_version";
    on_tx!(tx, |c| sqlx::query(sql)
        .bind(event.tenant.as_str())
        .bind(event.aggregate_id)
        .bind(rules)
        .bind(version)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db("recording a brand's alert rules"))?);
    Ok(())
}

async fn apply_alert_event(tx: &mut ReadTx, event: &RecordedEvent) -> Result<(), ProcessError> {
    let tenant = event.tenant.as_str();
    match event.decode::<AlertEvent>()? {
        AlertEvent::AlertRaised(raised) => {
            let sql = "INSERT INTO px_alert_windows \
                       (tenant_id, alert_id, brand_id, kind, subject, hour, open) \
                       VALUES ($1, $2, $3, $4, $5, $6, TRUE) ON CONFLICT DO NOTHING";
            on_tx!(tx, |c| sqlx::query(sql)
                .bind(tenant)
                .bind(event.aggregate_id)
                .bind(raised.brand_id.as_uuid())
                .bind(raised.kind.as_str())
                .bind(raised.competitor.clone().unwrap_or_default())
                .bind(hour_of(raised.evidence.window_start))
                .execute(c)
                .await
                .map(|_| ())
                .map_err(db("recording a raised alert"))?);
        }
        AlertEvent::AlertResolved { .. } => {
            let sql = "UPDATE px_alert_windows SET open = FALSE \
                       WHERE tenant_id = $1 AND alert_id = $2";
            on_tx!(tx, |c| sqlx::query(sql)
                .bind(tenant)
                .bind(event.aggregate_id)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(db("recording a resolved alert"))?);
        }
        AlertEvent::AlertSnoozed { until, .. } => {
            let sql = "INSERT INTO px_alert_snoozes (tenant_id, brand_id, kind, until) \
                       SELECT tenant_id, brand_id, kind, $3 FROM px_alert_windows \
                       WHERE tenant_id = $1 AND alert_id = $2 \
                       ON CONFLICT (tenant_id, brand_id, kind) DO UPDATE SET until = \
                       CASE WHEN excluded.until > px_alert_snoozes.until \
                       THEN excluded.until ELSE px_alert_snoozes.until END";
            on_tx!(tx, |c| sqlx::query(sql)
                .bind(tenant)
                .bind(event.aggregate_id)
                .bind(until.timestamp())
                .execute(c)
                .await
                .map(|_| ())
                .map_err(db("recording a snooze"))?);
        }
        AlertEvent::AlertAcknowledged { .. } => {}
    }
    Ok(())
}

/// What a batch adds to each series.
fn deltas(facts: &[Fact]) -> Deltas<'_> {
    let mut deltas: Deltas<'_> = BTreeMap::new();
    for fact in facts {
        let key = |series: String| (fact.tenant.as_str(), fact.brand, series, fact.hour);
        *deltas.entry(key(VOLUME.into())).or_default() += 1;
        if fact.sentiment == SentimentLabel::Negative {
            *deltas.entry(key(NEGATIVE.into())).or_default() += 1;
        }
        for competitor in &fact.competitors {
            *deltas
                .entry(key(format!("{COMPETITOR_PREFIX}{competitor}")))
                .or_default() += 1;
        }
    }
    deltas
}

/// Adds the batch's mentions to the hourly series, one upsert per (brand, series, hour).
async fn fold_series(tx: &mut ReadTx, deltas: &Deltas<'_>) -> Result<(), ProcessError> {
    let deltas: Vec<_> = deltas.iter().collect();
    for chunk in deltas.chunks(ROWS_PER_INSERT) {
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO px_alert_series (tenant_id, brand_id, series, hour, value) ",
            );
            query.push_values(chunk, |mut b, ((tenant, brand, series, hour), n)| {
                b.push_bind(*tenant)
                    .push_bind(*brand)
                    .push_bind(series.as_str())
                    .push_bind(*hour)
                    .push_bind(**n);
            });
            query.push(
                " ON CONFLICT (tenant_id, brand_id, series, hour) DO UPDATE SET \
                 value = px_alert_series.value + excluded.value",
            );
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(db("folding mentions into the alert series"))?
        });
    }
    Ok(())
}

/// Keeps the batch's mentions for evidence.
async fn insert_mentions(tx: &mut ReadTx, facts: &[Fact]) -> Result<(), ProcessError> {
    for chunk in facts.chunks(ROWS_PER_INSERT) {
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO px_alert_mentions \
                 (tenant_id, brand_id, hour, mention_id, author, sentiment, terms, competitors) ",
            );
            query.push_values(chunk, |mut b, f| {
                b.push_bind(f.tenant.as_str())
                    .push_bind(f.brand)
                    .push_bind(f.hour)
                    .push_bind(f.mention)
                    .push_bind(f.author.as_str())
                    .push_bind(label_str(f.sentiment))
                    .push_bind(f.terms.join("\n"))
                    .push_bind(serde_json::to_string(&f.competitors).unwrap_or_default());
            });
            query.push(" ON CONFLICT DO NOTHING");
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(db("keeping mentions for alert evidence"))?
        });
    }
    Ok(())
}

/// One brand's hourly series around the hours being evaluated.
struct Series {
    first_hour: i64,
    values: HashMap<String, BTreeMap<i64, f64>>,
}

impl Series {
    fn at(&self, series: &str, hour: i64) -> f64 {
        self.values
            .get(series)
            .and_then(|v| v.get(&hour))
            .copied()
            .unwrap_or(0.0)
    }

    /// The history before `hour`, oldest first: `None` before the brand's first mention.
    fn history(&self, hour: i64, value: impl Fn(i64) -> Option<f64>) -> Vec<Option<f64>> {
        (hour - HISTORY_HOURS as i64..hour)
            .map(|h| if h < self.first_hour { None } else { value(h) })
            .collect()
    }
}

/// The sampling noise of a series given its expected value, as a floor for its spread.
type NoiseFloor = Box<dyn Fn(f64) -> f64>;

/// `px_alert_brands`: rules, rule version, first and last hour.
type BrandRow = (Option<String>, i64, Option<i64>, Option<i64>);

/// A detector's verdict on one series at one hour.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    value: f64,
    baseline: detection::Baseline,
    threshold: f64,
    mentions: f64,
}

impl Verdict {
    fn alerts(&self, min_volume: f64) -> bool {
        self.mentions >= min_volume && self.value > self.threshold
    }

    /// Back to the baseline: within one spread of it (or k spreads, if k is below one); for a
    /// share, also an hour with too few mentions to judge it. Rising above k spreads raises,
    /// falling back within one resolves: an hour that merely dips under the threshold (or
    /// under the minimum volume) mid-surge keeps it one alert.
    fn back_to_baseline(&self, kind: AlertKind, min_volume: f64, k: f64) -> bool {
        (kind == AlertKind::NegativeSurge && self.mentions < min_volume)
            || self.value <= self.baseline.expected + k.min(1.0) * self.baseline.spread
    }
}

fn judge(
    rules: &AlertRules,
    series: &Series,
    kind: AlertKind,
    subject: &str,
    hour: i64,
) -> Option<Verdict> {
    let mentions = series.at(VOLUME, hour);
    let (value, history, floor): (f64, Vec<Option<f64>>, NoiseFloor) = match kind {
        AlertKind::VolumeSpike => (
            mentions,
            series.history(hour, |h| Some(series.at(VOLUME, h))),
            Box::new(|expected: f64| expected.max(1.0).sqrt()),
        ),
        AlertKind::NegativeSurge => {
            if mentions <= 0.0 {
                return None;
            }
            let share = |h: i64| {
                let volume = series.at(VOLUME, h);
                (volume > 0.0).then(|| series.at(NEGATIVE, h) / volume)
            };
            (
                series.at(NEGATIVE, hour) / mentions,
                series.history(hour, share),
                // The binomial noise of a share measured over this hour's mentions.
                Box::new(move |expected: f64| {
                    let p = expected.clamp(0.02, 0.98);
                    (p * (1.0 - p) / mentions).sqrt()
                }),
            )
        }
        AlertKind::CompetitorSurge => {
            let name = format!("{COMPETITOR_PREFIX}{subject}");
            (
                series.at(&name, hour),
                series.history(hour, |h| Some(series.at(&name, h))),
                Box::new(|expected: f64| expected.max(1.0).sqrt()),
            )
        }
    };
    let baseline = detection::baseline(rules.method, &history)?;
    let baseline = baseline.with_floor(floor(baseline.expected));
    Some(Verdict {
        value,
        baseline,
        threshold: baseline.threshold(rules.k),
        mentions: if kind == AlertKind::CompetitorSurge {
            value
        } else {
            mentions
        },
    })
}

impl AlertDetector {
    async fn evaluate_brand(
        &self,
        tx: &mut ReadTx,
        tenant: &TenantId,
        brand: Uuid,
        facts: &[&Fact],
    ) -> Result<(), ProcessError> {
        let Some(last) = facts.last() else {
            return Ok(());
        };
        let cause = Cause {
            event_id: last.event_id,
            correlation: last.correlation,
        };
        let state = load_brand(tx, tenant, brand).await?;
        let batch_first = facts.iter().map(|f| f.hour).min().unwrap_or(last.hour);
        let batch_last = facts.iter().map(|f| f.hour).max().unwrap_or(last.hour);
        let first_hour = state.first_hour.map_or(batch_first, |h| h.min(batch_first));
        let previous_last = state.last_hour;
        let last_hour = previous_last.map_or(batch_last, |h| h.max(batch_last));
        save_extent(tx, tenant, brand, first_hour, last_hour).await?;

        // The hours this batch touched while they were current for the brand's stream (the
        // newest hour so far, or the one before): a backfill of older hours raises nothing.
        let mut running = previous_last.unwrap_or(i64::MIN);
        let mut hours: BTreeSet<i64> = BTreeSet::new();
        for fact in facts {
            running = running.max(fact.hour);
            if fact.hour >= running - 1 {
                hours.insert(fact.hour);
            }
        }
        let earliest = hours.first().copied().unwrap_or(last_hour).min(last_hour);
        let from = earliest - 1 - HISTORY_HOURS as i64;
        let values = match self.cached_series(tenant, brand, from) {
            Some(values) => values,
            None => {
                let values = load_series(tx, tenant, brand, from, last_hour).await?;
                self.remember_series(tenant, brand, from, values.clone());
                values
            }
        };
        self.trim_cached(tenant, brand, last_hour - 2 - HISTORY_HOURS as i64);
        let series = Series { first_hour, values };
        let rules = &state.rules;
        let min_volume = f64::from(rules.min_volume);
        // The stream replayed hour by hour: reaching a new hour first resolves what the last
        // complete one shows back under the threshold, then judges the new one.
        let mut reached = previous_last;
        for &hour in &hours {
            if reached.is_some_and(|r| hour > r) {
                self.resolve_back(tx, tenant, brand, rules, &series, hour - 1, cause)
                    .await?;
            }
            reached = Some(reached.map_or(hour, |r| r.max(hour)));
            let competitors: BTreeSet<&str> = facts
                .iter()
                .filter(|f| f.hour == hour)
                .flat_map(|f| f.competitors.iter().map(String::as_str))
                .collect();
            let mut candidates = vec![(AlertKind::VolumeSpike, ""), (AlertKind::NegativeSurge, "")];
            candidates.extend(
                competitors
                    .into_iter()
                    .map(|c| (AlertKind::CompetitorSurge, c)),
            );
            for (kind, subject) in candidates {
                if !rules.enabled(kind) {
                    continue;
                }
                let Some(verdict) = judge(rules, &series, kind, subject, hour) else {
                    continue;
                };
                if !verdict.alerts(min_volume) {
                    continue;
                }
                let brand_id = BrandId::from_uuid(brand);
                let alert = AlertId::derive(
                    tenant,
                    brand_id,
                    kind.as_str(),
                    subject,
                    hour * SECONDS_PER_HOUR,
                );
                // Known, or the same surge still open from an earlier hour: it stays one alert
                // until the stream is back under the threshold.
                if window_known(tx, tenant, alert).await?
                    || surge_open(tx, tenant, brand, kind, subject).await?
                {
                    continue;
                }
                let evidence =
                    evidence(tx, tenant, brand, hour, kind, subject, rules, verdict).await?;
                let notify = !snoozed(tx, tenant, brand, kind).await?;
                remember_window(tx, tenant, alert, brand, kind, subject, hour).await?;
                let raise = RaiseAlert {
                    brand_id,
                    kind,
                    competitor: (kind == AlertKind::CompetitorSurge).then(|| subject.to_owned()),
                    evidence,
                    rule_version: state.rule_version,
                    channels: rules.channels.clone(),
                    notify,
                    at: Utc::now(),
                };
                if self
                    .execute(
                        tenant,
                        alert,
                        "raise",
                        cause,
                        AlertCommand::Raise(Box::new(raise)),
                    )
                    .await?
                {
                    metrics::counter!(METRIC_ALERTS_RAISED, "kind" => kind.as_str()).increment(1);
                    tracing::info!(%tenant, %brand, kind = kind.as_str(), subject, hour, value = verdict.value, threshold = verdict.threshold, "alert raised");
                }
            }
        }

        if previous_last.is_some_and(|p| last_hour > p) {
            prune(tx, tenant, brand, last_hour).await?;
        }
        Ok(())
    }

    /// Resolves the brand's open alerts whose series is back under the threshold in the hour
    /// `complete` (the last complete hour of its stream).
    #[allow(clippy::too_many_arguments)]
    async fn resolve_back(
        &self,
        tx: &mut ReadTx,
        tenant: &TenantId,
        brand: Uuid,
        rules: &AlertRules,
        series: &Series,
        complete: i64,
        cause: Cause,
    ) -> Result<(), ProcessError> {
        let min_volume = f64::from(rules.min_volume);
        for (alert, kind, subject, hour) in open_windows(tx, tenant, brand).await? {
            if complete <= hour {
                continue;
            }
            let back = match judge(rules, series, kind, &subject, complete) {
                Some(verdict) => verdict.back_to_baseline(kind, min_volume, rules.k),
                None => true,
            };
            if !back {
                continue;
            }
            close_window(tx, tenant, alert).await?;
            let note = format!(
                "back to the baseline in the hour from {}",
                hour_start(complete).to_rfc3339()
            );
            self.execute(
                tenant,
                alert,
                "auto-resolve",
                cause,
                AlertCommand::Resolve {
                    automatically: true,
                    note,
                    at: Utc::now(),
                },
            )
            .await?;
        }
        Ok(())
    }
}

async fn load_brand(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
) -> Result<BrandState, ProcessError> {
    let sql = "SELECT rules, rule_version, first_hour, last_hour FROM px_alert_brands \
               WHERE tenant_id = $1 AND brand_id = $2";
    let row: Option<BrandRow> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .fetch_optional(c)
        .await
        .map_err(db("loading a brand's alert state"))?);
    let Some((rules, version, first_hour, last_hour)) = row else {
        return Ok(BrandState {
            rules: AlertRules::default(),
            rule_version: 0,
            first_hour: None,
            last_hour: None,
        });
    };
    Ok(BrandState {
        rules: rules
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_default(),
        rule_version: u32::try_from(version).unwrap_or(0),
        first_hour,
        last_hour,
    })
}

async fn save_extent(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
    first_hour: i64,
    last_hour: i64,
) -> Result<(), ProcessError> {
    let sql =
        "INSERT INTO px_alert_brands (tenant_id, brand_id, rule_version, first_hour, last_hour) \
               VALUES ($1, $2, 0, $3, $4) ON CONFLICT (tenant_id, brand_id) DO UPDATE SET \
               first_hour = excluded.first_hour, last_hour = excluded.last_hour";
    on_tx!(tx, |c| sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .bind(first_hour)
        .bind(last_hour)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db("recording a brand's stream extent"))?);
    Ok(())
}

async fn load_series(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
    from: i64,
    to: i64,
) -> Result<HashMap<String, BTreeMap<i64, f64>>, ProcessError> {
    let sql = "SELECT series, hour, value FROM px_alert_series \
               WHERE tenant_id = $1 AND brand_id = $2 AND hour >= $3 AND hour <= $4";
    let rows: Vec<(String, i64, i64)> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .bind(from)
        .bind(to)
        .fetch_all(c)
        .await
        .map_err(db("loading a brand's alert series"))?);
    let mut values: HashMap<String, BTreeMap<i64, f64>> = HashMap::new();
    for (series, hour, value) in rows {
        values.entry(series).or_default().insert(hour, value as f64);
    }
    Ok(values)
}

async fn window_known(
    tx: &mut ReadTx,
    tenant: &TenantId,
    alert: AlertId,
) -> Result<bool, ProcessError> {
    let sql = "SELECT 1 FROM px_alert_windows WHERE tenant_id = $1 AND alert_id = $2";
    let row: Option<(i32,)> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(alert.as_uuid())
        .fetch_optional(c)
        .await
        .map_err(db("looking up an alert window"))?);
    Ok(row.is_some())
}

async fn surge_open(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
    kind: AlertKind,
    subject: &str,
) -> Result<bool, ProcessError> {
    let sql = "SELECT 1 FROM px_alert_windows WHERE tenant_id = $1 AND brand_id = $2 \
               AND kind = $3 AND subject = $4 AND open = TRUE";
    let row: Option<(i32,)> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .bind(kind.as_str())
        .bind(subject)
        .fetch_optional(c)
        .await
        .map_err(db("looking up an open alert"))?);
    Ok(row.is_some())
}

async fn remember_window(
    tx: &mut ReadTx,
    tenant: &TenantId,
    alert: AlertId,
    brand: Uuid,
    kind: AlertKind,
    subject: &str,
    hour: i64,
) -> Result<(), ProcessError> {
    let sql =
        "INSERT INTO px_alert_windows (tenant_id, alert_id, brand_id, kind, subject, hour, open) \
               VALUES ($1, $2, $3, $4, $5, $6, TRUE) ON CONFLICT DO NOTHING";
    on_tx!(tx, |c| sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(alert.as_uuid())
        .bind(brand)
        .bind(kind.as_str())
        .bind(subject)
        .bind(hour)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db("recording an alert window"))?);
    Ok(())
}

async fn close_window(
    tx: &mut ReadTx,
    tenant: &TenantId,
    alert: AlertId,
) -> Result<(), ProcessError> {
    let sql = "UPDATE px_alert_windows SET open = FALSE WHERE tenant_id = $1 AND alert_id = $2";
    on_tx!(tx, |c| sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(alert.as_uuid())
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db("closing an alert window"))?);
    Ok(())
}

async fn open_windows(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
) -> Result<Vec<(AlertId, AlertKind, String, i64)>, ProcessError> {
    let sql = "SELECT alert_id, kind, subject, hour FROM px_alert_windows \
               WHERE tenant_id = $1 AND brand_id = $2 AND open = TRUE ORDER BY hour, alert_id";
    let rows: Vec<(Uuid, String, String, i64)> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .fetch_all(c)
        .await
        .map_err(db("loading open alerts"))?);
    Ok(rows
        .into_iter()
        .filter_map(|(id, kind, subject, hour)| {
            Some((
                AlertId::from_uuid(id),
                AlertKind::parse(&kind)?,
                subject,
                hour,
            ))
        })
        .collect())
}

async fn snoozed(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
    kind: AlertKind,
) -> Result<bool, ProcessError> {
    let sql =
        "SELECT until FROM px_alert_snoozes WHERE tenant_id = $1 AND brand_id = $2 AND kind = $3";
    let row: Option<(i64,)> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .bind(kind.as_str())
        .fetch_optional(c)
        .await
        .map_err(db("looking up a snooze"))?);
    Ok(row.is_some_and(|(until,)| until > Utc::now().timestamp()))
}

async fn prune(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
    last_hour: i64,
) -> Result<(), ProcessError> {
    for (sql, keep) in [
        (
            "DELETE FROM px_alert_mentions WHERE tenant_id = $1 AND brand_id = $2 AND hour < $3",
            EVIDENCE_HOURS,
        ),
        (
            "DELETE FROM px_alert_series WHERE tenant_id = $1 AND brand_id = $2 AND hour < $3",
            HISTORY_HOURS as i64 + 2,
        ),
    ] {
        on_tx!(tx, |c| sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(brand)
            .bind(last_hour - keep)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(db("pruning the alert detector's state"))?);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn evidence(
    tx: &mut ReadTx,
    tenant: &TenantId,
    brand: Uuid,
    hour: i64,
    kind: AlertKind,
    subject: &str,
    rules: &AlertRules,
    verdict: Verdict,
) -> Result<AlertEvidence, ProcessError> {
    let sql = "SELECT mention_id, author, sentiment, terms, competitors FROM px_alert_mentions \
               WHERE tenant_id = $1 AND brand_id = $2 AND hour = $3 ORDER BY mention_id";
    let rows: Vec<(Uuid, String, String, String, String)> = on_tx!(tx, |c| sqlx::query_as(sql)
        .bind(tenant.as_str())
        .bind(brand)
        .bind(hour)
        .fetch_all(c)
        .await
        .map_err(db("loading an alert window's mentions"))?);
    let all = rows.len() as u64;
    let negatives = rows.iter().filter(|r| r.2 == "negative").count() as u64;
    let rows: Vec<_> = if kind == AlertKind::CompetitorSurge {
        rows.into_iter()
            .filter(|r| {
                serde_json::from_str::<Vec<String>>(&r.4)
                    .is_ok_and(|c| c.iter().any(|c| c == subject))
            })
            .collect()
    } else {
        rows
    };
    let mut sentiments: BTreeMap<&str, u64> = BTreeMap::new();
    let mut terms: HashMap<&str, u64> = HashMap::new();
    let mut authors: HashMap<&str, u64> = HashMap::new();
    for (_, author, sentiment, words, _) in &rows {
        *sentiments.entry(sentiment.as_str()).or_default() += 1;
        for term in words.split('\n').filter(|t| !t.is_empty()) {
            *terms.entry(term).or_default() += 1;
        }
        if !author.is_empty() {
            *authors.entry(author.as_str()).or_default() += 1;
        }
    }
    let dominant = sentiments
        .iter()
        .max_by_key(|(label, n)| (**n, std::cmp::Reverse(**label)))
        .map_or(SentimentLabel::Neutral, |(label, _)| match *label {
            "positive" => SentimentLabel::Positive,
            "negative" => SentimentLabel::Negative,
            _ => SentimentLabel::Neutral,
        });
    Ok(AlertEvidence {
        window_start: hour_start(hour),
        window_end: hour_start(hour + 1),
        value: verdict.value,
        mentions: all,
        baseline: verdict.baseline.expected,
        spread: verdict.baseline.spread,
        threshold: verdict.threshold,
        method: rules.method,
        k: rules.k,
        dominant_sentiment: dominant,
        negative_share: if all == 0 {
            0.0
        } else {
            negatives as f64 / all as f64
        },
        top_terms: top(terms),
        top_authors: top(authors),
        sample_mention_ids: rows
            .iter()
            .take(TOP)
            .map(|r| MentionId::from_uuid(r.0))
            .collect(),
    })
}

/// The most frequent, ties by value; only what occurs at least twice (or the single top one).
fn top(counts: HashMap<&str, u64>) -> Vec<Count> {
    let mut counts: Vec<(&str, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .into_iter()
        .enumerate()
        .filter(|(i, (_, n))| *i == 0 || *n >= 2)
        .take(TOP)
        .map(|(_, (value, count))| Count {
            value: value.to_owned(),
            count,
        })
        .collect()
}

/// The detector as a shareable process.
pub fn detector(handler: CommandHandler) -> Arc<dyn Process> {
    Arc::new(AlertDetector::new(handler))
}
