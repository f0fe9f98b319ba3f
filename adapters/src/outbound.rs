//! Outbound HTTP for agent tools: `http.request` to allow-listed hosts, and the webhook
//! publisher that drafts go out through.

use std::time::Duration;

use async_trait::async_trait;
use plasma_domain::agent::{
    DraftPublisher, OutboundError, OutboundHttp, OutboundRequest, OutboundResponse, PublishError,
    PublishRequest,
};
use plasma_domain::AggregateId as _;
use serde_json::{json, Value};

use crate::webhook::signature;

/// Sends requests to the hosts on its allow-list only (exact host names, or `*.example.com`
/// for subdomains); redirects are not followed, so a listed host cannot bounce elsewhere.
#[derive(Debug, Clone)]
pub struct AllowListedHttp {
    client: reqwest::Client,
    allowed_hosts: Vec<String>,
}

impl AllowListedHttp {
    pub fn new(allowed_hosts: Vec<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("plasma-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allowed_hosts: allowed_hosts
                .into_iter()
                .map(|h| h.trim().to_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        })
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_lowercase();
        self.allowed_hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => *allowed == host,
            })
    }
}

#[async_trait]
impl OutboundHttp for AllowListedHttp {
    async fn send(&self, request: &OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| OutboundError::Refused(format!("`{}` is not a URL: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Refused("only http and https URLs".into()));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        if !self.allows(&host) {
            return Err(OutboundError::Refused(format!(
                "host `{host}` is not on the allow-list (agent.http_allowed_hosts)"
            )));
        }
        let method = reqwest::Method::from_bytes(request.method.to_uppercase().as_bytes())
            .map_err(|_| OutboundError::Refused(format!("bad method `{}`", request.method)))?;
        let mut call = self
            .client
            .request(method, url)
            .header("Idempotency-Key", &request.idempotency_key);
        for (name, value) in &request.headers {
            call = call.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &request.body {
            call = call.json(body);
        }
        let response = call.send().await.map_err(|e| {
            OutboundError::Failed(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                format!("cannot reach {host}: {e}")
            })
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| OutboundError::Failed(format!("reading the answer: {e}")))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == 429 || status >= 500 {
            return Err(OutboundError::Failed(format!("HTTP {status}: {body}")));
        }
        Ok(OutboundResponse { status, body })
    }
}

/// Publishes drafts by POSTing them to a webhook, signed like the alert webhooks
/// (`Plasma-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`), with `Plasma-Event:
/// draft.published` and an `Idempotency-Key` that is the same on every retry. A 2xx is
/// published (a `url` in the JSON answer is kept); 408, 429 and 5xx are retried; any other
/// status is final. With no URL configured, publishing only records the draft as published.
#[derive(Clone)]
pub struct WebhookPublisher {
    url: Option<String>,
    secret: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPublisher")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookPublisher {
    pub fn new(
        url: Option<String>,
        secret: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("plasma-publisher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            url: url.filter(|u| !u.trim().is_empty()),
            secret,
            client,
        })
    }
}

#[async_trait]
impl DraftPublisher for WebhookPublisher {
    async fn publish(&self, request: &PublishRequest) -> Result<Option<String>, PublishError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let body = json!({
            "tenant": request.tenant.as_str(),
            "draft_id": request.draft_id.as_uuid(),
            "brand_id": request.brand_id.as_uuid(),
            "channel": request.channel,
            "text": request.text,
        })
        .to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &request.idempotency_key)
            .header(crate::webhook::EVENT_HEADER, "draft.published")
            .header(
                crate::webhook::SIGNATURE_HEADER,
                signature(&self.secret, now, &body),
            )
            .body(body)
            .send()
            .await;
        let transient = |message: String| PublishError {
            transient: true,
            message,
        };
        let response = sent.map_err(|e| transient(format!("cannot reach the publisher: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                v.get("url")
                    .and_then(Value::as_str)
                    .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                    .map(str::to_owned)
            })),
            408 | 429 | 500..=599 => Err(transient(format!("publisher answered HTTP {status}"))),
            _ => Err(PublishError {
                transient: false,
                message: format!(
                    "publisher refused with HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_matches_hosts_and_wildcard_subdomains() {
        let http = AllowListedHttp::new(
            vec!["api.example.com".into(), "*.partner.io".into()],
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(http.allows("api.example.com"));
        assert!(http.allows("API.example.com"));
        assert!(!http.allows("example.com"));
        assert!(http.allows("a.partner.io"));
        assert!(!http.allows("partner.io"));
        assert!(!http.allows("evilpartner.io"));
    }
}
