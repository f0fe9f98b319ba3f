//! Signed webhooks: the domain's `ChannelSecrets` and `WebhookSender`.
//!
//! Every POST carries
//! - `Plasma-Delivery`: the delivery id, the same on every retry and redelivery (deduplicate by it);
//! - `Plasma-Event`: `alert.raised` or `alert.resolved`;
//! - `Plasma-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! A receiver recomputes the HMAC over the timestamp, a dot and the raw body with its channel's
//! secret, compares in constant time, and refuses timestamps older than a few minutes (replays).
//! Secrets are `whsec_` and 64 hex digits, derived from the platform's webhook key, the tenant,
//! the brand and the channel id: nothing secret is stored, and renaming a channel rotates it.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use plasma_domain::brand::{ChannelSecrets, WebhookOutcome, WebhookRequest, WebhookSender};
use plasma_domain::ids::BrandId;
use plasma_domain::{AggregateId as _, TenantId};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "Plasma-Signature";
pub const DELIVERY_HEADER: &str = "Plasma-Delivery";
pub const EVENT_HEADER: &str = "Plasma-Event";

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The platform's webhook key, from which every channel's secret is derived.
#[derive(Clone)]
pub struct WebhookKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey([redacted])")
    }
}

impl WebhookKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }
}

impl ChannelSecrets for WebhookKey {
    fn secret(&self, tenant: &TenantId, brand: BrandId, channel: &str) -> String {
        let key = format!(
            "plasma-webhook-v1|{}|{}|{}",
            tenant.as_str(),
            brand.as_uuid(),
            channel
        );
        format!("whsec_{}", hmac_hex(&self.key, &[key.as_bytes()]))
    }
}

/// The `Plasma-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let t = timestamp.to_string();
    let v1 = hmac_hex(secret.as_bytes(), &[t.as_bytes(), b".", body.as_bytes()]);
    format!("t={t},v1={v1}")
}

/// POSTs signed webhooks with reqwest.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    key: WebhookKey,
    client: reqwest::Client,
}

impl HttpWebhookSender {
    /// `timeout` bounds each attempt, connection included.
    pub fn new(key: WebhookKey, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("plasma-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { key, client })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> WebhookOutcome {
        let secret = self
            .key
            .secret(&request.tenant, request.brand, &request.channel);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let started = Instant::now();
        let sent = self
            .client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, request.delivery.to_string())
            .header(EVENT_HEADER, &request.event)
            .header(SIGNATURE_HEADER, signature(&secret, now, &request.body))
            .body(request.body.clone())
            .send()
            .await;
        let outcome = |status, error| WebhookOutcome {
            status,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        match sent {
            Ok(response) => outcome(Some(response.status().as_u16()), None),
            Err(err) => {
                let what = if err.is_timeout() {
                    "timed out"
                } else if err.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                outcome(None, Some(format!("the request {what}: {err}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2 for the primitive: key "Jefe".
        assert_eq!(
            hmac_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let header = signature("whsec_x", 1_700_000_000, "{}");
        assert_eq!(
            header,
            format!(
                "t=1700000000,v1={}",
                hmac_hex(b"whsec_x", &[b"1700000000.{}"])
            )
        );
    }

    #[test]
    fn channel_secrets_differ_by_tenant_brand_channel_and_key() {
        let key = WebhookKey::new(b"k".to_vec());
        let t = TenantId::parse("t").unwrap();
        let b = BrandId::from_uuid(uuid::Uuid::from_u128(1));
        let s = key.secret(&t, b, "ops");
        assert!(s.starts_with("whsec_") && s.len() == 6 + 64);
        assert_ne!(s, key.secret(&t, b, "ops2"));
        assert_ne!(s, key.secret(&TenantId::parse("u").unwrap(), b, "ops"));
        assert_ne!(s, WebhookKey::new(b"other".to_vec()).secret(&t, b, "ops"));
    }
}
