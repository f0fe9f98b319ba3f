//! The alert delivery worker: tells each of an alert's webhook channels when it is raised or
//! resolved, at least once.
//!
//! As a [`Process`] it follows the brand context and schedules one Delivery per (alert event,
//! channel); the delivery id is derived from both, so a restart or a replay schedules nothing
//! twice and a receiver always sees the same id for the same notification. Its dispatcher sends
//! what is due: each attempt is recorded on the Delivery (the delivery log), failures are
//! retried with exponential backoff and jitter, and after `max_attempts` failures in a row the
//! delivery is dead-lettered until someone asks for a redelivery.
//!
//! A SIGKILL between sending and recording an attempt sends it again after the restart, under
//! the same delivery id: at least once, deduplicated by the receiver.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use plasma_commands::{CommandContext, CommandError, CommandHandler, RecordedEvent};
use plasma_domain::brand::{
    Alert, AlertEvent, AlertRaised, ChannelFormat, Delivery, DeliveryAttempt, DeliveryCommand,
    DeliveryError, DeliveryStatus, ScheduleDelivery, WebhookChannel, WebhookRequest, WebhookSender,
};
use plasma_domain::ids::{AlertId, BrandId, CommandId, CorrelationId, DeliveryId};
use plasma_domain::{AggregateId as _, Context, TenantId};
use plasma_projections::ReadModels;
use rand::Rng as _;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{Process, ProcessError};

/// The worker's checkpoint and consumer group.
pub const NAME: &str = "alert_deliveries";

/// Webhook attempts, by `outcome` (`delivered`, `failed`, `dead_lettered`).
pub const METRIC_ATTEMPTS: &str = "plasma_webhook_attempts_total";

pub fn describe_metrics() {
    metrics::describe_counter!(METRIC_ATTEMPTS, "Webhook delivery attempts, by outcome");
}

const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x9c4d_1e2f_3a5b_4c6d_8e7f_90a1_b2c3_d4e5);

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Failed attempts in a row before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's delay; each further one doubles, ±50% jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the read model is scanned for due deliveries (after a restart, or scheduled
    /// by another process).
    pub rescan: Duration,
    /// Attempts in flight at once.
    pub concurrency: usize,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(3600),
            rescan: Duration::from_secs(1),
            concurrency: 16,
        }
    }
}

impl DeliveryOptions {
    /// The delay after the `failures`-th failure in a row (1-based).
    fn backoff(&self, failures: u32) -> Duration {
        let exponential = self
            .base_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let capped = exponential.min(self.max_backoff);
        capped.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
    }
}

type Due = (TenantId, DeliveryId);

/// Schedules and sends alert notifications.
#[derive(Debug)]
pub struct DeliveryWorker {
    handler: CommandHandler,
    sender: Arc<dyn WebhookSender>,
    options: DeliveryOptions,
    due: mpsc::UnboundedSender<Due>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<Due>>,
}

impl DeliveryWorker {
    pub fn new(
        handler: CommandHandler,
        sender: Arc<dyn WebhookSender>,
        options: DeliveryOptions,
    ) -> Self {
        let (due, receiver) = mpsc::unbounded_channel();
        Self {
            handler,
            sender,
            options,
            due,
            receiver: tokio::sync::Mutex::new(receiver),
        }
    }

    fn command_id(key: &str) -> CommandId {
        CommandId::from_uuid(Uuid::new_v5(&COMMAND_NAMESPACE, key.as_bytes()))
    }

