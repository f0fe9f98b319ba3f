//! A brand's alert rules: which detectors run, how sensitive they are, and who is told.

use serde::{Deserialize, Serialize};

use crate::text::{self, TextError};

const MAX_CHANNELS: usize = 10;
const MAX_CHANNEL_ID: usize = 64;
const MAX_URL: usize = 2048;
/// Above this a detector would never fire; below the floor it fires on noise.
const K_RANGE: std::ops::RangeInclusive<f64> = 0.5..=10.0;
const MAX_MIN_VOLUME: u32 = 1_000_000;

/// What a detector looks for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The brand's hourly mention volume far above its baseline.
    VolumeSpike,
    /// The share of negative mentions far above its baseline.
    NegativeSurge,
    /// One competitor named far more often than usual in the brand's mentions.
    CompetitorSurge,
}

impl AlertKind {
    pub const ALL: [Self; 3] = [
        Self::VolumeSpike,
        Self::NegativeSurge,
        Self::CompetitorSurge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VolumeSpike => "volume_spike",
            Self::NegativeSurge => "negative_surge",
            Self::CompetitorSurge => "competitor_surge",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// How the baseline and its spread are estimated from the trailing hours.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionMethod {
    /// Mean and standard deviation of the trailing 7 days' hours.
    #[default]
    MeanStddev,
    /// Median and MAD (scaled to σ) of the trailing 7 days' hours: a past spike does not
    /// inflate the baseline.
    Robust,
    /// The same hour of the week over the trailing 4 weeks as the baseline, the spread of the
    /// residuals around that weekly profile (seasonal decomposition, as in S-H-ESD).
    Seasonal,
}

impl DetectionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MeanStddev => "mean_stddev",
            Self::Robust => "robust",
            Self::Seasonal => "seasonal",
        }
    }
}

/// The shape of the body a webhook channel receives.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelFormat {
    /// Plasma's JSON: the delivery id, the event and the alert with its evidence.
    #[default]
    Plasma,
    /// A Slack incoming-webhook body (`text` and `blocks`).
    Slack,
}

/// A webhook that receives a brand's alerts, signed with the channel's secret.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// The channel's name within the brand: 1-64 characters a-z, 0-9, '-' or '_'. Its signing
    /// secret is derived from it, so renaming a channel rotates its secret.
    pub id: String,
    /// Where alerts are POSTed: an http(s) URL.
    pub url: String,
    #[serde(default)]
    pub format: ChannelFormat,
}

/// Which detectors run for a brand and how sensitive they are. Every change is versioned and
/// each alert records the version it was raised under.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRules {
    /// Detect hourly volume spikes.
    #[serde(default = "yes")]
    pub volume_spike: bool,
    /// Detect surges in the share of negative mentions.
    #[serde(default = "yes")]
    pub negative_surge: bool,
    /// Detect a competitor named far more often than usual.
    #[serde(default = "yes")]
    pub competitor_surge: bool,
    /// Sensitivity: an hour alerts above baseline + k·σ. 0.5 to 10; default 2.
    #[serde(default = "default_k")]
    pub k: f64,
    /// An hour with fewer mentions (of the brand, or naming the competitor) never alerts.
    #[serde(default = "default_min_volume")]
    pub min_volume: u32,
    #[serde(default)]
    pub method: DetectionMethod,
    /// Webhooks told when an alert is raised or resolved; at most 10.
    #[serde(default)]
    pub channels: Vec<WebhookChannel>,
}

fn yes() -> bool {
    true
}

fn default_k() -> f64 {
    2.0
}

fn default_min_volume() -> u32 {
    10
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            volume_spike: true,
            negative_surge: true,
            competitor_surge: true,
            k: default_k(),
            min_volume: default_min_volume(),
            method: DetectionMethod::default(),
            channels: Vec::new(),
        }
    }
}

