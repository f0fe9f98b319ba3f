//! Alerts with their evidence and lifecycle, and the deliveries of their notifications with
//! every attempt (the delivery log).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::brand::{
    Alert, AlertEvent, AlertEvidence, AlertKind, AlertStatus, Delivery, DeliveryEvent,
    DeliveryStatus,
};
use plasma_domain::ids::{AlertId, BrandId, DeliveryId};
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use super::{json_text, micros, update_row, Value};
use crate::read_models::{
    from_micros, json_column, paginate, Cursor, Page, PageRequest, ReadModels,
};
use crate::read_store::{on_pool, on_tx};
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "alerts";

#[derive(Debug, Clone, Copy)]
pub struct AlertsProjection;

#[async_trait]
impl Projection for AlertsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_alerts", "rm_deliveries", "rm_delivery_attempts"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS rm_alerts{t} (
                tenant_id     TEXT   NOT NULL,
                alert_id      {uuid} NOT NULL,
                brand_id      {uuid} NOT NULL,
                kind          TEXT   NOT NULL,
                competitor    TEXT,
                status        TEXT   NOT NULL,
                window_start  BIGINT NOT NULL,
                evidence      TEXT   NOT NULL,
                rule_version  BIGINT NOT NULL,
                notified      BOOLEAN NOT NULL,
                note          TEXT   NOT NULL,
                resolved_automatically BOOLEAN,
                snoozed_until BIGINT,
                raised_at     BIGINT NOT NULL,
                updated_at    BIGINT NOT NULL,
                version       BIGINT NOT NULL,
                position      BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, alert_id)
            )",
            "CREATE INDEX IF NOT EXISTS rm_alerts_newest_{g} ON rm_alerts{t}
                (tenant_id, window_start DESC, alert_id DESC)",
            "CREATE TABLE IF NOT EXISTS rm_deliveries{t} (
                tenant_id    TEXT   NOT NULL,
                delivery_id  {uuid} NOT NULL,
                alert_id     {uuid} NOT NULL,
                brand_id     {uuid} NOT NULL,
                channel_id   TEXT   NOT NULL,
                url          TEXT   NOT NULL,
                event        TEXT   NOT NULL,
                status       TEXT   NOT NULL,
                attempts     BIGINT NOT NULL,
                due_at       BIGINT,
                last_status  BIGINT,
                last_error   TEXT,
                scheduled_at BIGINT NOT NULL,
                updated_at   BIGINT NOT NULL,
                version      BIGINT NOT NULL,
                position     BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, delivery_id)
            )",
            "CREATE INDEX IF NOT EXISTS rm_deliveries_due_{g} ON rm_deliveries{t} (status, due_at)",
            "CREATE INDEX IF NOT EXISTS rm_deliveries_by_alert_{g} ON rm_deliveries{t} (tenant_id, alert_id)",
            "CREATE TABLE IF NOT EXISTS rm_delivery_attempts{t} (
                tenant_id   TEXT   NOT NULL,
                delivery_id {uuid} NOT NULL,
                attempt     BIGINT NOT NULL,
                status      BIGINT,
                error       TEXT,
                duration_ms BIGINT NOT NULL,
                retry_at    BIGINT,
                at          BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, delivery_id, attempt)
            )",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match event.aggregate_type.as_str() {
                Alert::TYPE => apply_alert(tx, tables, event).await?,
                Delivery::TYPE => apply_delivery(tx, tables, event).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_alert(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let table = tables.name("rm_alerts");
    let (columns, at) = match event.decode::<AlertEvent>()? {
        AlertEvent::AlertRaised(raised) => {
            let sql = format!(
                "INSERT INTO {table} (tenant_id, alert_id, brand_id, kind, competitor, status, \
                 window_start, evidence, rule_version, notified, note, raised_at, updated_at, \
                 version, position) \
                 VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, '', $10, $10, $11, $12) \
                 ON CONFLICT DO NOTHING"
            );
            on_tx!(tx, |c| sqlx::query(&sql)
                .bind(event.tenant.as_str())
                .bind(event.aggregate_id)
                .bind(raised.brand_id.as_uuid())
                .bind(raised.kind.as_str())
                .bind(raised.competitor.as_deref())
                .bind(micros(raised.evidence.window_start))
                .bind(json_text(&raised.evidence, "{}"))
                .bind(i64::from(raised.rule_version))
                .bind(raised.notify)
                .bind(micros(raised.at))
                .bind(event.sequence)
                .bind(event.position)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting an alert"))?);
            return Ok(());
        }
        AlertEvent::AlertAcknowledged { note, at } => (
            vec![
                ("status", Value::text(AlertStatus::Acknowledged.as_str())),
                ("note", Value::text(note)),
            ],
            at,
        ),
        AlertEvent::AlertResolved {
            automatically,
            note,
            at,
        } => (
            vec![
                ("status", Value::text(AlertStatus::Resolved.as_str())),
                ("note", Value::text(note)),
                ("resolved_automatically", Value::Bool(Some(automatically))),
            ],
            at,
        ),
        AlertEvent::AlertSnoozed { until, at } => {
            (vec![("snoozed_until", Value::int(micros(until)))], at)
        }
    };
    update_row(
        tx,
        &table,
        "alert_id",
        event,
        micros(at),
        &columns,
        "projecting an alert change",
    )
    .await
}

async fn apply_delivery(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let table = tables.name("rm_deliveries");
    let (columns, at) = match event.decode::<DeliveryEvent>()? {
        DeliveryEvent::DeliveryScheduled(scheduled) => {
            let sql = format!(
                "INSERT INTO {table} (tenant_id, delivery_id, alert_id, brand_id, channel_id, url, \
                 event, status, attempts, due_at, scheduled_at, updated_at, version, position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8, $9, $10) \
                 ON CONFLICT DO NOTHING"
            );
            on_tx!(tx, |c| sqlx::query(&sql)
                .bind(event.tenant.as_str())
                .bind(event.aggregate_id)
                .bind(scheduled.alert_id.as_uuid())
                .bind(scheduled.brand_id.as_uuid())
                .bind(&scheduled.channel.id)
                .bind(&scheduled.channel.url)
                .bind(&scheduled.event)
                .bind(micros(scheduled.at))
                .bind(event.sequence)
                .bind(event.position)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting a delivery"))?);
            return Ok(());
        }
        DeliveryEvent::DeliveryAttempted(attempt) => {
            let attempts = tables.name("rm_delivery_attempts");
            let sql = format!(
                "INSERT INTO {attempts} (tenant_id, delivery_id, attempt, status, error, \
                 duration_ms, retry_at, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING"
            );
            on_tx!(tx, |c| sqlx::query(&sql)
                .bind(event.tenant.as_str())
                .bind(event.aggregate_id)
                .bind(i64::from(attempt.attempt))
                .bind(attempt.status.map(i64::from))
                .bind(attempt.error.as_deref())
                .bind(attempt.duration_ms as i64)
                .bind(attempt.retry_at.map(micros))
                .bind(micros(attempt.at))
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db(
                    "projecting a delivery attempt"
                ))?);
            let mut columns = vec![
                ("attempts", Value::int(attempt.attempt)),
                ("last_status", Value::Int(attempt.status.map(i64::from))),
                ("last_error", Value::Text(attempt.error.clone())),
                ("due_at", Value::Int(attempt.retry_at.map(micros))),
            ];
            if attempt.succeeded() {
                columns.push(("status", Value::text(DeliveryStatus::Delivered.as_str())));
            }
            (columns, attempt.at)
        }
        DeliveryEvent::DeliveryDeadLettered { at, .. } => (
            vec![
                ("status", Value::text(DeliveryStatus::DeadLettered.as_str())),
                ("due_at", Value::Int(None)),
            ],
            at,
        ),
        DeliveryEvent::DeliveryRedeliveryRequested { at } => (
            vec![
                ("status", Value::text(DeliveryStatus::Pending.as_str())),
                ("due_at", Value::int(micros(at))),
            ],
            at,
        ),
    };
    update_row(
        tx,
        &table,
        "delivery_id",
        event,
        micros(at),
        &columns,
        "projecting a delivery change",
    )
    .await
}

// Queries.

/// Filters on a tenant's alerts; all optional.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub brand: Option<BrandId>,
    pub status: Option<AlertStatus>,
    pub kind: Option<AlertKind>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub alert_id: Uuid,
    pub brand_id: Uuid,
    pub kind: String,
    pub competitor: Option<String>,
    pub status: String,
    pub window_start: DateTime<Utc>,
    pub evidence: AlertEvidence,
    pub rule_version: i64,
    /// False when raised while its brand and kind were snoozed.
    pub notified: bool,
    /// The last acknowledgement's or resolution's note.
    pub note: String,
    pub resolved_automatically: Option<bool>,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub raised_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// One attempt of a delivery.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttemptView {
    pub attempt: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub retry_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryView {
    /// What the receiver deduplicates by (the `Plasma-Delivery` header).
    pub delivery_id: Uuid,
    pub alert_id: Uuid,
    pub brand_id: Uuid,
    pub channel_id: String,
    pub url: String,
    pub event: String,
    /// `pending`, `delivered` or `dead_lettered`.
    pub status: String,
    pub attempts: i64,
    pub due_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every attempt, oldest first.
    pub log: Vec<DeliveryAttemptView>,
}

/// An alert with its notifications.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertDetailView {
    #[serde(flatten)]
    pub alert: AlertView,
    pub deliveries: Vec<DeliveryView>,
}

