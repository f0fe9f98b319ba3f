//! Shared fixtures for the API tests: the real server on port 0 against a fresh store (a new
//! SQLite dir, or a new PostgreSQL database), tokens, requests, and problem+json matchers.

use std::any::Any;
use std::sync::Once;
use std::time::Duration;

use chrono::Utc;
use plasma_cli::demo::{DemoOutcome, DEMO_TENANT};
use plasma_cli::settings::{JwtKey, SettingsLayer};
use plasma_cli::{Application, Profile, Settings};
use plasma_domain::TenantId;
use plasma_gateway::auth::Claims;
use plasma_gateway::{Role, Secret, TokenIssuer};
use reqwest::{Method, Response};
use serde_json::{json, Value};

pub use plasma_testkit::Backend;

/// The secret test servers verify tokens with.
pub const TEST_SECRET: &str = "api-test-secret-api-test-secret-0123";
/// The tenant most tests act as.
pub const TENANT: &str = "acme";

/// A running gateway and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    issuer: TokenIssuer,
    // Keep the store (temp dir or database) alive as long as the app.
    _guards: Vec<Box<dyn Any + Send>>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = std::env::var("PLASMA_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .init();
        }
    });
}

/// Test settings: port 0, the test secret, a generous rate limit, then `configure`.
async fn build(
    backend: Backend,
    configure: impl FnOnce(&mut SettingsLayer),
) -> (Application, TokenIssuer, Vec<Box<dyn Any + Send>>) {
    init_logs();
    let mut layer = SettingsLayer::default();
    layer.http.listen = Some("127.0.0.1:0".parse().unwrap());
    layer.auth.jwt_secret = Some(Secret::new(TEST_SECRET));
    layer.rate_limit.per_second = Some(10_000);
    layer.rate_limit.burst = Some(10_000);
    // Embedding workers load their model at start; the API tests that need one ask for it.
    layer.research.embedders = Some(Vec::new());
    // Drafts from templates, deterministic; the tests of the in-process model ask for it.
    layer.agent.provider = Some("template".into());
    // The tests' webhook receivers listen on loopback.
    layer.alerts.allow_private_targets = Some(true);
    let mut guards: Vec<Box<dyn Any + Send>> = Vec::new();
    match backend {
        Backend::Sqlite => {
            let dir = plasma_testkit::temp_dir();
            layer.store.data_dir = Some(dir.path().to_owned());
            guards.push(Box::new(dir));
        }
        Backend::Postgres => {
            let pg = plasma_testkit::TestPg::start().await;
            layer.store.database_url = Some(Secret::new(pg.url()));
            layer.store.max_connections = Some(10);
            guards.push(Box::new(pg));
        }
    }
    configure(&mut layer);
    let settings = Settings::from_layer(layer, Profile::Serve).unwrap();
    // With an OIDC issuer the gateway signs nothing; the test secret's tokens are then ones
    // the gateway must refuse.
    let issuer = TokenIssuer::new(&settings.auth.jwt)
        .or_else(|| TokenIssuer::new(&JwtKey::Hs256(Secret::new(TEST_SECRET))))
        .unwrap();
    let app = Application::build(settings).await.unwrap();
    (app, issuer, guards)
}

fn run(app: Application, issuer: TokenIssuer, guards: Vec<Box<dyn Any + Send>>) -> TestApp {
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        issuer,
        _guards: guards,
    }
}

/// The gateway with test settings on a fresh store.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// The gateway with test settings adjusted by `configure`.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut SettingsLayer),
) -> TestApp {
    let (app, issuer, guards) = build(backend, configure).await;
    run(app, issuer, guards)
}

/// The gateway after loading the demo into tenant `demo` twice (as `plasma dev --demo` run
/// twice would): the two outcomes and the running app.
pub async fn spawn_app_with_demo(backend: Backend) -> (TestApp, DemoOutcome, DemoOutcome) {
    spawn_app_with_demo_and(backend, |_| {}).await
}