/// Why a set of alert rules was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("`k` must be between 0.5 and 10, got {0}")]
    BadK(f64),
    #[error("`min_volume` must be between 1 and 1000000, got {0}")]
    BadMinVolume(u32),
    #[error("`channels` has {0} entries, at most 10")]
    TooManyChannels(usize),
    #[error("channel id `{0}` must be 1-64 characters a-z, 0-9, '-' or '_'")]
    BadChannelId(String),
    #[error("channel id `{0}` is used twice")]
    DuplicateChannel(String),
    #[error("channel `{0}`: `url` must be an http(s) URL with a host")]
    BadChannelUrl(String),
    #[error(transparent)]
    Invalid(#[from] TextError),
}

impl AlertRules {
    pub fn enabled(&self, kind: AlertKind) -> bool {
        match kind {
            AlertKind::VolumeSpike => self.volume_spike,
            AlertKind::NegativeSurge => self.negative_surge,
            AlertKind::CompetitorSurge => self.competitor_surge,
        }
    }

    /// Checked and normalised (URLs trimmed).
    pub fn validated(&self) -> Result<Self, RulesError> {
        if !self.k.is_finite() || !K_RANGE.contains(&self.k) {
            return Err(RulesError::BadK(self.k));
        }
        if !(1..=MAX_MIN_VOLUME).contains(&self.min_volume) {
            return Err(RulesError::BadMinVolume(self.min_volume));
        }
        if self.channels.len() > MAX_CHANNELS {
            return Err(RulesError::TooManyChannels(self.channels.len()));
        }
        let mut channels: Vec<WebhookChannel> = Vec::with_capacity(self.channels.len());
        for channel in &self.channels {
            let id = channel.id.trim();
            let valid_id = (1..=MAX_CHANNEL_ID).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid_id {
                return Err(RulesError::BadChannelId(id.chars().take(80).collect()));
            }
            if channels.iter().any(|c| c.id == id) {
                return Err(RulesError::DuplicateChannel(id.to_owned()));
            }
            let url = text::required("channels.url", &channel.url, MAX_URL)?;
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let has_host = rest.is_some_and(|r| {
                !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace)
            });
            if !has_host {
                return Err(RulesError::BadChannelUrl(id.to_owned()));
            }
            channels.push(WebhookChannel {
                id: id.to_owned(),
                url,
                format: channel.format,
            });
        }
        Ok(Self {
            channels,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(id: &str, url: &str) -> WebhookChannel {
        WebhookChannel {
            id: id.into(),
            url: url.into(),
            format: ChannelFormat::Plasma,
        }
    }

    #[test]
    fn the_defaults_watch_everything_at_two_sigma() {
        let rules: AlertRules = serde_json::from_str("{}").unwrap();
        assert_eq!(rules, AlertRules::default());
        assert!(AlertKind::ALL.iter().all(|k| rules.enabled(*k)));
        assert_eq!(rules.k, 2.0);
    }

    #[test]
    fn bad_sensitivity_volume_and_channels_are_refused() {
        let bad_k = AlertRules {
            k: f64::NAN,
            ..AlertRules::default()
        };
        assert!(matches!(bad_k.validated(), Err(RulesError::BadK(_))));
        let bad_volume = AlertRules {
            min_volume: 0,
            ..AlertRules::default()
        };
        assert_eq!(bad_volume.validated(), Err(RulesError::BadMinVolume(0)));
        for (id, url) in [
            ("Ops", "https://example.com"),
            ("ops", "ftp://example.com"),
            ("ops", "https:///path"),
        ] {
            let rules = AlertRules {
                channels: vec![channel(id, url)],
                ..AlertRules::default()
            };
            assert!(rules.validated().is_err(), "{id} {url}");
        }
        let twice = AlertRules {
            channels: vec![
                channel("ops", "https://a.example"),
                channel("ops", "https://b.example"),
            ],
            ..AlertRules::default()
        };
        assert_eq!(
            twice.validated(),
            Err(RulesError::DuplicateChannel("ops".into()))
        );
    }
}
