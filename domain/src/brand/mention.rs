//! The Mention aggregate: one post or article that talks about a brand, scored once at ingest.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::sentiment::{ScorerInfo, Sentiment, SentimentScorer};
use crate::ids::{BrandId, MentionId};
use crate::text::{self, TextError};
use crate::EventName;
use crate::TenantId;

const MAX_SOURCE: usize = 64;
const MAX_EXTERNAL_ID: usize = 256;
const MAX_AUTHOR: usize = 256;
const MAX_TEXT: usize = 20_000;
const MAX_URL: usize = 2048;
const MAX_LANGUAGE: usize = 16;
const MAX_REASON: usize = 1000;

/// What the Mention aggregate needs from outside: a sentiment scorer.
#[derive(Clone)]
pub struct MentionServices {
    pub scorer: Arc<dyn SentimentScorer>,
}

impl std::fmt::Debug for MentionServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MentionServices")
            .field("scorer", &self.scorer.info())
            .finish()
    }
}

// The API's request body is this type as it stands (its serde attributes decide the API's
// error messages, its doc comment the schema's description); the OpenAPI document has always
// called it `MentionBody`.
/// One mention as a source delivers it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = MentionBody))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MentionInput {
    pub source: String,
    pub external_id: String,
    #[serde(default)]
    pub author: String,
    pub text: String,
    #[serde(default)]
    pub url: Option<String>,
    pub published_at: DateTime<Utc>,
    #[serde(default)]
    pub language: Option<String>,
}

/// Ingests a mention as a source connector delivered it into one brand. `competitors` is the
/// brand's competitor list at ingest time (the command handler reads it from the Brand), so the
/// event can record which competitors the text names without the projection ever consulting
/// the brand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestMention {
    pub brand_id: BrandId,
    // Flattened, so the command serializes (and fingerprints) as it did with the fields inline.
    #[serde(flatten)]
    pub mention: MentionInput,
    pub competitors: Vec<String>,
    pub at: DateTime<Utc>,
}

impl IngestMention {
    /// The id of the mention this ingest lands on: the same (tenant, source, external id), after
    /// the normalisation the event records, always gives the same id.
    pub fn mention_id(&self, tenant: &TenantId) -> MentionId {
        MentionId::derive(
            tenant,
            &normalise_source(&self.mention.source),
            self.mention.external_id.trim(),
        )
    }
}

fn normalise_source(source: &str) -> String {
    source.trim().to_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MentionCommand {
    Ingest(IngestMention),
    Flag { reason: String, at: DateTime<Utc> },
    Escalate { reason: String, at: DateTime<Utc> },
}

/// Everything a read model needs about a freshly ingested mention, sentiment included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionIngested {
    pub brand_id: BrandId,
    pub source: String,
    pub external_id: String,
    pub author: String,
    pub text: String,
    pub url: Option<String>,
    pub published_at: DateTime<Utc>,
    pub language: Option<String>,
    pub sentiment: Sentiment,
    pub scorer: ScorerInfo,
    /// Competitors (from the brand's list at ingest) that the text names, for share of voice.
    pub competitors_mentioned: Vec<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MentionEvent {
    MentionIngested(Box<MentionIngested>),
    MentionFlagged { reason: String, at: DateTime<Utc> },
    MentionEscalated { reason: String, at: DateTime<Utc> },
}

impl DomainEvent for MentionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MentionIngested(_) => "MentionIngested",
            Self::MentionFlagged { .. } => "MentionFlagged",
            Self::MentionEscalated { .. } => "MentionEscalated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl EventName for MentionEvent {
    const EVENT_NAMES: &'static [(&'static str, u16)] = &[
        ("MentionIngested", 1),
        ("MentionFlagged", 1),
        ("MentionEscalated", 1),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MentionError {
    #[error("the mention does not exist")]
    NotFound,
    #[error("the mention is already flagged")]
    AlreadyFlagged,
    #[error("the mention is already escalated")]
    AlreadyEscalated,
    #[error("`url` must be an http(s) URL")]
    BadUrl,
    #[error(transparent)]
    Invalid(#[from] TextError),
}

/// A mention's state. Ingesting an existing mention again changes nothing, which is how the same
/// (tenant, source, external id) arriving twice yields one mention.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub ingested: bool,
    pub brand_id: Option<BrandId>,
    pub flagged: bool,
    pub escalated: bool,
}

impl Mention {
    /// Validates and scores an ingest; `None` when the mention already exists.
    pub fn decide_ingest(
        &self,
        command: IngestMention,
        scorer: &dyn SentimentScorer,
    ) -> Result<Option<MentionEvent>, MentionError> {
        let IngestMention {
            brand_id,
            mention,
            competitors,
            at,
        } = command;
        let source = text::required("source", &normalise_source(&mention.source), MAX_SOURCE)?;
        let external_id = text::required("external_id", &mention.external_id, MAX_EXTERNAL_ID)?;
        let author = text::bounded("author", mention.author.trim(), MAX_AUTHOR)?;
        let body = text::required("text", &mention.text, MAX_TEXT)?;
        let url = match mention.url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                let url = text::bounded("url", url, MAX_URL)?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(MentionError::BadUrl);
                }
                Some(url)
            }
        };
        let language = match mention.language.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(lang) => Some(text::bounded("language", lang, MAX_LANGUAGE)?.to_lowercase()),
        };
        if self.ingested {
            return Ok(None);
        }
        let lowered = body.to_lowercase();
        let competitors_mentioned = competitors
            .into_iter()
            .filter(|c| !c.trim().is_empty() && lowered.contains(&c.trim().to_lowercase()))
            .collect();
        let sentiment = Sentiment::from_millis(scorer.score_millis(&body));
        Ok(Some(MentionEvent::MentionIngested(Box::new(
            MentionIngested {
                brand_id,
                source,
                external_id,
                author,
                text: body,
                url,
                published_at: mention.published_at,
                language,
                sentiment,
                scorer: scorer.info(),
                competitors_mentioned,
                at,
            },
        ))))
    }

    fn decide(
        &self,
        command: MentionCommand,
        services: &MentionServices,
    ) -> Result<Option<MentionEvent>, MentionError> {
        match command {
            MentionCommand::Ingest(ingest) => self.decide_ingest(ingest, services.scorer.as_ref()),
            MentionCommand::Flag { reason, at } => {
                if !self.ingested {
                    return Err(MentionError::NotFound);
                }
                if self.flagged {
                    return Err(MentionError::AlreadyFlagged);
                }
                let reason = text::required("reason", &reason, MAX_REASON)?;
                Ok(Some(MentionEvent::MentionFlagged { reason, at }))
            }
            MentionCommand::Escalate { reason, at } => {
                if !self.ingested {
                    return Err(MentionError::NotFound);
                }
                if self.escalated {
                    return Err(MentionError::AlreadyEscalated);
                }
                let reason = text::required("reason", &reason, MAX_REASON)?;
                Ok(Some(MentionEvent::MentionEscalated { reason, at }))
            }
        }
    }
}