    async fn schedule(
        &self,
        cause: &RecordedEvent,
        alert: AlertId,
        brand: BrandId,
        channel: &WebhookChannel,
        event: &str,
        payload: &serde_json::Value,
    ) -> Result<(), ProcessError> {
        let delivery = DeliveryId::derive(cause.event_id, &channel.id);
        let body = render(channel.format, delivery, event, payload);
        let mut context = CommandContext::new(
            cause.tenant.clone(),
            Self::command_id(&format!("schedule/{delivery}")),
            Some(CorrelationId::from_uuid(cause.correlation_id)),
        );
        context.causation_id = cause.event_id;
        let command = DeliveryCommand::Schedule(Box::new(ScheduleDelivery {
            alert_id: alert,
            brand_id: brand,
            channel: channel.clone(),
            event: event.to_owned(),
            body,
            max_attempts: self.options.max_attempts,
            at: Utc::now(),
        }));
        match self
            .handler
            .execute::<Delivery>(&context, delivery.as_uuid(), command, &())
            .await
        {
            Ok(_) => {
                let _ = self.due.send((cause.tenant.clone(), delivery));
                Ok(())
            }
            Err(CommandError::Store(err)) => Err(err.into()),
            Err(other) => Err(ProcessError::Refused(other.to_string())),
        }
    }

    /// One attempt at `delivery` if it is pending and due; when to look again if it failed.
    async fn attempt(
        &self,
        tenant: &TenantId,
        delivery: DeliveryId,
    ) -> Result<Option<DateTime<Utc>>, ProcessError> {
        let context = CommandContext::new(tenant.clone(), Self::command_id("load"), None);
        let (state, _, _) = self
            .handler
            .load::<Delivery>(&context, delivery.as_uuid())
            .await?;
        let Some(scheduled) = &state.scheduled else {
            return Ok(None);
        };
        if state.status != DeliveryStatus::Pending {
            return Ok(None);
        }
        let now = Utc::now();
        if let Some(due) = state.due_at {
            if due > now + chrono::Duration::milliseconds(20) {
                return Ok(Some(due));
            }
        }
        let outcome = self
            .sender
            .send(&WebhookRequest {
                tenant: tenant.clone(),
                brand: scheduled.brand_id,
                channel: scheduled.channel.id.clone(),
                url: scheduled.channel.url.clone(),
                delivery,
                event: scheduled.event.clone(),
                body: scheduled.body.clone(),
            })
            .await;
        let number = state.attempts + 1;
        let retry_at = Utc::now()
            + chrono::Duration::from_std(self.options.backoff(state.failures_in_round + 1))
                .unwrap_or_default();
        let attempt = DeliveryAttempt {
            attempt: number,
            status: outcome.status,
            error: outcome.error,
            duration_ms: outcome.duration_ms,
            retry_at: Some(retry_at),
            at: Utc::now(),
        };
        let delivered = attempt.succeeded();
        let dead = !delivered && state.failures_in_round + 1 >= scheduled.max_attempts;
        let mut context = CommandContext::new(
            tenant.clone(),
            Self::command_id(&format!("attempt/{delivery}/{number}")),
            None,
        );
        context.causation_id = delivery.as_uuid();
        match self
            .handler
            .execute::<Delivery>(
                &context,
                delivery.as_uuid(),
                DeliveryCommand::RecordAttempt(attempt),
                &(),
            )
            .await
        {
            Ok(_) => {}
            // Another dispatcher recorded this attempt first: it owns the follow-up.
            Err(
                CommandError::Domain(
                    DeliveryError::NotNextAttempt { .. } | DeliveryError::NotPending,
                )
                | CommandError::IdempotencyKeyReused,
            ) => return Ok(None),
            Err(CommandError::Store(err)) => return Err(err.into()),
            Err(other) => return Err(ProcessError::Refused(other.to_string())),
        }
        let outcome = match (delivered, dead) {
            (true, _) => "delivered",
            (false, true) => "dead_lettered",
            (false, false) => "failed",
        };
        metrics::counter!(METRIC_ATTEMPTS, "outcome" => outcome).increment(1);
        Ok((!delivered && !dead).then_some(retry_at))
    }

