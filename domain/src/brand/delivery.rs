//! The Delivery aggregate: one notification of one alert change to one webhook channel. Its id
//! is what the receiver deduplicates by; every attempt is recorded (the delivery log); after
//! `max_attempts` failures in a round it is dead-lettered, and a redelivery starts a new round
//! under the same id.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::rules::WebhookChannel;
use crate::ids::{AlertId, BrandId};
use crate::text;
use crate::EventName;

const MAX_ERROR: usize = 500;

/// Schedules a delivery: the body is fixed here, so every attempt sends the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDelivery {
    pub alert_id: AlertId,
    pub brand_id: BrandId,
    pub channel: WebhookChannel,
    /// What happened to the alert: `alert.raised` or `alert.resolved`.
    pub event: String,
    /// The JSON body every attempt POSTs.
    pub body: String,
    pub max_attempts: u32,
    pub at: DateTime<Utc>,
}

/// The outcome of one attempt, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// 1-based, counted across rounds.
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed without a status (timeout, refused connection), trimmed.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// When to try again if this attempt failed and attempts remain (backoff with jitter,
    /// chosen by the worker).
    pub retry_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

impl DeliveryAttempt {
    /// A 2xx answer delivers.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryCommand {
    Schedule(Box<ScheduleDelivery>),
    RecordAttempt(DeliveryAttempt),
    Redeliver { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryEvent {
    DeliveryScheduled(Box<ScheduleDelivery>),
    DeliveryAttempted(DeliveryAttempt),
    /// `max_attempts` failed in a row: nothing more is tried unless a redelivery is requested.
    DeliveryDeadLettered {
        attempts: u32,
        at: DateTime<Utc>,
    },
    DeliveryRedeliveryRequested {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for DeliveryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DeliveryScheduled(_) => "DeliveryScheduled",
            Self::DeliveryAttempted(_) => "DeliveryAttempted",
            Self::DeliveryDeadLettered { .. } => "DeliveryDeadLettered",
            Self::DeliveryRedeliveryRequested { .. } => "DeliveryRedeliveryRequested",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for DeliveryEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("DeliveryScheduled", 1),
        ("DeliveryAttempted", 1),
        ("DeliveryDeadLettered", 1),
        ("DeliveryRedeliveryRequested", 1),
    ];
}

/// Where a delivery stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    #[default]
    Pending,
    Delivered,
    DeadLettered,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the delivery does not exist")]
    NotFound,
    /// Another worker recorded this attempt first; the caller moves on.
    #[error("attempt {got} is not the next one ({expected})")]
    NotNextAttempt { expected: u32, got: u32 },
    #[error("the delivery is not pending")]
    NotPending,
    #[error("the delivery is still pending")]
    StillPending,
}

/// A delivery's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub scheduled: Option<Box<ScheduleDelivery>>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Failed attempts since the round started (scheduling or a redelivery).
    pub failures_in_round: u32,
    /// When the next attempt is due, while pending.
    pub due_at: Option<DateTime<Utc>>,
}

impl Delivery {
    fn decide(&self, command: DeliveryCommand) -> Result<Vec<DeliveryEvent>, DeliveryError> {
        let DeliveryCommand::Schedule(schedule) = command else {
            let Some(scheduled) = &self.scheduled else {
                return Err(DeliveryError::NotFound);
            };
            return match command {
                DeliveryCommand::Schedule(_) => Ok(vec![]),
                DeliveryCommand::RecordAttempt(attempt) => {
                    self.decide_attempt(scheduled.max_attempts, attempt)
                }
                DeliveryCommand::Redeliver { at } => {
                    if self.status == DeliveryStatus::Pending {
                        return Err(DeliveryError::StillPending);
                    }
                    Ok(vec![DeliveryEvent::DeliveryRedeliveryRequested { at }])
                }
            };
        };
        if self.scheduled.is_some() {
            return Ok(vec![]);
        }
        Ok(vec![DeliveryEvent::DeliveryScheduled(schedule)])
    }

    fn decide_attempt(
        &self,
        max_attempts: u32,
        mut attempt: DeliveryAttempt,
    ) -> Result<Vec<DeliveryEvent>, DeliveryError> {
        if self.status != DeliveryStatus::Pending {
            return Err(DeliveryError::NotPending);
        }
        if attempt.attempt != self.attempts + 1 {
            return Err(DeliveryError::NotNextAttempt {
                expected: self.attempts + 1,
                got: attempt.attempt,
            });
        }
        // The receiver's words are outside input: bounded, and never a reason to refuse.
        attempt.error = attempt.error.map(|e| {
            let e: String = e
                .trim()
                .chars()
                .filter(|c| *c != '\0')
                .take(MAX_ERROR)
                .collect();
            text::bounded("error", &e, MAX_ERROR).unwrap_or_default()
        });
        let at = attempt.at;
        if attempt.succeeded() {
            attempt.retry_at = None;
            return Ok(vec![DeliveryEvent::DeliveryAttempted(attempt)]);
        }
        if self.failures_in_round + 1 >= max_attempts {
            attempt.retry_at = None;
            let attempts = attempt.attempt;
            return Ok(vec![
                DeliveryEvent::DeliveryAttempted(attempt),
                DeliveryEvent::DeliveryDeadLettered { attempts, at },
            ]);
        }
        attempt.retry_at = Some(attempt.retry_at.unwrap_or(at));
        Ok(vec![DeliveryEvent::DeliveryAttempted(attempt)])
    }
}

