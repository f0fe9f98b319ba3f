//! The Draft aggregate: a piece of content for one brand and channel.
//!
//! Lifecycle: requested → generated (or revised) → voice checked → approved → scheduled →
//! published. Any new text (a generation or a revision) sends the draft back to `generated`,
//! because a voice check only vouches for the text it read. A rejected draft is not dead: a
//! revision or a new generation brings it back to `generated`, and it must then pass a voice
//! check again before it can be approved; approving it while rejected is refused. Approved and
//! scheduled drafts are locked (rejecting one unlocks it); a published draft never changes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::channel::{Channel, DraftStatus};
use super::voice::{CheckerInfo, RulesVoiceChecker, VoiceChecker};
use crate::brand::VoiceGuidelines;
use crate::ids::BrandId;
use crate::text::{self, TextError};
use crate::EventName;

const MAX_BRIEF: usize = 4000;
const MAX_TEXT: usize = 100_000;
const MAX_NOTE: usize = 1000;
const MAX_REASON: usize = 1000;
const MAX_APPROVER: usize = 200;
const MAX_INFO: usize = 100;
const MAX_URL: usize = 2048;
// A checker is outside code; its remarks are capped rather than refused, so a chatty checker
// cannot make a draft uncheckable.
const MAX_ISSUES: usize = 100;
const MAX_ISSUE_LEN: usize = 500;

/// What the Draft aggregate needs from outside: a voice checker.
#[derive(Clone)]
pub struct DraftServices {
    pub voice_checker: Arc<dyn VoiceChecker>,
}

impl Default for DraftServices {
    /// The deterministic [`RulesVoiceChecker`], which the platform uses unless told otherwise.
    fn default() -> Self {
        Self {
            voice_checker: Arc::new(RulesVoiceChecker),
        }
    }
}

impl std::fmt::Debug for DraftServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DraftServices")
            .field("voice_checker", &self.voice_checker.info())
            .finish()
    }
}

/// The name and version of the generator (model, template) that wrote a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorInfo {
    pub name: String,
    pub version: String,
}

