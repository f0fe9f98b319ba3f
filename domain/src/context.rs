//! The bounded contexts and which aggregates belong to each: the registry the event contract,
//! the topics and the projections agree on.

use cqrs_es::Aggregate;

use crate::agent::{AgentRun, Workflow};
use crate::brand::{Alert, Brand, Delivery, Mention};
use crate::content::Draft;
use crate::research::Document;

/// A bounded context: one topic carries all its event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    Brand,
    Content,
    Agent,
    Research,
}

impl Context {
    pub const ALL: [Self; 4] = [Self::Brand, Self::Content, Self::Agent, Self::Research];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Brand => "brand",
            Self::Content => "content",
            Self::Agent => "agent",
            Self::Research => "research",
        }
    }

    /// The context an aggregate type belongs to.
    pub fn of_aggregate(aggregate_type: &str) -> Option<Self> {
        match aggregate_type {
            Brand::TYPE | Mention::TYPE | Alert::TYPE | Delivery::TYPE => Some(Self::Brand),
            Draft::TYPE => Some(Self::Content),
            AgentRun::TYPE | Workflow::TYPE => Some(Self::Agent),
            Document::TYPE => Some(Self::Research),
            _ => None,
        }
    }

    /// The topic carrying this context's events, e.g. `plasma.brand.events`.
    pub fn topic(self, prefix: &str) -> String {
        format!("{prefix}.{}.events", self.as_str())
    }

    /// The Avro namespace of this context's records.
    pub fn namespace(self) -> String {
        format!("io.plasma.{}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aggregate_type_belongs_to_one_context() {
        assert_eq!(Context::of_aggregate("Mention"), Some(Context::Brand));
        assert_eq!(Context::of_aggregate("Document"), Some(Context::Research));
        assert_eq!(Context::of_aggregate("Nothing"), None);
        assert_eq!(Context::Agent.topic("plasma"), "plasma.agent.events");
    }
}