impl Aggregate for Delivery {
    const TYPE: &'static str = "Delivery";
    type Command = DeliveryCommand;
    type Event = DeliveryEvent;
    type Error = DeliveryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DeliveryEvent::DeliveryScheduled(schedule) => {
                self.due_at = Some(schedule.at);
                self.scheduled = Some(schedule);
                self.status = DeliveryStatus::Pending;
            }
            DeliveryEvent::DeliveryAttempted(attempt) => {
                self.attempts = attempt.attempt;
                if attempt.succeeded() {
                    self.status = DeliveryStatus::Delivered;
                    self.due_at = None;
                } else {
                    self.failures_in_round += 1;
                    self.due_at = attempt.retry_at;
                }
            }
            DeliveryEvent::DeliveryDeadLettered { .. } => {
                self.status = DeliveryStatus::DeadLettered;
                self.due_at = None;
            }
            DeliveryEvent::DeliveryRedeliveryRequested { at } => {
                self.status = DeliveryStatus::Pending;
                self.failures_in_round = 0;
                self.due_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::brand::ChannelFormat;

    type DeliveryTest = TestFramework<Delivery>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0)
            .single()
            .unwrap()
    }

    fn schedule() -> ScheduleDelivery {
        ScheduleDelivery {
            alert_id: AlertId::from_uuid(Uuid::from_u128(1)),
            brand_id: BrandId::from_uuid(Uuid::from_u128(2)),
            channel: WebhookChannel {
                id: "ops".into(),
                url: "https://hooks.example/ops".into(),
                format: ChannelFormat::Plasma,
            },
            event: "alert.raised".into(),
            body: "{}".into(),
            max_attempts: 2,
            at: at(),
        }
    }

    fn scheduled() -> DeliveryEvent {
        DeliveryEvent::DeliveryScheduled(Box::new(schedule()))
    }

    fn attempt(n: u32, status: Option<u16>) -> DeliveryAttempt {
        DeliveryAttempt {
            attempt: n,
            status,
            error: None,
            duration_ms: 3,
            retry_at: Some(at() + chrono::Duration::seconds(1)),
            at: at(),
        }
    }

    #[test]
    fn a_2xx_answer_delivers() {
        let mut delivered = attempt(1, Some(204));
        DeliveryTest::with(())
            .given(vec![scheduled()])
            .when(DeliveryCommand::RecordAttempt(delivered.clone()))
            .then_expect_events(vec![DeliveryEvent::DeliveryAttempted({
                delivered.retry_at = None;
                delivered
            })]);
    }

    #[test]
    fn the_last_failed_attempt_of_a_round_dead_letters() {
        let mut last = attempt(2, Some(500));
        DeliveryTest::with(())
            .given(vec![
                scheduled(),
                DeliveryEvent::DeliveryAttempted(attempt(1, None)),
            ])
            .when(DeliveryCommand::RecordAttempt(last.clone()))
            .then_expect_events(vec![
                DeliveryEvent::DeliveryAttempted({
                    last.retry_at = None;
                    last
                }),
                DeliveryEvent::DeliveryDeadLettered {
                    attempts: 2,
                    at: at(),
                },
            ]);
    }

    #[test]
    fn an_attempt_recorded_twice_is_refused_as_not_the_next_one() {
        DeliveryTest::with(())
            .given(vec![
                scheduled(),
                DeliveryEvent::DeliveryAttempted(attempt(1, Some(500))),
            ])
            .when(DeliveryCommand::RecordAttempt(attempt(1, Some(500))))
            .then_expect_error(DeliveryError::NotNextAttempt {
                expected: 2,
                got: 1,
            });
    }

    #[test]
    fn a_redelivery_starts_a_new_round_under_the_same_id() {
        let mut delivery = Delivery::default();
        for event in [
            scheduled(),
            DeliveryEvent::DeliveryAttempted(attempt(1, Some(500))),
            DeliveryEvent::DeliveryAttempted(attempt(2, Some(500))),
            DeliveryEvent::DeliveryDeadLettered {
                attempts: 2,
                at: at(),
            },
        ] {
            delivery.apply(event);
        }
        assert_eq!(delivery.status, DeliveryStatus::DeadLettered);
        let events = delivery
            .decide(DeliveryCommand::Redeliver { at: at() })
            .unwrap();
        for event in events {
            delivery.apply(event);
        }
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.failures_in_round, 0);
        // The next attempt keeps counting: 3.
        assert!(delivery
            .decide(DeliveryCommand::RecordAttempt(attempt(3, Some(200))))
            .is_ok());
        DeliveryTest::with(())
            .given(vec![scheduled()])
            .when(DeliveryCommand::Redeliver { at: at() })
            .then_expect_error(DeliveryError::StillPending);
    }
}
