//! The Alert aggregate: one detector finding for one brand, kind and hourly window, with the
//! evidence behind it. Raised → acknowledged → resolved (by a person, or automatically when the
//! hour returns to its baseline); snoozable. Raising an alert that exists changes nothing, which
//! is what makes a replay, a restarted detector or a late mention harmless.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::rules::{AlertKind, DetectionMethod, WebhookChannel};
use super::sentiment::SentimentLabel;
use crate::ids::{BrandId, MentionId};
use crate::text::{self, TextError};
use crate::EventName;

const MAX_NOTE: usize = 1000;

/// A term or an author with how often it occurs in the window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

/// Why the detector raised an alert: what it saw, against what, and examples.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvidence {
    /// The hour that was evaluated (event time: the mentions' `published_at`).
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The window's value when the alert was raised: mentions (a volume spike), mentions naming
    /// the competitor (a competitor surge), or the negative share in 0..=1 (a negative surge).
    pub value: f64,
    /// Mentions of the brand in the window when the alert was raised.
    pub mentions: u64,
    /// The baseline the window was compared with (same unit as `value`).
    pub baseline: f64,
    /// The baseline's spread (σ, or MAD scaled to σ).
    pub spread: f64,
    /// baseline + k·spread: the value had to exceed it.
    pub threshold: f64,
    pub method: DetectionMethod,
    pub k: f64,
    /// The most common sentiment of the window's mentions.
    pub dominant_sentiment: SentimentLabel,
    /// Negative mentions / mentions in the window.
    pub negative_share: f64,
    pub top_terms: Vec<Count>,
    pub top_authors: Vec<Count>,
    /// Up to 10 of the window's mentions.
    pub sample_mention_ids: Vec<MentionId>,
}

