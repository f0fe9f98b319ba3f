//! The Brand aggregate: name, keywords, competitors and voice guidelines.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::rules::{AlertRules, RulesError};
use crate::text::{self, TextError};
use crate::EventName;

const MAX_NAME: usize = 200;
const MAX_TERMS: usize = 100;
const MAX_TERM_LEN: usize = 100;
const MAX_GUIDELINE_TEXT: usize = 4000;

/// How a brand speaks; drafts are checked against it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceGuidelines {
    /// Free-text description of the tone, e.g. "warm, plain, no hype".
    #[serde(default)]
    pub tone: String,
    /// Words the brand never uses.
    #[serde(default)]
    pub banned_words: Vec<String>,
    /// Phrases every published piece must contain (e.g. a tagline or a disclosure).
    #[serde(default)]
    pub required_phrases: Vec<String>,
}

impl VoiceGuidelines {
    /// Trimmed, bounded and deduplicated; drafts re-validate the copy a voice check receives.
    pub(crate) fn validated(&self) -> Result<Self, TextError> {
        Ok(Self {
            tone: text::bounded("voice.tone", self.tone.trim(), MAX_GUIDELINE_TEXT)?,
            banned_words: text::term_list(
                "voice.banned_words",
                &self.banned_words,
                MAX_TERMS,
                MAX_TERM_LEN,
            )?,
            required_phrases: text::term_list(
                "voice.required_phrases",
                &self.required_phrases,
                MAX_TERMS,
                MAX_TERM_LEN,
            )?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrandCommand {
    Register {
        name: String,
        keywords: Vec<String>,
        competitors: Vec<String>,
        voice: VoiceGuidelines,
        at: DateTime<Utc>,
    },
    ChangeKeywords {
        keywords: Vec<String>,
        at: DateTime<Utc>,
    },
    ChangeCompetitors {
        competitors: Vec<String>,
        at: DateTime<Utc>,
    },
    Archive {
        at: DateTime<Utc>,
    },
    SetAlertRules {
        rules: AlertRules,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrandEvent {
    BrandRegistered {
        name: String,
        keywords: Vec<String>,
        competitors: Vec<String>,
        voice: VoiceGuidelines,
        at: DateTime<Utc>,
    },
    BrandKeywordsChanged {
        keywords: Vec<String>,
        at: DateTime<Utc>,
    },
    BrandCompetitorsChanged {
        competitors: Vec<String>,
        at: DateTime<Utc>,
    },
    BrandArchived {
        at: DateTime<Utc>,
    },
    /// The brand's alert rules changed; `version` counts the changes from 1.
    BrandAlertRulesChanged {
        rules: AlertRules,
        version: u32,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for BrandEvent {
    fn event_type(&self) -> String {
        match self {
            Self::BrandRegistered { .. } => "BrandRegistered",
            Self::BrandKeywordsChanged { .. } => "BrandKeywordsChanged",
            Self::BrandCompetitorsChanged { .. } => "BrandCompetitorsChanged",
            Self::BrandArchived { .. } => "BrandArchived",
            Self::BrandAlertRulesChanged { .. } => "BrandAlertRulesChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for BrandEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("BrandRegistered", 1),
        ("BrandKeywordsChanged", 1),
        ("BrandCompetitorsChanged", 1),
        ("BrandArchived", 1),
        ("BrandAlertRulesChanged", 1),
    ];
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrandError {
    #[error("the brand is already registered")]
    AlreadyRegistered,
    #[error("the brand does not exist")]
    NotFound,
    #[error("the brand is archived and can no longer change")]
    Archived,
    #[error("a brand cannot be its own competitor: `{0}`")]
    CompetesWithItself(String),
    #[error(transparent)]
    Invalid(#[from] TextError),
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// Why a brand takes nothing new: no mentions, no drafts, no changes. Each caller maps the
/// reason to its own error (a brand command's, a bulk ingest's, the API's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BrandInactive {
    #[error("the brand does not exist")]
    NotFound,
    #[error("the brand is archived")]
    Archived,
}

impl From<BrandInactive> for BrandError {
    fn from(reason: BrandInactive) -> Self {
        match reason {
            BrandInactive::NotFound => Self::NotFound,
            BrandInactive::Archived => Self::Archived,
        }
    }
}

/// A brand's current state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Brand {
    pub registered: bool,
    pub archived: bool,
    pub name: String,
    pub keywords: Vec<String>,
    pub competitors: Vec<String>,
    pub voice: VoiceGuidelines,
    /// The defaults until rules are set (version 0).
    pub alert_rules: AlertRules,
    pub alert_rules_version: u32,
}

impl Brand {
    /// Only a registered brand that is not archived takes new mentions, new drafts or changes.
    pub fn ensure_active(&self) -> Result<(), BrandInactive> {
        if !self.registered {
            Err(BrandInactive::NotFound)
        } else if self.archived {
            Err(BrandInactive::Archived)
        } else {
            Ok(())
        }
    }

    fn competitors_for(name: &str, competitors: &[String]) -> Result<Vec<String>, BrandError> {
        let competitors = text::term_list("competitors", competitors, MAX_TERMS, MAX_TERM_LEN)?;
        match competitors.iter().find(|c| c.eq_ignore_ascii_case(name)) {
            Some(own) => Err(BrandError::CompetesWithItself(own.clone())),
            None => Ok(competitors),
        }
    }

    fn decide(&self, command: BrandCommand) -> Result<Option<BrandEvent>, BrandError> {
        match command {
            BrandCommand::Register {
                name,
                keywords,
                competitors,
                voice,
                at,
            } => {
                if self.registered {
                    return Err(BrandError::AlreadyRegistered);
                }
                let name = text::required("name", &name, MAX_NAME)?;
                let keywords = text::term_list("keywords", &keywords, MAX_TERMS, MAX_TERM_LEN)?;
                let competitors = Self::competitors_for(&name, &competitors)?;
                let voice = voice.validated()?;
                Ok(Some(BrandEvent::BrandRegistered {
                    name,
                    keywords,
                    competitors,
                    voice,
                    at,
                }))
            }
            BrandCommand::ChangeKeywords { keywords, at } => {
                self.ensure_active()?;
                let keywords = text::term_list("keywords", &keywords, MAX_TERMS, MAX_TERM_LEN)?;
                Ok((keywords != self.keywords)
                    .then_some(BrandEvent::BrandKeywordsChanged { keywords, at }))
            }
            BrandCommand::ChangeCompetitors { competitors, at } => {
                self.ensure_active()?;
                let competitors = Self::competitors_for(&self.name, &competitors)?;
                Ok((competitors != self.competitors)
                    .then_some(BrandEvent::BrandCompetitorsChanged { competitors, at }))
            }
            BrandCommand::Archive { at } => {
                self.ensure_active()?;
                Ok(Some(BrandEvent::BrandArchived { at }))
            }
            BrandCommand::SetAlertRules { rules, at } => {
                self.ensure_active()?;
                let rules = rules.validated()?;
                Ok(
                    (rules != self.alert_rules || self.alert_rules_version == 0).then_some(
                        BrandEvent::BrandAlertRulesChanged {
                            rules,
                            version: self.alert_rules_version + 1,
                            at,
                        },
                    ),
                )
            }
        }
    }
}

impl Aggregate for Brand {
    const TYPE: &'static str = "Brand";
    type Command = BrandCommand;
    type Event = BrandEvent;
    type Error = BrandError;
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
            BrandEvent::BrandRegistered {
                name,
                keywords,
                competitors,
                voice,
                ..
            } => {
                *self = Self {
                    registered: true,
                    archived: false,
                    name,
                    keywords,
                    competitors,
                    voice,
                    alert_rules: AlertRules::default(),
                    alert_rules_version: 0,
                }
            }
            BrandEvent::BrandKeywordsChanged { keywords, .. } => self.keywords = keywords,
            BrandEvent::BrandCompetitorsChanged { competitors, .. } => {
                self.competitors = competitors
            }
            BrandEvent::BrandArchived { .. } => self.archived = true,
            BrandEvent::BrandAlertRulesChanged { rules, version, .. } => {
                self.alert_rules = rules;
                self.alert_rules_version = version;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    type BrandTest = TestFramework<Brand>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap()
    }

    fn register() -> BrandCommand {
        BrandCommand::Register {
            name: "Acme".into(),
            keywords: vec!["acme".into(), "rocket skates".into()],
            competitors: vec!["Globex".into(), "Initech".into()],
            voice: VoiceGuidelines {
                tone: "friendly".into(),
                banned_words: vec!["cheap".into()],
                required_phrases: vec![],
            },
            at: at(),
        }
    }

    fn registered() -> BrandEvent {
        BrandEvent::BrandRegistered {
            name: "Acme".into(),
            keywords: vec!["acme".into(), "rocket skates".into()],
            competitors: vec!["Globex".into(), "Initech".into()],
            voice: VoiceGuidelines {
                tone: "friendly".into(),
                banned_words: vec!["cheap".into()],
                required_phrases: vec![],
            },
            at: at(),
        }
    }

    #[test]
    fn registering_a_new_brand_records_it() {
        BrandTest::with(())
            .given_no_previous_events()
            .when(register())
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn registering_twice_is_refused() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(register())
            .then_expect_error(BrandError::AlreadyRegistered);
    }

    #[test]
    fn registering_without_a_name_is_refused() {
        let mut command = register();
        if let BrandCommand::Register { name, .. } = &mut command {
            *name = "   ".into();
        }
        BrandTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(BrandError::Invalid(TextError::Empty { field: "name" }));
    }

    #[test]
    fn a_brand_cannot_list_itself_as_a_competitor() {
        let mut command = register();
        if let BrandCommand::Register { competitors, .. } = &mut command {
            competitors.push("ACME".into());
        }
        BrandTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(BrandError::CompetesWithItself("ACME".into()));
    }

    #[test]
    fn too_many_keywords_are_refused() {
        let mut command = register();
        if let BrandCommand::Register { keywords, .. } = &mut command {
            *keywords = (0..=MAX_TERMS).map(|i| format!("k{i}")).collect();
        }
        BrandTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(BrandError::Invalid(TextError::TooMany {
                field: "keywords",
                len: MAX_TERMS + 1,
                max: MAX_TERMS,
            }));
    }

    #[test]
    fn changing_keywords_records_the_normalised_list() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(BrandCommand::ChangeKeywords {
                keywords: vec![" acme ".into(), "ACME".into(), "anvil".into()],
                at: at(),
            })
            .then_expect_events(vec![BrandEvent::BrandKeywordsChanged {
                keywords: vec!["acme".into(), "anvil".into()],
                at: at(),
            }]);
    }

    #[test]
    fn changing_keywords_to_the_same_list_records_nothing() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(BrandCommand::ChangeKeywords {
                keywords: vec!["acme".into(), "rocket skates".into()],
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn changing_keywords_of_an_unknown_brand_is_refused() {
        BrandTest::with(())
            .given_no_previous_events()
            .when(BrandCommand::ChangeKeywords {
                keywords: vec![],
                at: at(),
            })
            .then_expect_error(BrandError::NotFound);
    }

    #[test]
    fn changing_competitors_records_them() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(BrandCommand::ChangeCompetitors {
                competitors: vec!["Hooli".into()],
                at: at(),
            })
            .then_expect_events(vec![BrandEvent::BrandCompetitorsChanged {
                competitors: vec!["Hooli".into()],
                at: at(),
            }]);
    }

    #[test]
    fn changing_competitors_to_the_brand_itself_is_refused() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(BrandCommand::ChangeCompetitors {
                competitors: vec!["acme".into()],
                at: at(),
            })
            .then_expect_error(BrandError::CompetesWithItself("acme".into()));
    }

    #[test]
    fn archiving_a_brand_records_it() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(BrandCommand::Archive { at: at() })
            .then_expect_events(vec![BrandEvent::BrandArchived { at: at() }]);
    }

    #[test]
    fn an_archived_brand_cannot_change() {
        BrandTest::with(())
            .given(vec![registered(), BrandEvent::BrandArchived { at: at() }])
            .when(BrandCommand::ChangeCompetitors {
                competitors: vec![],
                at: at(),
            })
            .then_expect_error(BrandError::Archived);
    }

    #[test]
    fn archiving_twice_is_refused() {
        BrandTest::with(())
            .given(vec![registered(), BrandEvent::BrandArchived { at: at() }])
            .when(BrandCommand::Archive { at: at() })
            .then_expect_error(BrandError::Archived);
    }

    #[test]
    fn setting_alert_rules_records_them_with_the_next_version() {
        let rules = AlertRules {
            k: 3.0,
            ..AlertRules::default()
        };
        BrandTest::with(())
            .given(vec![
                registered(),
                BrandEvent::BrandAlertRulesChanged {
                    rules: AlertRules::default(),
                    version: 1,
                    at: at(),
                },
            ])
            .when(BrandCommand::SetAlertRules {
                rules: rules.clone(),
                at: at(),
            })
            .then_expect_events(vec![BrandEvent::BrandAlertRulesChanged {
                rules,
                version: 2,
                at: at(),
            }]);
    }

    #[test]
    fn alert_rules_out_of_range_are_refused_and_change_nothing() {
        BrandTest::with(())
            .given(vec![registered()])
            .when(BrandCommand::SetAlertRules {
                rules: AlertRules {
                    k: 0.0,
                    ..AlertRules::default()
                },
                at: at(),
            })
            .then_expect_error(BrandError::Rules(crate::brand::RulesError::BadK(0.0)));
    }

    #[test]
    fn archiving_an_unknown_brand_is_refused() {
        BrandTest::with(())
            .given_no_previous_events()
            .when(BrandCommand::Archive { at: at() })
            .then_expect_error(BrandError::NotFound);
    }

    /// The brand after `events`, rebuilt as the command handler rebuilds it.
    fn given(events: Vec<BrandEvent>) -> Brand {
        let mut brand = Brand::default();
        for event in events {
            brand.apply(event);
        }
        brand
    }

    #[test]
    fn a_registered_brand_is_active() {
        let brand = given(vec![registered()]);
        let verdict = brand.ensure_active();
        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn a_brand_never_registered_is_not_found() {
        let brand = given(vec![]);
        let verdict = brand.ensure_active();
        assert_eq!(verdict, Err(BrandInactive::NotFound));
    }

    #[test]
    fn an_archived_brand_is_not_active() {
        let brand = given(vec![registered(), BrandEvent::BrandArchived { at: at() }]);
        let verdict = brand.ensure_active();
        assert_eq!(verdict, Err(BrandInactive::Archived));
    }
}