impl Aggregate for Mention {
    const TYPE: &'static str = "Mention";
    type Command = MentionCommand;
    type Event = MentionEvent;
    type Error = MentionError;
    type Services = MentionServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            MentionEvent::MentionIngested(ingested) => {
                self.ingested = true;
                self.brand_id = Some(ingested.brand_id);
            }
            MentionEvent::MentionFlagged { .. } => self.flagged = true,
            MentionEvent::MentionEscalated { .. } => self.escalated = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::brand::SentimentLabel;

    /// Scores by counting "love" and "hate"; enough to see the score land in the event.
    struct WordScorer;

    impl SentimentScorer for WordScorer {
        fn score_millis(&self, text: &str) -> i16 {
            let love = text.matches("love").count() as i16;
            let hate = text.matches("hate").count() as i16;
            (love - hate) * 500
        }
        fn info(&self) -> ScorerInfo {
            ScorerInfo {
                name: "words".into(),
                version: "1".into(),
            }
        }
    }

    fn services() -> MentionServices {
        MentionServices {
            scorer: Arc::new(WordScorer),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap()
    }

    fn brand() -> BrandId {
        BrandId::from_uuid(Uuid::from_u128(7))
    }

    fn ingest() -> IngestMention {
        IngestMention {
            brand_id: brand(),
            mention: MentionInput {
                source: "Twitter".into(),
                external_id: "tw-1".into(),
                author: "@ana".into(),
                text: "I love my Acme skates, way better than Globex".into(),
                url: Some("https://x.example/tw-1".into()),
                published_at: at(),
                language: Some("EN".into()),
            },
            competitors: vec!["Globex".into(), "Initech".into()],
            at: at(),
        }
    }

    fn ingested() -> MentionEvent {
        MentionEvent::MentionIngested(Box::new(MentionIngested {
            brand_id: brand(),
            source: "twitter".into(),
            external_id: "tw-1".into(),
            author: "@ana".into(),
            text: "I love my Acme skates, way better than Globex".into(),
            url: Some("https://x.example/tw-1".into()),
            published_at: at(),
            language: Some("en".into()),
            sentiment: Sentiment {
                score_millis: 500,
                label: SentimentLabel::Positive,
            },
            scorer: WordScorer.info(),
            competitors_mentioned: vec!["Globex".into()],
            at: at(),
        }))
    }

    #[test]
    fn ingesting_a_mention_records_its_sentiment_scorer_and_competitors_named() {
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Ingest(ingest()))
            .then_expect_events(vec![ingested()]);
    }

