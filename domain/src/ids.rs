//! Typed identifiers, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{value}` is not a valid {kind}: expected a UUID")]
    NotAUuid { kind: &'static str, value: String },
    #[error("`{value}` is not a valid tenant id: use 1-63 characters a-z, 0-9, '-' or '_', starting with a letter or digit")]
    BadTenant { value: String },
}

/// A tenant: every command, event, read-model row and query is scoped to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let valid_len = (1..=63).contains(&value.len());
        let mut chars = value.chars();
        let valid_first = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid_len && valid_first && valid_rest {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::BadTenant {
                value: value.chars().take(80).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An id that names one aggregate instance (its stream in the event store).
pub trait AggregateId: fmt::Display + FromStr<Err = IdError> + Copy {
    fn as_uuid(&self) -> Uuid;
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID the caller generated (ids are minted at the edge, never in the domain).
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn parse(value: &str) -> Result<Self, IdError> {
                Uuid::parse_str(value).map(Self).map_err(|_| IdError::NotAUuid {
                    kind: $kind,
                    value: value.chars().take(80).collect(),
                })
            }
        }

        impl AggregateId for $name {
            fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// A brand a tenant tracks.
    BrandId, "brand id"
);
uuid_id!(
    /// A mention of a brand; derived from (tenant, source, external id), see [`MentionId::derive`].
    MentionId, "mention id"
);
uuid_id!(
    /// A content draft.
    DraftId, "draft id"
);
uuid_id!(
    /// One run of an agent workflow.
    RunId, "run id"
);
uuid_id!(
    /// A workflow name of a tenant, with all its versions; derived from (tenant, name).
    WorkflowId, "workflow id"
);
uuid_id!(
    /// A research document.
    DocumentId, "document id"
);
uuid_id!(
    /// An entity of a tenant's knowledge graph (derived from its name, not an aggregate).
    EntityId, "entity id"
);
uuid_id!(
    /// An alert: one detector finding for one brand, kind and hourly window.
    AlertId, "alert id"
);
uuid_id!(
    /// One notification of one alert change to one channel, retried under the same id.
    DeliveryId, "delivery id"
);
uuid_id!(
    /// The id of a command; a command retried with the same id returns its first outcome.
    CommandId, "command id"
);
uuid_id!(
    /// Correlates every command and event caused by one request.
    CorrelationId, "correlation id"
);

/// Namespace for deriving mention ids; fixed forever, since ids derived from it are stored.
const MENTION_NAMESPACE: Uuid = Uuid::from_u128(0x6d3c_1f0e_8a2b_4c5d_9e7f_0a1b_2c3d_4e5f);

impl MentionId {
    /// The same (tenant, source, external id) always yields the same mention id, which is what
    /// makes ingesting a mention twice land on one aggregate.
    pub fn derive(tenant: &TenantId, source: &str, external_id: &str) -> Self {
        // Length-prefixing keeps ("a", "bc") and ("ab", "c") apart.
        let key = format!(
            "{}:{}|{}:{}|{}:{}",
            tenant.as_str().len(),
            tenant.as_str(),
            source.len(),
            source,
            external_id.len(),
            external_id
        );
        Self(Uuid::new_v5(&MENTION_NAMESPACE, key.as_bytes()))
    }
}

/// Namespace for deriving alert and delivery ids; fixed forever, since ids derived from it are stored.
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x41e7_7c2a_0b5d_4e6f_8a9b_c1d2_e3f4_a5b6);

impl AlertId {
    /// One alert per (tenant, brand, kind, subject, window): raising it again lands on the same
    /// aggregate, which is how replays and late mentions never raise a window twice. `subject`
    /// is the competitor for a competitor surge, empty otherwise; `window_start` is in seconds.
    pub fn derive(
        tenant: &TenantId,
        brand: BrandId,
        kind: &str,
        subject: &str,
        window_start: i64,
    ) -> Self {
        let key = format!(
            "{}:{}|{}|{}|{}:{}|{}",
            tenant.as_str().len(),
            tenant.as_str(),
            brand.0,
            kind,
            subject.len(),
            subject,
            window_start
        );
        Self(Uuid::new_v5(&ALERT_NAMESPACE, key.as_bytes()))
    }
}

impl DeliveryId {
    /// One delivery per (alert event, channel): a retry, a restart or a redelivery keeps the id
    /// a receiver deduplicates by.
    pub fn derive(alert_event: Uuid, channel: &str) -> Self {
        let key = format!("delivery|{alert_event}|{channel}");
        Self(Uuid::new_v5(&ALERT_NAMESPACE, key.as_bytes()))
    }
}

/// Namespace for deriving workflow and drafting-run ids; fixed forever, since ids derived from it are stored.
const AGENT_NAMESPACE: Uuid = Uuid::from_u128(0x5a1e_2c3d_4e5f_4061_8273_9a8b_7c6d_5e4f);

impl WorkflowId {
    /// One aggregate per (tenant, workflow name).
    pub fn derive(tenant: &TenantId, name: &str) -> Self {
        let key = format!(
            "workflow|{}:{}|{}",
            tenant.as_str().len(),
            tenant.as_str(),
            name
        );
        Self(Uuid::new_v5(&AGENT_NAMESPACE, key.as_bytes()))
    }
}

impl RunId {
    /// The run that drafts a generated draft: one per draft, so a retried request starts none twice.
    pub fn for_draft(draft: DraftId) -> Self {
        let key = format!("draft-run|{}", draft.0);
        Self(Uuid::new_v5(&AGENT_NAMESPACE, key.as_bytes()))
    }

    /// The run a `continue_as_new` step (step `index` of `run`, after `epoch` resumes) starts:
    /// derived, so a retried step starts the same run rather than a second one.
    pub fn continuing(run: RunId, epoch: u32, index: u32) -> Self {
        let key = format!("continue|{}|{epoch}|{index}", run.0);
        Self(Uuid::new_v5(&AGENT_NAMESPACE, key.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_tenant_id_must_be_a_lowercase_slug() {
        assert!(TenantId::parse("acme-co_1").is_ok());
        for bad in ["", "Acme", "-acme", "acme corp", "a/b", &"x".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn a_malformed_uuid_is_rejected_with_the_kind_of_id_in_the_message() {
        let err = BrandId::parse("not-a-uuid").unwrap_err();
        assert!(err.to_string().contains("brand id"), "{err}");
    }

    #[test]
    fn mention_ids_differ_when_the_parts_shift_between_fields() {
        let t = TenantId::parse("t").unwrap();
        assert_ne!(
            MentionId::derive(&t, "a", "bc"),
            MentionId::derive(&t, "ab", "c")
        );
    }

    proptest! {
        #[test]
        fn mention_ids_are_a_function_of_tenant_source_and_external_id(
            source in ".{0,20}", external in ".{0,40}"
        ) {
            let a = TenantId::parse("tenant-a").unwrap();
            let b = TenantId::parse("tenant-b").unwrap();
            prop_assert_eq!(MentionId::derive(&a, &source, &external), MentionId::derive(&a, &source, &external));
            prop_assert_ne!(MentionId::derive(&a, &source, &external), MentionId::derive(&b, &source, &external));
        }

        #[test]
        fn uuid_ids_round_trip_through_display_and_parse(n in any::<u128>()) {
            let id = DraftId::from_uuid(Uuid::from_u128(n));
            prop_assert_eq!(DraftId::parse(&id.to_string()).unwrap(), id);
        }

        #[test]
        fn tenant_ids_round_trip_through_serde(t in "[a-z0-9][a-z0-9_-]{0,62}") {
            let id = TenantId::parse(&t).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
        }
    }
}