/// What the detector decided, as the command that raises it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaiseAlert {
    pub brand_id: BrandId,
    pub kind: AlertKind,
    /// The competitor that surged, for a competitor surge.
    pub competitor: Option<String>,
    pub evidence: AlertEvidence,
    /// The version of the brand's alert rules the detector applied.
    pub rule_version: u32,
    /// Where the rules said to notify, as they stood.
    pub channels: Vec<WebhookChannel>,
    /// False when the brand and kind were snoozed: recorded, not notified.
    pub notify: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlertCommand {
    Raise(Box<RaiseAlert>),
    Acknowledge {
        note: String,
        at: DateTime<Utc>,
    },
    /// `automatically`: by the detector, when the window returned to its baseline.
    Resolve {
        automatically: bool,
        note: String,
        at: DateTime<Utc>,
    },
    /// Quiet until `until`: no notifications of this alert, and new alerts of the same brand and
    /// kind are recorded without notifying.
    Snooze {
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

/// The event that opens an alert's stream.
pub type AlertRaised = RaiseAlert;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlertEvent {
    AlertRaised(Box<AlertRaised>),
    AlertAcknowledged {
        note: String,
        at: DateTime<Utc>,
    },
    AlertResolved {
        automatically: bool,
        note: String,
        at: DateTime<Utc>,
    },
    AlertSnoozed {
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AlertEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AlertRaised(_) => "AlertRaised",
            Self::AlertAcknowledged { .. } => "AlertAcknowledged",
            Self::AlertResolved { .. } => "AlertResolved",
            Self::AlertSnoozed { .. } => "AlertSnoozed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for AlertEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("AlertRaised", 1),
        ("AlertAcknowledged", 1),
        ("AlertResolved", 1),
        ("AlertSnoozed", 1),
    ];
}

/// Where an alert stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    #[default]
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertError {
    #[error("the alert does not exist")]
    NotFound,
    #[error("the alert is already acknowledged")]
    AlreadyAcknowledged,
    #[error("the alert is already resolved")]
    AlreadyResolved,
    #[error("`until` must be later than now")]
    SnoozeInThePast,
    #[error(transparent)]
    Invalid(#[from] TextError),
}

/// An alert's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub raised: bool,
    pub brand_id: Option<BrandId>,
    pub kind: Option<AlertKind>,
    pub status: AlertStatus,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub channels: Vec<WebhookChannel>,
}

impl Alert {
    fn decide(&self, command: AlertCommand) -> Result<Option<AlertEvent>, AlertError> {
        if let AlertCommand::Raise(raise) = command {
            return Ok((!self.raised).then_some(AlertEvent::AlertRaised(raise)));
        }
        if !self.raised {
            return Err(AlertError::NotFound);
        }
        match command {
            AlertCommand::Raise(_) => Ok(None),
            AlertCommand::Acknowledge { note, at } => match self.status {
                AlertStatus::Resolved => Err(AlertError::AlreadyResolved),
                AlertStatus::Acknowledged => Err(AlertError::AlreadyAcknowledged),
                AlertStatus::Open => Ok(Some(AlertEvent::AlertAcknowledged {
                    note: text::bounded("note", note.trim(), MAX_NOTE)?,
                    at,
                })),
            },
            AlertCommand::Resolve {
                automatically,
                note,
                at,
            } => match self.status {
                // The detector resolves whatever is still open; a person resolving twice is told.
                AlertStatus::Resolved if automatically => Ok(None),
                AlertStatus::Resolved => Err(AlertError::AlreadyResolved),
                _ => Ok(Some(AlertEvent::AlertResolved {
                    automatically,
                    note: text::bounded("note", note.trim(), MAX_NOTE)?,
                    at,
                })),
            },
            AlertCommand::Snooze { until, at } => {
                if self.status == AlertStatus::Resolved {
                    return Err(AlertError::AlreadyResolved);
                }
                if until <= at {
                    return Err(AlertError::SnoozeInThePast);
                }
                Ok(Some(AlertEvent::AlertSnoozed { until, at }))
            }
        }
    }
}

impl Aggregate for Alert {
    const TYPE: &'static str = "Alert";
    type Command = AlertCommand;
    type Event = AlertEvent;
    type Error = AlertError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AlertEvent::AlertRaised(raised) => {
                self.raised = true;
                self.brand_id = Some(raised.brand_id);
                self.kind = Some(raised.kind);
                self.channels = raised.channels;
            }
            AlertEvent::AlertAcknowledged { .. } => self.status = AlertStatus::Acknowledged,
            AlertEvent::AlertResolved { .. } => self.status = AlertStatus::Resolved,
            AlertEvent::AlertSnoozed { until, .. } => self.snoozed_until = Some(until),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    type AlertTest = TestFramework<Alert>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0)
            .single()
            .unwrap()
    }

    pub(crate) fn raise() -> RaiseAlert {
        RaiseAlert {
            brand_id: BrandId::from_uuid(Uuid::from_u128(1)),
            kind: AlertKind::VolumeSpike,
            competitor: None,
            evidence: AlertEvidence {
                window_start: at(),
                window_end: at() + chrono::Duration::hours(1),
                value: 120.0,
                mentions: 120,
                baseline: 10.0,
                spread: 3.0,
                threshold: 16.0,
                method: DetectionMethod::MeanStddev,
                k: 2.0,
                dominant_sentiment: SentimentLabel::Negative,
                negative_share: 0.7,
                top_terms: vec![Count {
                    value: "outage".into(),
                    count: 80,
                }],
                top_authors: vec![],
                sample_mention_ids: vec![],
            },
            rule_version: 1,
            channels: vec![],
            notify: true,
            at: at(),
        }
    }

    fn raised() -> AlertEvent {
        AlertEvent::AlertRaised(Box::new(raise()))
    }

    #[test]
    fn raising_a_new_alert_records_it_with_its_evidence() {
        AlertTest::with(())
            .given_no_previous_events()
            .when(AlertCommand::Raise(Box::new(raise())))
            .then_expect_events(vec![raised()]);
    }

    #[test]
    fn raising_an_existing_alert_again_records_nothing_even_once_resolved() {
        AlertTest::with(())
            .given(vec![
                raised(),
                AlertEvent::AlertResolved {
                    automatically: true,
                    note: String::new(),
                    at: at(),
                },
            ])
            .when(AlertCommand::Raise(Box::new(raise())))
            .then_expect_events(vec![]);
    }

    #[test]
    fn acknowledging_then_resolving_follows_the_lifecycle() {
        AlertTest::with(())
            .given(vec![raised()])
            .when(AlertCommand::Acknowledge {
                note: " on it ".into(),
                at: at(),
            })
            .then_expect_events(vec![AlertEvent::AlertAcknowledged {
                note: "on it".into(),
                at: at(),
            }]);
        AlertTest::with(())
            .given(vec![
                raised(),
                AlertEvent::AlertAcknowledged {
                    note: String::new(),
                    at: at(),
                },
            ])
            .when(AlertCommand::Acknowledge {
                note: String::new(),
                at: at(),
            })
            .then_expect_error(AlertError::AlreadyAcknowledged);
    }

    #[test]
    fn an_automatic_resolve_of_a_resolved_alert_is_a_no_op_a_manual_one_is_refused() {
        let resolved = || {
            vec![
                raised(),
                AlertEvent::AlertResolved {
                    automatically: false,
                    note: String::new(),
                    at: at(),
                },
            ]
        };
        AlertTest::with(())
            .given(resolved())
            .when(AlertCommand::Resolve {
                automatically: true,
                note: String::new(),
                at: at(),
            })
            .then_expect_events(vec![]);
        AlertTest::with(())
            .given(resolved())
            .when(AlertCommand::Resolve {
                automatically: false,
                note: String::new(),
                at: at(),
            })
            .then_expect_error(AlertError::AlreadyResolved);
    }

    #[test]
    fn a_snooze_must_end_in_the_future_and_an_unknown_alert_cannot_change() {
        AlertTest::with(())
            .given(vec![raised()])
            .when(AlertCommand::Snooze {
                until: at(),
                at: at(),
            })
            .then_expect_error(AlertError::SnoozeInThePast);
        AlertTest::with(())
            .given_no_previous_events()
            .when(AlertCommand::Acknowledge {
                note: String::new(),
                at: at(),
            })
            .then_expect_error(AlertError::NotFound);
    }
}