    #[test]
    fn ingesting_the_same_mention_twice_yields_one_mention() {
        TestFramework::<Mention>::with(services())
            .given(vec![ingested()])
            .when(MentionCommand::Ingest(ingest()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_mention_id_ignores_case_and_padding_of_the_source_and_external_id() {
        let tenant = TenantId::parse("acme").unwrap();
        let mut other = ingest();
        other.mention.source = " TWITTER ".into();
        other.mention.external_id = " tw-1 ".into();
        assert_eq!(ingest().mention_id(&tenant), other.mention_id(&tenant));
    }

    #[test]
    fn an_ingest_serializes_with_the_mention_fields_inline() {
        // Command fingerprints hash this form: nesting the mention's fields would change them.
        let value = serde_json::to_value(ingest()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "at",
                "author",
                "brand_id",
                "competitors",
                "external_id",
                "language",
                "published_at",
                "source",
                "text",
                "url"
            ]
        );
        assert_eq!(
            serde_json::from_value::<IngestMention>(value).unwrap(),
            ingest()
        );
    }

    #[test]
    fn a_mention_without_text_is_refused() {
        let mut command = ingest();
        command.mention.text = " ".into();
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Ingest(command))
            .then_expect_error(MentionError::Invalid(TextError::Empty { field: "text" }));
    }

    #[test]
    fn a_mention_without_external_id_is_refused() {
        let mut command = ingest();
        command.mention.external_id = String::new();
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Ingest(command))
            .then_expect_error(MentionError::Invalid(TextError::Empty {
                field: "external_id",
            }));
    }

    #[test]
    fn a_mention_with_an_overlong_text_is_refused() {
        let mut command = ingest();
        command.mention.text = "a".repeat(MAX_TEXT + 1);
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Ingest(command))
            .then_expect_error(MentionError::Invalid(TextError::TooLong {
                field: "text",
                len: MAX_TEXT + 1,
                max: MAX_TEXT,
            }));
    }

    #[test]
    fn a_mention_with_a_non_http_url_is_refused() {
        let mut command = ingest();
        command.mention.url = Some("javascript:alert(1)".into());
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Ingest(command))
            .then_expect_error(MentionError::BadUrl);
    }

    #[test]
    fn flagging_a_mention_records_the_reason() {
        TestFramework::<Mention>::with(services())
            .given(vec![ingested()])
            .when(MentionCommand::Flag {
                reason: "spam".into(),
                at: at(),
            })
            .then_expect_events(vec![MentionEvent::MentionFlagged {
                reason: "spam".into(),
                at: at(),
            }]);
    }

    #[test]
    fn flagging_an_unknown_mention_is_refused() {
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Flag {
                reason: "spam".into(),
                at: at(),
            })
            .then_expect_error(MentionError::NotFound);
    }

    #[test]
    fn flagging_twice_is_refused() {
        TestFramework::<Mention>::with(services())
            .given(vec![
                ingested(),
                MentionEvent::MentionFlagged {
                    reason: "spam".into(),
                    at: at(),
                },
            ])
            .when(MentionCommand::Flag {
                reason: "again".into(),
                at: at(),
            })
            .then_expect_error(MentionError::AlreadyFlagged);
    }

    #[test]
    fn flagging_without_a_reason_is_refused() {
        TestFramework::<Mention>::with(services())
            .given(vec![ingested()])
            .when(MentionCommand::Flag {
                reason: "".into(),
                at: at(),
            })
            .then_expect_error(MentionError::Invalid(TextError::Empty { field: "reason" }));
    }

    #[test]
    fn escalating_a_mention_records_it() {
        TestFramework::<Mention>::with(services())
            .given(vec![ingested()])
            .when(MentionCommand::Escalate {
                reason: "angry customer".into(),
                at: at(),
            })
            .then_expect_events(vec![MentionEvent::MentionEscalated {
                reason: "angry customer".into(),
                at: at(),
            }]);
    }

    #[test]
    fn escalating_an_unknown_mention_is_refused() {
        TestFramework::<Mention>::with(services())
            .given_no_previous_events()
            .when(MentionCommand::Escalate {
                reason: "x".into(),
                at: at(),
            })
            .then_expect_error(MentionError::NotFound);
    }

    #[test]
    fn escalating_twice_is_refused() {
        TestFramework::<Mention>::with(services())
            .given(vec![
                ingested(),
                MentionEvent::MentionEscalated {
                    reason: "x".into(),
                    at: at(),
                },
            ])
            .when(MentionCommand::Escalate {
                reason: "y".into(),
                at: at(),
            })
            .then_expect_error(MentionError::AlreadyEscalated);
    }
}