const ALERT_COLUMNS: &str = "alert_id, brand_id, kind, competitor, status, window_start, evidence, \
     rule_version, notified, note, resolved_automatically, snoozed_until, raised_at, updated_at, version";

fn alert_view(r: &impl RowLike) -> Result<AlertView, sqlx::Error> {
    let evidence: String = r.text("evidence")?;
    Ok(AlertView {
        alert_id: r.uuid("alert_id")?,
        brand_id: r.uuid("brand_id")?,
        kind: r.text("kind")?,
        competitor: r.opt_text("competitor")?,
        status: r.text("status")?,
        window_start: from_micros(r.int("window_start")?),
        evidence: json_column(&evidence)?,
        rule_version: r.int("rule_version")?,
        notified: r.boolean("notified")?,
        note: r.text("note")?,
        resolved_automatically: r.opt_boolean("resolved_automatically")?,
        snoozed_until: r.opt_int("snoozed_until")?.map(from_micros),
        raised_at: from_micros(r.int("raised_at")?),
        updated_at: from_micros(r.int("updated_at")?),
        version: r.int("version")?,
    })
}

/// Column access shared by both backends' rows.
trait RowLike {
    fn text(&self, c: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, c: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error>;
    fn boolean(&self, c: &str) -> Result<bool, sqlx::Error>;
    fn opt_boolean(&self, c: &str) -> Result<Option<bool>, sqlx::Error>;
    fn uuid(&self, c: &str) -> Result<Uuid, sqlx::Error>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn text(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(c)
            }
            fn int(&self, c: &str) -> Result<i64, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(c)
            }
            fn boolean(&self, c: &str) -> Result<bool, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_boolean(&self, c: &str) -> Result<Option<bool>, sqlx::Error> {
                self.try_get(c)
            }
            fn uuid(&self, c: &str) -> Result<Uuid, sqlx::Error> {
                self.try_get(c)
            }
        }
    };
}