/// [`spawn_app_with_demo`] with test settings adjusted by `configure`.
pub async fn spawn_app_with_demo_and(
    backend: Backend,
    configure: impl FnOnce(&mut SettingsLayer),
) -> (TestApp, DemoOutcome, DemoOutcome) {
    let (app, issuer, guards) = build(backend, |layer| {
        // The projections have ~6,000 events to apply before the first query can see them.
        layer.consistency.min_position_wait = Some(Duration::from_secs(20));
        configure(layer);
    })
    .await;
    let tenant = TenantId::parse(DEMO_TENANT).unwrap();
    let first = app.load_demo(&tenant).await.unwrap();
    let second = app.load_demo(&tenant).await.unwrap();
    (run(app, issuer, guards), first, second)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A valid token for `tenant` with `roles`.
    pub fn token(&self, tenant: &str, roles: &[Role]) -> String {
        self.issuer
            .issue(
                "tester",
                &TenantId::parse(tenant).unwrap(),
                roles,
                Duration::from_secs(3600),
                Utc::now(),
            )
            .unwrap()
    }

    /// An admin of [`TENANT`].
    pub fn admin(&self) -> String {
        self.token(TENANT, &[Role::Admin])
    }

    pub fn expired_token(&self) -> String {
        self.issuer
            .sign(&Claims {
                sub: "tester".into(),
                tenant: TENANT.into(),
                roles: vec!["admin".into()],
                exp: Utc::now().timestamp() - 3600,
                iat: None,
            })
            .unwrap()
    }

    /// An admin token signed with a secret the server does not know.
    pub fn forged_token(&self) -> String {
        TokenIssuer::new(&JwtKey::Hs256(Secret::new(
            "not-the-server-secret-not-the-server",
        )))
        .unwrap()
        .issue(
            "mallory",
            &TenantId::parse(TENANT).unwrap(),
            &[Role::Admin],
            Duration::from_secs(3600),
            Utc::now(),
        )
        .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, token, body).await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send_json(Method::PUT, path, token, body).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// POSTs without a body (a voice check, an archive, a resume from the latest checkpoint).
    pub async fn post_empty(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` with an `Idempotency-Key`.
    pub async fn post_json_with_key(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: &Value,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` once the read models reached `position`; asserts 200 and returns the body.
    pub async fn read(&self, path: &str, token: &str, position: i64) -> Value {
        let separator = if path.contains('?') { '&' } else { '?' };
        let response = self
            .get(&format!("{path}{separator}min_position={position}"), token)
            .await;
        accepted(response, 200).await
    }

    /// Sends `body` as is, with `content_type` when given.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.unwrap()
    }

    /// Registers a brand and returns the command's answer (aggregate_id, position, …).
    pub async fn register_brand(&self, token: &str, name: &str) -> Value {
        let competitors: Vec<&str> = ["Globex", "Initech"]
            .into_iter()
            .filter(|c| *c != name)
            .collect();
        let response = self
            .post_json(
                "/v1/brands",
                token,
                &json!({"name": name, "keywords": [name.to_lowercase()], "competitors": competitors}),
            )
            .await;
        assert_eq!(response.status(), 201, "registering {name}");
        response.json().await.unwrap()
    }

    /// Ingests `mentions` into `brand` and returns the bulk answer.
    pub async fn ingest(&self, token: &str, brand: &str, mentions: Vec<Value>) -> Value {
        let response = self
            .post_json(
                &format!("/v1/brands/{brand}/mentions"),
                token,
                &json!({ "mentions": mentions }),
            )
            .await;
        assert_eq!(response.status(), 200, "ingesting into {brand}");
        response.json().await.unwrap()
    }

    /// Every event of `token`'s tenant, through the paged audit log.
    pub async fn tenant_events(&self, token: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from = 1;
        loop {
            let response = self
                .get(
                    &format!("/v1/audit/events?from_position={from}&limit=1000"),
                    token,
                )
                .await;
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.unwrap();
            events.extend(page["events"].as_array().unwrap().iter().cloned());
            if !page["has_more"].as_bool().unwrap() {
                return events;
            }
            from = page["next_from_position"].as_i64().unwrap();
        }
    }

    pub async fn event_count(&self, token: &str) -> usize {
        self.tenant_events(token).await.len()
    }
}

/// A valid mention for bulk ingest.
pub fn mention(i: usize) -> Value {
    json!({
        "source": "twitter",
        "external_id": format!("tw-{i}"),
        "author": "@ana",
        "text": format!("I love my Acme rocket skates, number {i}!"),
        "url": format!("https://twitter.example/{i}"),
        "published_at": Utc::now().to_rfc3339(),
        "language": "en"
    })
}

/// Asserts `response` answered `status` (a command's 200 or 201, a query's 200); returns the
/// JSON body.
pub async fn accepted(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "status; body: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The `position` of a command's answer, to read it back with `min_position`.
pub fn position(answer: &Value) -> i64 {
    answer["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("no position in {answer}"))
}

/// Asserts `response` is problem+json with `status` and `code`; returns the body.
pub async fn problem(response: Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "status; body: {text}");
    assert_eq!(content_type, "application/problem+json", "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], code, "body: {text}");
    assert_eq!(body["status"], status, "body: {text}");
    for key in ["type", "title", "detail"] {
        assert!(body[key].is_string(), "`{key}` missing: {text}");
    }
    body
}

/// [`problem`], and the field it names.
pub async fn problem_with_field(response: Response, status: u16, code: &str, field: &str) -> Value {
    let body = problem(response, status, code).await;
    assert_eq!(body["field"], field, "field; body: {body}");
    body
}
