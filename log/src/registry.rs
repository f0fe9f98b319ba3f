//! Registering the contract with a schema registry. Only endpoints Redpanda's built-in registry
//! also serves: `POST /subjects/{s}/versions`, `PUT /config/{s}`,
//! `POST /compatibility/subjects/{s}/versions/latest`, `GET /subjects`.

use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::Deserialize;

use crate::{Catalog, LogError};

/// The registry's compatibility level for every event subject: a consumer on any earlier
/// version of an event's schema can be replaced by one on the latest, with data of all versions.
pub const COMPATIBILITY: &str = "BACKWARD_TRANSITIVE";

/// One subject as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub id: u32,
}

#[derive(Debug, Clone)]
pub struct RegistryAdmin {
    url: String,
    settings: SrSettings,
    http: reqwest::Client,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryAdmin {
    pub fn new(url: &str) -> Result<Self, LogError> {
        let url = url.trim_end_matches('/').to_owned();
        let settings = SrSettings::new_builder(url.clone())
            .no_proxy()
            .build()
            .map_err(|e| registry_error("configuring the client", e))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| registry_error("configuring the client", e))?;
        Ok(Self {
            url,
            settings,
            http,
        })
    }

    /// Registers every event schema under its TopicRecordNameStrategy subject and sets the
    /// subject's compatibility to [`COMPATIBILITY`]. Registering an unchanged schema again
    /// returns its existing id, so this is safe to run on every deploy; an incompatible change
    /// is refused by the registry and reported here.
    pub async fn register_all(&self, topic_prefix: &str) -> Result<Vec<Registered>, LogError> {
        let catalog = Catalog::get()?;
        let mut registered = Vec::new();
        for schema in catalog.schemas() {
            let subject = schema.subject(topic_prefix);
            // Compatibility first, so that even the second version of a new subject is checked
            // transitively.
            self.set_compatibility(&subject).await?;
            let supplied = SuppliedSchema::new(
                Some(schema.full_name.clone()),
                SchemaType::Avro,
                schema.source.to_owned(),
            );
            let result = post_schema(&self.settings, subject.clone(), supplied)
                .await
                .map_err(|e| registry_error(&format!("registering {subject}"), e))?;
            registered.push(Registered {
                subject,
                id: result.id,
            });
        }
        Ok(registered)
    }

    /// `PUT /config/{subject}`.
    pub async fn set_compatibility(&self, subject: &str) -> Result<(), LogError> {
        let url = format!("{}/config/{}", self.url, encode(subject));
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&serde_json::json!({ "compatibility": COMPATIBILITY }))
            .send()
            .await
            .map_err(|e| registry_error(&format!("configuring {subject}"), e))?;
        ensure_ok(response, &format!("configuring {subject}")).await?;
        Ok(())
    }

    /// `GET /config/{subject}`: the subject's compatibility level.
    pub async fn compatibility(&self, subject: &str) -> Result<String, LogError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "compatibilityLevel")]
            level: String,
        }
        let context = format!("reading the compatibility of {subject}");
        let response = self
            .http
            .get(format!("{}/config/{}", self.url, encode(subject)))
            .send()
            .await
            .map_err(|e| registry_error(&context, e))?;
        let response = ensure_ok(response, &context).await?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| registry_error(&context, e))?;
        Ok(answer.level)
    }

    /// Whether `schema` could be registered as the next version of `subject`
    /// (`POST /compatibility/subjects/{s}/versions/latest`).
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, LogError> {
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
        }
        let url = format!(
            "{}/compatibility/subjects/{}/versions/latest",
            self.url,
            encode(subject)
        );
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": schema, "schemaType": "AVRO" }))
            .send()
            .await
            .map_err(|e| registry_error(&format!("checking {subject}"), e))?;
        let response = ensure_ok(response, &format!("checking {subject}")).await?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| registry_error(&format!("checking {subject}"), e))?;
        Ok(answer.is_compatible)
    }

    /// `GET /subjects`.
    pub async fn subjects(&self) -> Result<Vec<String>, LogError> {
        let response = self
            .http
            .get(format!("{}/subjects", self.url))
            .send()
            .await
            .map_err(|e| registry_error("listing subjects", e))?;
        let response = ensure_ok(response, "listing subjects").await?;
        response
            .json()
            .await
            .map_err(|e| registry_error("listing subjects", e))
    }
}

fn registry_error(context: &str, error: impl std::fmt::Display) -> LogError {
    LogError::Registry {
        context: context.to_owned(),
        message: error.to_string(),
    }
}

async fn ensure_ok(
    response: reqwest::Response,
    context: &str,
) -> Result<reqwest::Response, LogError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(registry_error(context, format!("{status}: {body}")))
}

/// Subjects contain only `[A-Za-z0-9._-]` here, but encode anything else to be safe.
fn encode(subject: &str) -> String {
    form_urlencoded::byte_serialize(subject.as_bytes()).collect()
}