    /// Sends due deliveries until `stop` turns true: those scheduled by this process at once,
    /// retries when their backoff ends, and whatever the read model shows as due.
    pub async fn dispatch(
        self: Arc<Self>,
        read: ReadModels,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProcessError> {
        // One dispatcher at a time; a restarted one takes over the queue.
        let mut receiver = self.receiver.lock().await;
        let mut later: BTreeMap<DateTime<Utc>, Vec<Due>> = BTreeMap::new();
        let mut in_flight: HashSet<DeliveryId> = HashSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut next_scan = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let mut ready: Vec<Due> = Vec::new();
            while let Ok(due) = receiver.try_recv() {
                ready.push(due);
            }
            let now = Utc::now();
            while let Some(entry) = later.first_entry() {
                if *entry.key() > now {
                    break;
                }
                ready.extend(entry.remove());
            }
            if tokio::time::Instant::now() >= next_scan {
                next_scan = tokio::time::Instant::now() + self.options.rescan;
                for (tenant, id) in read.due_deliveries(now, 200).await? {
                    ready.push((tenant, DeliveryId::from_uuid(id)));
                }
            }
            for (tenant, id) in ready {
                if tasks.len() >= self.options.concurrency || !in_flight.insert(id) {
                    if !in_flight.contains(&id) {
                        later.entry(now).or_default().push((tenant, id));
                    }
                    continue;
                }
                let worker = self.clone();
                tasks.spawn(async move {
                    let result = worker.attempt(&tenant, id).await;
                    (tenant, id, result)
                });
            }
            let wake = later
                .first_key_value()
                .map(|(at, _)| (*at - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(self.options.rescan)
                .min(self.options.rescan);
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let (tenant, id, result) = done.map_err(|e| ProcessError::Task(e.to_string()))?;
                    in_flight.remove(&id);
                    match result {
                        Ok(Some(at)) => later.entry(at).or_default().push((tenant, id)),
                        Ok(None) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, delivery = %id, "a delivery attempt failed to record; retrying");
                            later
                                .entry(Utc::now() + chrono::Duration::seconds(1))
                                .or_default()
                                .push((tenant, id));
                        }
                    }
                }
                Some(due) = receiver.recv() => {
                    later.entry(Utc::now()).or_default().push(due);
                }
                _ = tokio::time::sleep(wake) => {}
                _ = stop.changed() => {}
            }
        }
        // Attempts in flight finish (each within the sender's timeout) before the worker stops.
        while let Some(done) = tasks.join_next().await {
            if let Ok((_, _, Err(err))) = done {
                tracing::warn!(error = %err, "a delivery attempt failed while stopping");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Process for DeliveryWorker {
    fn name(&self) -> &str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    async fn handle(&self, events: &[RecordedEvent]) -> Result<(), ProcessError> {
        for event in events.iter().filter(|e| e.aggregate_type == Alert::TYPE) {
            match event.decode::<AlertEvent>()? {
                AlertEvent::AlertRaised(raised) => {
                    if !raised.notify {
                        continue;
                    }
                    let alert = AlertId::from_uuid(event.aggregate_id);
                    let payload = raised_payload(alert, &raised);
                    for channel in &raised.channels {
                        self.schedule(
                            event,
                            alert,
                            raised.brand_id,
                            channel,
                            "alert.raised",
                            &payload,
                        )
                        .await?;
                    }
                }
                AlertEvent::AlertResolved {
                    automatically,
                    note,
                    at,
                } => {
                    let context =
                        CommandContext::new(event.tenant.clone(), Self::command_id("load"), None);
                    let (state, _, _) = self
                        .handler
                        .load::<Alert>(&context, event.aggregate_id)
                        .await?;
                    let (Some(brand), Some(kind)) = (state.brand_id, state.kind) else {
                        continue;
                    };
                    if state.snoozed_until.is_some_and(|until| until > Utc::now()) {
                        continue;
                    }
                    let alert = AlertId::from_uuid(event.aggregate_id);
                    let payload = json!({
                        "alert": {
                            "id": alert,
                            "brand_id": brand,
                            "kind": kind,
                            "status": "resolved",
                        },
                        "resolution": { "automatically": automatically, "note": note, "at": at },
                    });
                    for channel in &state.channels {
                        self.schedule(event, alert, brand, channel, "alert.resolved", &payload)
                            .await?;
                    }
                }
                AlertEvent::AlertAcknowledged { .. } | AlertEvent::AlertSnoozed { .. } => {}
            }
        }
        for event in events.iter().filter(|e| {
            e.aggregate_type == Delivery::TYPE && e.event_type == "DeliveryRedeliveryRequested"
        }) {
            let _ = self.due.send((
                event.tenant.clone(),
                DeliveryId::from_uuid(event.aggregate_id),
            ));
        }
        Ok(())
    }
}

fn raised_payload(alert: AlertId, raised: &AlertRaised) -> serde_json::Value {
    json!({
        "alert": {
            "id": alert,
            "brand_id": raised.brand_id,
            "kind": raised.kind,
            "competitor": raised.competitor,
            "status": "open",
            "rule_version": raised.rule_version,
            "evidence": raised.evidence,
            "raised_at": raised.at,
        }
    })
}

/// The body a channel receives. Plasma's carries the delivery id; Slack's is what an incoming
/// webhook accepts (the id travels in the `Plasma-Delivery` header).
fn render(
    format: ChannelFormat,
    delivery: DeliveryId,
    event: &str,
    payload: &serde_json::Value,
) -> String {
    let body = match format {
        ChannelFormat::Plasma => {
            let mut body = json!({ "id": delivery, "event": event });
            if let (Some(body), Some(payload)) = (body.as_object_mut(), payload.as_object()) {
                body.extend(payload.clone());
            }
            body
        }
        ChannelFormat::Slack => {
            let alert = &payload["alert"];
            let kind = alert["kind"].as_str().unwrap_or("alert").replace('_', " ");
            let text = if event == "alert.resolved" {
                format!(
                    "Resolved: {kind} on brand {}",
                    alert["brand_id"].as_str().unwrap_or("")
                )
            } else {
                let evidence = &alert["evidence"];
                format!(
                    "Alert: {kind}{} on brand {}: {} in the hour from {} (baseline {:.1}, threshold {:.1})",
                    alert["competitor"]
                        .as_str()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default(),
                    alert["brand_id"].as_str().unwrap_or(""),
                    evidence["value"],
                    evidence["window_start"].as_str().unwrap_or(""),
                    evidence["baseline"].as_f64().unwrap_or(0.0),
                    evidence["threshold"].as_f64().unwrap_or(0.0),
                )
            };
            json!({
                "text": text,
                "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }],
            })
        }
    };
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let options = DeliveryOptions {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..DeliveryOptions::default()
        };
        for _ in 0..100 {
            let first = options.backoff(1);
            assert!(first >= Duration::from_millis(500) && first < Duration::from_millis(1500));
            let third = options.backoff(3);
            assert!(third >= Duration::from_secs(2) && third < Duration::from_secs(6));
            assert!(options.backoff(30) < Duration::from_secs(15));
        }
    }

    #[test]
    fn a_plasma_body_carries_the_delivery_id_and_a_slack_body_has_text() {
        let id = DeliveryId::from_uuid(Uuid::from_u128(5));
        let payload = json!({ "alert": { "kind": "volume_spike", "brand_id": "b", "evidence": { "value": 40.0 } } });
        let plasma: serde_json::Value =
            serde_json::from_str(&render(ChannelFormat::Plasma, id, "alert.raised", &payload))
                .unwrap();
        assert_eq!(plasma["id"], json!(id));
        assert_eq!(plasma["alert"]["kind"], "volume_spike");
        let slack: serde_json::Value =
            serde_json::from_str(&render(ChannelFormat::Slack, id, "alert.raised", &payload))
                .unwrap();
        assert!(slack["text"]
            .as_str()
            .unwrap()
            .starts_with("Alert: volume spike"));
    }
}
