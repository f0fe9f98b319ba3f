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

use std::net::IpAddr;
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
    allow_private: bool,
}

impl HttpWebhookSender {
    /// `timeout` bounds each attempt, connection included. Unless `allow_private`, a URL whose
    /// host is or resolves to a loopback, private, link-local or otherwise internal address is
    /// refused (a webhook must not reach the platform's own network: the cloud metadata
    /// endpoint, the database).
    pub fn new(
        key: WebhookKey,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("plasma-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            key,
            client,
            allow_private,
        })
    }

    /// Why `url` may not be sent to, if it may not.
    async fn refusal(&self, url: &str) -> Option<String> {
        if self.allow_private {
            return None;
        }
        let parsed = match reqwest::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(err) => return Some(format!("not a URL: {err}")),
        };
        let host = parsed
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::net::lookup_host((host, port)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(err) => return Some(format!("cannot resolve {host}: {err}")),
            },
        };
        addresses.into_iter().find(|ip| internal(*ip)).map(|ip| {
            format!(
                "refused: {host} is the internal address {ip} (alerts.allow_private_targets is off)"
            )
        })
    }
}

/// Loopback, private, link-local, unspecified, CGNAT and unique-local addresses.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> WebhookOutcome {
        if let Some(refusal) = self.refusal(&request.url).await {
            return WebhookOutcome {
                status: None,
                error: Some(refusal),
                duration_ms: 0,
            };
        }
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
    fn internal_addresses_are_told_apart_from_public_ones() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1"] {
            assert!(!internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_webhook_to_an_internal_address_is_refused_without_sending() {
        let sender = HttpWebhookSender::new(
            WebhookKey::new(b"k".to_vec()),
            Duration::from_secs(1),
            false,
        )
        .unwrap();
        let request = WebhookRequest {
            tenant: TenantId::parse("t").unwrap(),
            brand: BrandId::from_uuid(uuid::Uuid::from_u128(1)),
            channel: "ops".into(),
            url: "http://169.254.169.254/latest/meta-data".into(),
            delivery: plasma_domain::ids::DeliveryId::from_uuid(uuid::Uuid::from_u128(2)),
            event: "alert.raised".into(),
            body: "{}".into(),
        };
        let outcome = sender.send(&request).await;
        assert_eq!(outcome.status, None);
        assert!(outcome.error.unwrap().contains("internal address"));
        let localhost = WebhookRequest {
            url: "http://localhost:9/hook".into(),
            ..request
        };
        assert!(sender
            .send(&localhost)
            .await
            .error
            .unwrap()
            .contains("internal address"));
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
