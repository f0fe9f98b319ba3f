//! Where a draft will be published, and where a draft stands in its lifecycle.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The channel a draft is written for; it decides the length limit the voice check applies.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Blog,
    Twitter,
    #[serde(rename = "linkedin")]
    LinkedIn,
    Newsletter,
    Instagram,
}

impl Channel {
    /// Every channel, in a stable order (for forms and catalogs).
    pub const ALL: [Self; 5] = [
        Self::Blog,
        Self::Twitter,
        Self::LinkedIn,
        Self::Newsletter,
        Self::Instagram,
    ];

    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blog => "blog",
            Self::Twitter => "twitter",
            Self::LinkedIn => "linkedin",
            Self::Newsletter => "newsletter",
            Self::Instagram => "instagram",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }

    /// The most characters a post on this channel may have; `None` when the channel has no
    /// practical limit.
    pub fn max_chars(self) -> Option<usize> {
        match self {
            Self::Twitter => Some(280),
            Self::LinkedIn => Some(3000),
            Self::Instagram => Some(2200),
            Self::Blog | Self::Newsletter => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a draft stands; read models group drafts by it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftStatus {
    /// Asked for, no text yet.
    Requested,
    /// Has text (generated or revised) that has not been voice-checked.
    Generated,
    /// The current text was voice-checked (passed or not).
    VoiceChecked,
    Approved,
    Rejected,
    Scheduled,
    Published,
}

impl DraftStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Requested,
        Self::Generated,
        Self::VoiceChecked,
        Self::Approved,
        Self::Rejected,
        Self::Scheduled,
        Self::Published,
    ];

    /// The wire name, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Generated => "generated",
            Self::VoiceChecked => "voice_checked",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Scheduled => "scheduled",
            Self::Published => "published",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for DraftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_match_their_serde_form() {
        for channel in Channel::ALL {
            let json = serde_json::to_string(&channel).unwrap();
            assert_eq!(json, format!("\"{}\"", channel.as_str()));
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
    }

    #[test]
    fn status_names_match_their_serde_form() {
        for status in DraftStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(DraftStatus::parse(status.as_str()), Some(status));
        }
    }
}