row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

const DELIVERY_COLUMNS: &str = "delivery_id, alert_id, brand_id, channel_id, url, event, status, \
     attempts, due_at, last_status, last_error, scheduled_at, updated_at";

fn delivery_view(r: &impl RowLike) -> Result<DeliveryView, sqlx::Error> {
    Ok(DeliveryView {
        delivery_id: r.uuid("delivery_id")?,
        alert_id: r.uuid("alert_id")?,
        brand_id: r.uuid("brand_id")?,
        channel_id: r.text("channel_id")?,
        url: r.text("url")?,
        event: r.text("event")?,
        status: r.text("status")?,
        attempts: r.int("attempts")?,
        due_at: r.opt_int("due_at")?.map(from_micros),
        last_status: r.opt_int("last_status")?,
        last_error: r.opt_text("last_error")?,
        scheduled_at: from_micros(r.int("scheduled_at")?),
        updated_at: from_micros(r.int("updated_at")?),
        log: Vec::new(),
    })
}

impl ReadModels {
    /// A tenant's alerts, newest window first, with keyset pagination.
    pub async fn alerts(
        &self,
        tenant: &TenantId,
        filter: &AlertFilter,
        page: &PageRequest,
    ) -> Result<Page<AlertView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let cursor = page.after.map(Cursor::key);
        let limit = page.limit();
        let mut items = on_pool!(&self.store, |p| {
            let mut query = sqlx::QueryBuilder::new(format!(
                "SELECT {ALERT_COLUMNS} FROM rm_alerts WHERE tenant_id = "
            ));
            query.push_bind(tenant.as_str());
            if let Some(brand) = filter.brand {
                query.push(" AND brand_id = ").push_bind(brand.as_uuid());
            }
            if let Some(status) = filter.status {
                query.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(kind) = filter.kind {
                query.push(" AND kind = ").push_bind(kind.as_str());
            }
            if let Some((at, id)) = cursor {
                query.push(" AND (window_start, alert_id) < (");
                query.push_bind(at).push(", ").push_bind(id).push(")");
            }
            query.push(" ORDER BY window_start DESC, alert_id DESC LIMIT ");
            query.push_bind(limit + 1);
            let rows = query
                .build()
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying alerts"))?;
            rows.iter()
                .map(alert_view)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding alerts"))?
        });
        let next_cursor = paginate(&mut items, limit, |a| (a.window_start, a.alert_id));
        Ok(Page { items, next_cursor })
    }