impl GeneratorInfo {
    fn validated(&self) -> Result<Self, TextError> {
        Ok(Self {
            name: text::required("generator.name", &self.name, MAX_INFO)?,
            version: text::required("generator.version", &self.version, MAX_INFO)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DraftCommand {
    /// Ask for a draft; the text comes later from a generator or an editor.
    Request {
        brand_id: BrandId,
        brief: String,
        channel: Channel,
        at: DateTime<Utc>,
    },
    /// Record a text a generator produced outside the domain (first or again).
    RecordGenerated {
        text: String,
        generator: GeneratorInfo,
        at: DateTime<Utc>,
    },
    /// Replace the text by hand; `note` says what changed and may be empty.
    Revise {
        text: String,
        note: String,
        at: DateTime<Utc>,
    },
    /// Check the current text against the brand's voice (the handler reads it from the Brand).
    CheckVoice {
        guidelines: VoiceGuidelines,
        at: DateTime<Utc>,
    },
    Approve {
        approver: String,
        at: DateTime<Utc>,
    },
    Reject {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Plan publication; rescheduling a scheduled draft moves its date.
    Schedule {
        publish_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Record that the draft went out (publishing itself happens outside the domain).
    MarkPublished {
        url: Option<String>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DraftEvent {
    DraftRequested {
        brand_id: BrandId,
        brief: String,
        channel: Channel,
        at: DateTime<Utc>,
    },
    /// New current text from a generator; any earlier voice check no longer applies.
    DraftGenerated {
        text: String,
        generator: GeneratorInfo,
        at: DateTime<Utc>,
    },
    /// New current text from an editor; any earlier voice check no longer applies.
    DraftRevised {
        text: String,
        note: String,
        at: DateTime<Utc>,
    },
    /// The verdict on the current text, recorded so replays never check again.
    DraftVoiceChecked {
        passed: bool,
        issues: Vec<String>,
        checker: CheckerInfo,
        at: DateTime<Utc>,
    },
    DraftApproved {
        approver: String,
        at: DateTime<Utc>,
    },
    /// Also cancels any approval and schedule.
    DraftRejected {
        reason: String,
        at: DateTime<Utc>,
    },
    DraftScheduled {
        publish_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    DraftPublished {
        url: Option<String>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for DraftEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DraftRequested { .. } => "DraftRequested",
            Self::DraftGenerated { .. } => "DraftGenerated",
            Self::DraftRevised { .. } => "DraftRevised",
            Self::DraftVoiceChecked { .. } => "DraftVoiceChecked",
            Self::DraftApproved { .. } => "DraftApproved",
            Self::DraftRejected { .. } => "DraftRejected",
            Self::DraftScheduled { .. } => "DraftScheduled",
            Self::DraftPublished { .. } => "DraftPublished",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for DraftEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("DraftRequested", 1),
        ("DraftGenerated", 1),
        ("DraftRevised", 1),
        ("DraftVoiceChecked", 1),
        ("DraftApproved", 1),
        ("DraftRejected", 1),
        ("DraftScheduled", 1),
        ("DraftPublished", 1),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("the draft is already requested")]
    AlreadyRequested,
    #[error("the draft does not exist")]
    NotFound,
    #[error("the draft has no text yet: record a generated text first")]
    NoText,
    #[error("the draft's current text has not been voice-checked")]
    VoiceNotChecked,
    #[error("the draft's current text failed its voice check: revise it and check again")]
    VoiceCheckFailed,
    #[error("the draft is not approved")]
    NotApproved,
    #[error("the draft was rejected: revise it or record a new generation first")]
    Rejected,
    #[error("the draft is {0}: reject it to change it")]
    Locked(DraftStatus),
    #[error("the draft is published and can no longer change")]
    Published,
    #[error("`publish_at` must be later than the time of the command")]
    PublishAtNotInFuture,
    #[error("`url` must be an http(s) URL")]
    BadUrl,
    #[error(transparent)]
    Invalid(#[from] TextError),
}

/// A draft's current state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// `None` until requested.
    pub status: Option<DraftStatus>,
    pub brand_id: Option<BrandId>,
    pub channel: Option<Channel>,
    /// What was asked for.
    pub brief: String,
    /// The current text; empty until generated.
    pub text: String,
    /// The verdict on the current text; `None` until checked, and again after any new text.
    pub voice_passed: Option<bool>,
    pub publish_at: Option<DateTime<Utc>>,
}

impl Draft {
    fn status(&self) -> Result<DraftStatus, DraftError> {
        self.status.ok_or(DraftError::NotFound)
    }

    /// The status, when the text may still change: not approved, scheduled or published.
    fn editable_status(&self) -> Result<DraftStatus, DraftError> {
        match self.status()? {
            status @ (DraftStatus::Approved | DraftStatus::Scheduled) => {
                Err(DraftError::Locked(status))
            }
            DraftStatus::Published => Err(DraftError::Published),
            status => Ok(status),
        }
    }

    /// Succeeds when the draft is approved or scheduled, the states publication may follow.
    fn ensure_approved(&self) -> Result<(), DraftError> {
        match self.status()? {
            DraftStatus::Approved | DraftStatus::Scheduled => Ok(()),
            DraftStatus::Published => Err(DraftError::Published),
            DraftStatus::Rejected => Err(DraftError::Rejected),
            DraftStatus::Requested | DraftStatus::Generated | DraftStatus::VoiceChecked => {
                Err(DraftError::NotApproved)
            }
        }
    }

    fn decide(
        &self,
        command: DraftCommand,
        checker: &dyn VoiceChecker,
    ) -> Result<DraftEvent, DraftError> {
        match command {
            DraftCommand::Request {
                brand_id,
                brief,
                channel,
                at,
            } => {
                if self.status.is_some() {
                    return Err(DraftError::AlreadyRequested);
                }
                let brief = text::required("brief", &brief, MAX_BRIEF)?;
                Ok(DraftEvent::DraftRequested {
                    brand_id,
                    brief,
                    channel,
                    at,
                })
            }
            DraftCommand::RecordGenerated {
                text: body,
                generator,
                at,
            } => {
                self.editable_status()?;
                let body = text::required("text", &body, MAX_TEXT)?;
                let generator = generator.validated()?;
                Ok(DraftEvent::DraftGenerated {
                    text: body,
                    generator,
                    at,
                })
            }
            DraftCommand::Revise {
                text: body,
                note,
                at,
            } => {
                if self.editable_status()? == DraftStatus::Requested {
                    return Err(DraftError::NoText);
                }
                let body = text::required("text", &body, MAX_TEXT)?;
                let note = text::bounded("note", note.trim(), MAX_NOTE)?;
                Ok(DraftEvent::DraftRevised {
                    text: body,
                    note,
                    at,
                })
            }
            DraftCommand::CheckVoice { guidelines, at } => {
                match self.editable_status()? {
                    DraftStatus::Requested => return Err(DraftError::NoText),
                    // The rejected text is not what will be approved; check its replacement.
                    DraftStatus::Rejected => return Err(DraftError::Rejected),
                    _ => {}
                }
                let channel = self.channel.ok_or(DraftError::NotFound)?;
                let guidelines = guidelines.validated()?;
                let check = checker.check(&self.text, channel, &guidelines);
                let issues = check
                    .issues
                    .iter()
                    .take(MAX_ISSUES)
                    .map(|issue| issue.trim().chars().take(MAX_ISSUE_LEN).collect())
                    .collect();
                Ok(DraftEvent::DraftVoiceChecked {
                    passed: check.passed,
                    issues,
                    checker: checker.info(),
                    at,
                })
            }
            DraftCommand::Approve { approver, at } => {
                match self.editable_status()? {
                    DraftStatus::Requested => return Err(DraftError::NoText),
                    DraftStatus::Rejected => return Err(DraftError::Rejected),
                    _ => {}
                }
                match self.voice_passed {
                    None => return Err(DraftError::VoiceNotChecked),
                    Some(false) => return Err(DraftError::VoiceCheckFailed),
                    Some(true) => {}
                }
                let approver = text::required("approver", &approver, MAX_APPROVER)?;
                Ok(DraftEvent::DraftApproved { approver, at })
            }
            DraftCommand::Reject { reason, at } => {
                match self.status()? {
                    DraftStatus::Published => return Err(DraftError::Published),
                    DraftStatus::Rejected => return Err(DraftError::Rejected),
                    _ => {}
                }
                let reason = text::required("reason", &reason, MAX_REASON)?;
                Ok(DraftEvent::DraftRejected { reason, at })
            }
            DraftCommand::Schedule { publish_at, at } => {
                self.ensure_approved()?;
                if publish_at <= at {
                    return Err(DraftError::PublishAtNotInFuture);
                }
                Ok(DraftEvent::DraftScheduled { publish_at, at })
            }
            DraftCommand::MarkPublished { url, at } => {
                self.ensure_approved()?;
                let url = match url.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(url) => {
                        let url = text::bounded("url", url, MAX_URL)?;
                        if !(url.starts_with("https://") || url.starts_with("http://")) {
                            return Err(DraftError::BadUrl);
                        }
                        Some(url)
                    }
                };
                Ok(DraftEvent::DraftPublished { url, at })
            }
        }
    }

    /// The current text changed: back to `generated`, unchecked and unscheduled.
    fn replace_text(&mut self, text: String) {
        self.text = text;
        self.status = Some(DraftStatus::Generated);
        self.voice_passed = None;
        self.publish_at = None;
    }
}

impl Aggregate for Draft {
    const TYPE: &'static str = "Draft";
    type Command = DraftCommand;
    type Event = DraftEvent;
    type Error = DraftError;
    type Services = DraftServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command, services.voice_checker.as_ref())?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DraftEvent::DraftRequested {
                brand_id,
                channel,
                brief,
                ..
            } => {
                *self = Self {
                    status: Some(DraftStatus::Requested),
                    brand_id: Some(brand_id),
                    channel: Some(channel),
                    brief,
                    ..Self::default()
                }
            }
            DraftEvent::DraftGenerated { text, .. } | DraftEvent::DraftRevised { text, .. } => {
                self.replace_text(text)
            }
            DraftEvent::DraftVoiceChecked { passed, .. } => {
                self.status = Some(DraftStatus::VoiceChecked);
                self.voice_passed = Some(passed);
            }
            DraftEvent::DraftApproved { .. } => self.status = Some(DraftStatus::Approved),
            DraftEvent::DraftRejected { .. } => {
                self.status = Some(DraftStatus::Rejected);
                self.voice_passed = None;
                self.publish_at = None;
            }
            DraftEvent::DraftScheduled { publish_at, .. } => {
                self.status = Some(DraftStatus::Scheduled);
                self.publish_at = Some(publish_at);
            }
            DraftEvent::DraftPublished { .. } => self.status = Some(DraftStatus::Published),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    type DraftTest = TestFramework<Draft>;

    fn test() -> DraftTest {
        DraftTest::with(DraftServices::default())
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 0).single().unwrap()
    }

    fn brand() -> BrandId {
        BrandId::from_uuid(Uuid::from_u128(42))
    }

    fn generator() -> GeneratorInfo {
        GeneratorInfo {
            name: "llm".into(),
            version: "2026-01".into(),
        }
    }

    fn guidelines() -> VoiceGuidelines {
        VoiceGuidelines {
            tone: "plain".into(),
            banned_words: vec!["cheap".into()],
            required_phrases: vec![],
        }
    }

    fn requested() -> DraftEvent {
        DraftEvent::DraftRequested {
            brand_id: brand(),
            brief: "Announce the new skates".into(),
            channel: Channel::Twitter,
            at: at(),
        }
    }

    fn generated(text: &str) -> DraftEvent {
        DraftEvent::DraftGenerated {
            text: text.into(),
            generator: generator(),
            at: at(),
        }
    }

    fn checked(passed: bool) -> DraftEvent {
        DraftEvent::DraftVoiceChecked {
            passed,
            issues: if passed {
                vec![]
            } else {
                vec!["uses the banned word `cheap`".into()]
            },
            checker: RulesVoiceChecker.info(),
            at: at(),
        }
    }

    fn approved() -> DraftEvent {
        DraftEvent::DraftApproved {
            approver: "ana".into(),
            at: at(),
        }
    }

    fn rejected() -> DraftEvent {
        DraftEvent::DraftRejected {
            reason: "off-brand".into(),
            at: at(),
        }
    }

    fn scheduled() -> DraftEvent {
        DraftEvent::DraftScheduled {
            publish_at: at() + Duration::hours(1),
            at: at(),
        }
    }

    fn published() -> DraftEvent {
        DraftEvent::DraftPublished {
            url: None,
            at: at(),
        }
    }

    /// A draft whose current text passed its voice check.
    fn passing() -> Vec<DraftEvent> {
        vec![requested(), generated("New skates!"), checked(true)]
    }

    fn approved_draft() -> Vec<DraftEvent> {
        let mut events = passing();
        events.push(approved());
        events
    }

    fn approve() -> DraftCommand {
        DraftCommand::Approve {
            approver: "ana".into(),
            at: at(),
        }
    }

    #[test]
    fn requesting_a_draft_records_brand_brief_and_channel() {
        test()
            .given_no_previous_events()
            .when(DraftCommand::Request {
                brand_id: brand(),
                brief: "  Announce the new skates ".into(),
                channel: Channel::Twitter,
                at: at(),
            })
            .then_expect_events(vec![requested()]);
    }

    #[test]
    fn requesting_twice_is_refused() {
        test()
            .given(vec![requested()])
            .when(DraftCommand::Request {
                brand_id: brand(),
                brief: "again".into(),
                channel: Channel::Blog,
                at: at(),
            })
            .then_expect_error(DraftError::AlreadyRequested);
    }

    #[test]
    fn requesting_without_a_brief_is_refused() {
        test()
            .given_no_previous_events()
            .when(DraftCommand::Request {
                brand_id: brand(),
                brief: " ".into(),
                channel: Channel::Blog,
                at: at(),
            })
            .then_expect_error(DraftError::Invalid(TextError::Empty { field: "brief" }));
    }

    #[test]
    fn recording_a_generated_text_records_it_with_its_generator() {
        test()
            .given(vec![requested()])
            .when(DraftCommand::RecordGenerated {
                text: "New skates!".into(),
                generator: generator(),
                at: at(),
            })
            .then_expect_events(vec![generated("New skates!")]);
    }

    #[test]
    fn recording_a_text_for_an_unknown_draft_is_refused() {
        test()
            .given_no_previous_events()
            .when(DraftCommand::RecordGenerated {
                text: "New skates!".into(),
                generator: generator(),
                at: at(),
            })
            .then_expect_error(DraftError::NotFound);
    }

    #[test]
    fn recording_a_text_without_a_generator_version_is_refused() {
        test()
            .given(vec![requested()])
            .when(DraftCommand::RecordGenerated {
                text: "New skates!".into(),
                generator: GeneratorInfo {
                    name: "llm".into(),
                    version: "".into(),
                },
                at: at(),
            })
            .then_expect_error(DraftError::Invalid(TextError::Empty {
                field: "generator.version",
            }));
    }

    #[test]
    fn regenerating_a_checked_draft_invalidates_its_voice_check() {
        test()
            .given(vec![
                requested(),
                generated("New skates!"),
                checked(true),
                generated("Newer skates!"),
            ])
            .when(approve())
            .then_expect_error(DraftError::VoiceNotChecked);
    }

    #[test]
    fn revising_a_draft_records_the_new_text_and_note() {
        test()
            .given(passing())
            .when(DraftCommand::Revise {
                text: "New skates, now in red!".into(),
                note: "mention the colour".into(),
                at: at(),
            })
            .then_expect_events(vec![DraftEvent::DraftRevised {
                text: "New skates, now in red!".into(),
                note: "mention the colour".into(),
                at: at(),
            }]);
    }

    #[test]
    fn revising_a_draft_invalidates_its_voice_check() {
        test()
            .given(vec![
                requested(),
                generated("New skates!"),
                checked(true),
                DraftEvent::DraftRevised {
                    text: "New cheap skates!".into(),
                    note: String::new(),
                    at: at(),
                },
            ])
            .when(approve())
            .then_expect_error(DraftError::VoiceNotChecked);
    }

    #[test]
    fn revising_a_draft_without_text_is_refused() {
        test()
            .given(vec![requested()])
            .when(DraftCommand::Revise {
                text: "Hello".into(),
                note: String::new(),
                at: at(),
            })
            .then_expect_error(DraftError::NoText);
    }

    #[test]
    fn revising_an_approved_draft_is_refused() {
        test()
            .given(approved_draft())
            .when(DraftCommand::Revise {
                text: "Hello".into(),
                note: String::new(),
                at: at(),
            })
            .then_expect_error(DraftError::Locked(DraftStatus::Approved));
    }

    #[test]
    fn a_rejected_draft_can_be_revised_rechecked_and_approved() {
        test()
            .given(vec![
                requested(),
                generated("Cheap skates!"),
                checked(false),
                rejected(),
                DraftEvent::DraftRevised {
                    text: "Great skates!".into(),
                    note: "drop `cheap`".into(),
                    at: at(),
                },
                checked(true),
            ])
            .when(approve())
            .then_expect_events(vec![approved()]);
    }

    #[test]
    fn checking_the_voice_records_the_verdict_and_the_checker() {
        test()
            .given(vec![requested(), generated("Cheap skates!")])
            .when(DraftCommand::CheckVoice {
                guidelines: guidelines(),
                at: at(),
            })
            .then_expect_events(vec![checked(false)]);
    }

    #[test]
    fn checking_the_voice_applies_the_channel_length_limit() {
        let long = "skates ".repeat(50);
        test()
            .given(vec![requested(), generated(long.trim())])
            .when(DraftCommand::CheckVoice {
                guidelines: guidelines(),
                at: at(),
            })
            .then_expect_events(vec![DraftEvent::DraftVoiceChecked {
                passed: false,
                issues: vec!["is 349 characters long; twitter allows at most 280".into()],
                checker: RulesVoiceChecker.info(),
                at: at(),
            }]);
    }

    #[test]
    fn checking_the_voice_of_a_draft_without_text_is_refused() {
        test()
            .given(vec![requested()])
            .when(DraftCommand::CheckVoice {
                guidelines: guidelines(),
                at: at(),
            })
            .then_expect_error(DraftError::NoText);
    }

    #[test]
    fn approving_a_draft_that_passed_its_voice_check_records_the_approver() {
        test()
            .given(passing())
            .when(approve())
            .then_expect_events(vec![approved()]);
    }

    #[test]
    fn approving_an_unchecked_draft_is_refused() {
        test()
            .given(vec![requested(), generated("New skates!")])
            .when(approve())
            .then_expect_error(DraftError::VoiceNotChecked);
    }

    #[test]
    fn approving_a_draft_that_failed_its_voice_check_is_refused() {
        test()
            .given(vec![
                requested(),
                generated("Cheap skates!"),
                checked(false),
            ])
            .when(approve())
            .then_expect_error(DraftError::VoiceCheckFailed);
    }

    #[test]
    fn approving_a_rejected_draft_is_refused() {
        let mut events = passing();
        events.push(rejected());
        test()
            .given(events)
            .when(approve())
            .then_expect_error(DraftError::Rejected);
    }

    #[test]
    fn approving_a_published_draft_is_refused() {
        let mut events = approved_draft();
        events.push(published());
        test()
            .given(events)
            .when(approve())
            .then_expect_error(DraftError::Published);
    }

    #[test]
    fn approving_without_an_approver_is_refused() {
        test()
            .given(passing())
            .when(DraftCommand::Approve {
                approver: "".into(),
                at: at(),
            })
            .then_expect_error(DraftError::Invalid(TextError::Empty { field: "approver" }));
    }

    #[test]
    fn rejecting_a_draft_records_the_reason() {
        test()
            .given(passing())
            .when(DraftCommand::Reject {
                reason: "off-brand".into(),
                at: at(),
            })
            .then_expect_events(vec![rejected()]);
    }

    #[test]
    fn rejecting_a_rejected_draft_is_refused() {
        test()
            .given(vec![requested(), rejected()])
            .when(DraftCommand::Reject {
                reason: "still off-brand".into(),
                at: at(),
            })
            .then_expect_error(DraftError::Rejected);
    }

    #[test]
    fn scheduling_an_approved_draft_records_the_publication_time() {
        test()
            .given(approved_draft())
            .when(DraftCommand::Schedule {
                publish_at: at() + Duration::hours(1),
                at: at(),
            })
            .then_expect_events(vec![scheduled()]);
    }

    #[test]
    fn scheduling_an_unapproved_draft_is_refused() {
        test()
            .given(passing())
            .when(DraftCommand::Schedule {
                publish_at: at() + Duration::hours(1),
                at: at(),
            })
            .then_expect_error(DraftError::NotApproved);
    }

    #[test]
    fn scheduling_in_the_past_is_refused() {
        test()
            .given(approved_draft())
            .when(DraftCommand::Schedule {
                publish_at: at(),
                at: at(),
            })
            .then_expect_error(DraftError::PublishAtNotInFuture);
    }

    #[test]
    fn publishing_a_scheduled_draft_records_its_url() {
        let mut events = approved_draft();
        events.push(scheduled());
        test()
            .given(events)
            .when(DraftCommand::MarkPublished {
                url: Some(" https://x.example/1 ".into()),
                at: at(),
            })
            .then_expect_events(vec![DraftEvent::DraftPublished {
                url: Some("https://x.example/1".into()),
                at: at(),
            }]);
    }

    #[test]
    fn publishing_an_unapproved_draft_is_refused() {
        test()
            .given(vec![requested(), generated("New skates!")])
            .when(DraftCommand::MarkPublished {
                url: None,
                at: at(),
            })
            .then_expect_error(DraftError::NotApproved);
    }

    #[test]
    fn publishing_with_a_non_http_url_is_refused() {
        test()
            .given(approved_draft())
            .when(DraftCommand::MarkPublished {
                url: Some("ftp://x.example/1".into()),
                at: at(),
            })
            .then_expect_error(DraftError::BadUrl);
    }

    #[test]
    fn publishing_twice_is_refused() {
        let mut events = approved_draft();
        events.push(published());
        test()
            .given(events)
            .when(DraftCommand::MarkPublished {
                url: None,
                at: at(),
            })
            .then_expect_error(DraftError::Published);
    }

    #[test]
    fn the_status_follows_the_lifecycle() {
        let mut draft = Draft::default();
        let mut statuses = vec![];
        let mut events = approved_draft();
        events.extend([scheduled(), published()]);
        for event in events {
            draft.apply(event);
            statuses.push(draft.status.map(DraftStatus::as_str));
        }
        assert_eq!(
            statuses,
            [
                "requested",
                "generated",
                "voice_checked",
                "approved",
                "scheduled",
                "published"
            ]
            .map(Some)
        );
    }
}
