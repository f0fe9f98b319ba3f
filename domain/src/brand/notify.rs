//! The ports alert notifications go out through: a channel's signing secret, and the HTTP POST
//! of a signed webhook. Both live in adapters.

use async_trait::async_trait;

use crate::ids::{BrandId, DeliveryId};
use crate::TenantId;

/// The signing secret of a brand's webhook channel, derived from a platform key so nothing
/// secret is stored in events or read models.
pub trait ChannelSecrets: Send + Sync + std::fmt::Debug {
    fn secret(&self, tenant: &TenantId, brand: BrandId, channel: &str) -> String;
}

/// One signed POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub tenant: TenantId,
    pub brand: BrandId,
    pub channel: String,
    pub url: String,
    pub delivery: DeliveryId,
    /// `alert.raised` or `alert.resolved`.
    pub event: String,
    pub body: String,
}

/// What came of a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOutcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Sends a webhook: signs it with the channel's secret and POSTs it, within a timeout.
#[async_trait]
pub trait WebhookSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, request: &WebhookRequest) -> WebhookOutcome;
}