    /// One alert with its deliveries and their attempts.
    pub async fn alert(
        &self,
        tenant: &TenantId,
        alert: AlertId,
    ) -> Result<Option<AlertDetailView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let found = on_pool!(&self.store, |p| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM rm_alerts WHERE tenant_id = $1 AND alert_id = $2"
            );
            let row = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(alert.as_uuid())
                .fetch_optional(p)
                .await
                .map_err(ProjectionError::db("querying an alert"))?;
            row.as_ref()
                .map(alert_view)
                .transpose()
                .map_err(ProjectionError::db("decoding an alert"))?
        });
        let Some(alert_view) = found else {
            return Ok(None);
        };
        let deliveries = self
            .deliveries_where(tenant, "alert_id", alert.as_uuid())
            .await?;
        Ok(Some(AlertDetailView {
            alert: alert_view,
            deliveries,
        }))
    }

    /// One delivery with its log.
    pub async fn delivery(
        &self,
        tenant: &TenantId,
        delivery: DeliveryId,
    ) -> Result<Option<DeliveryView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        Ok(self
            .deliveries_where(tenant, "delivery_id", delivery.as_uuid())
            .await?
            .into_iter()
            .next())
    }

    async fn deliveries_where(
        &self,
        tenant: &TenantId,
        column: &str,
        id: Uuid,
    ) -> Result<Vec<DeliveryView>, ProjectionError> {
        on_pool!(&self.store, |p| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM rm_deliveries WHERE tenant_id = $1 AND {column} = $2 \
                 ORDER BY scheduled_at, delivery_id"
            );
            let rows = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(id)
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying deliveries"))?;
            let mut deliveries = rows
                .iter()
                .map(delivery_view)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding deliveries"))?;
            for delivery in &mut deliveries {
                let rows = sqlx::query(
                    "SELECT attempt, status, error, duration_ms, retry_at, at FROM rm_delivery_attempts \
                     WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY attempt",
                )
                .bind(tenant.as_str())
                .bind(delivery.delivery_id)
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying delivery attempts"))?;
                delivery.log = rows
                    .iter()
                    .map(|r| {
                        Ok(DeliveryAttemptView {
                            attempt: r.int("attempt")?,
                            status: r.opt_int("status")?,
                            error: r.opt_text("error")?,
                            duration_ms: r.int("duration_ms")?,
                            retry_at: r.opt_int("retry_at")?.map(from_micros),
                            at: from_micros(r.int("at")?),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(ProjectionError::db("decoding delivery attempts"))?;
            }
            Ok(deliveries)
        })
    }

    /// Pending deliveries due by `now`, across tenants, soonest first: what a delivery
    /// dispatcher sends. Not settled: a dispatcher re-checks each delivery's own state.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(TenantId, Uuid)>, ProjectionError> {
        let rows: Vec<(String, Uuid)> = on_pool!(&self.store, |p| {
            let exists = sqlx::query_as::<_, (String, Uuid)>(
                "SELECT tenant_id, delivery_id FROM rm_deliveries \
                 WHERE status = 'pending' AND due_at <= $1 ORDER BY due_at LIMIT $2",
            )
            .bind(micros(now))
            .bind(limit)
            .fetch_all(p)
            .await;
            match exists {
                Ok(rows) => rows,
                // Before the alerts read model's tables exist (an external projection worker
                // has not started yet), nothing is due.
                Err(err) if err.to_string().contains("rm_deliveries") => Vec::new(),
                Err(err) => return Err(ProjectionError::db("querying due deliveries")(err)),
            }
        });
        Ok(rows
            .into_iter()
            .filter_map(|(tenant, id)| Some((TenantId::parse(&tenant).ok()?, id)))
            .collect())
    }
}

// The read model's ids are the aggregates' ids.
const _: fn(DeliveryId) -> Uuid = |id| id.as_uuid();
