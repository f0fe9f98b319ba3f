//! Tokens of an OpenID Connect issuer, verified against its JWKS: a local issuer (discovery
//! document and JWKS over HTTP on loopback) whose keys the tests rotate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use plasma_gateway::Secret;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, Backend, TestApp};

const AUDIENCE: &str = "plasma-api";

fn fixtures() -> Value {
    serde_json::from_str(include_str!("fixtures/oidc-keys.json")).unwrap()
}

/// A local OIDC issuer: serves discovery and the JWKS it currently publishes, and counts JWKS
/// fetches.
#[derive(Clone)]
struct Issuer {
    url: String,
    published: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(kids: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/realms/plasma", listener.local_addr().unwrap());
        let issuer = Self {
            url,
            published: Arc::new(Mutex::new(Vec::new())),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        issuer.publish(kids);
        let router = Router::new()
            .route(
                "/realms/plasma/.well-known/openid-configuration",
                get(|State(issuer): State<Issuer>| async move {
                    Json(json!({
                        "issuer": issuer.url,
                        "jwks_uri": format!("{}/protocol/openid-connect/certs", issuer.url),
                    }))
                }),
            )
            .route(
                "/realms/plasma/protocol/openid-connect/certs",
                get(|State(issuer): State<Issuer>| async move {
                    issuer.fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = issuer.published.lock().unwrap().clone();
                    Json(json!({ "keys": keys }))
                }),
            )
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        issuer
    }

    /// Publishes exactly these keys (a rotation drops the others).
    fn publish(&self, kids: &[&str]) {
        let fixtures = fixtures();
        *self.published.lock().unwrap() = kids
            .iter()
            .map(|kid| fixtures[*kid]["jwk"].clone())
            .collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Keycloak-shaped claims: realm roles under `realm_access.roles`, plus its own roles.
    fn claims(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.url,
            "aud": [AUDIENCE, "account"],
            "sub": "f3a1c2d4-ana",
            "exp": now + 300,
            "iat": now,
            "nbf": now - 10,
            "tenant": "acme",
            "realm_access": {"roles": ["editor", "offline_access", "uma_authorization"]},
        })
    }
}

/// The fixture key `kid`'s private key, and the algorithm it signs with.
fn private_key(kid: &str) -> (Algorithm, EncodingKey) {
    let fixture = &fixtures()[kid];
    let der = hex::decode(fixture["private_der_hex"].as_str().unwrap()).unwrap();
    match fixture["jwk"]["kty"].as_str().unwrap() {
        "RSA" => (Algorithm::RS256, EncodingKey::from_rsa_der(&der)),
        _ => (Algorithm::ES256, EncodingKey::from_ec_der(&der)),
    }
}

/// A token signed with the fixture key `kid`, naming it.
fn sign(kid: &str, claims: &Value) -> String {
    let (algorithm, key) = private_key(kid);
    sign_with(algorithm, Some(kid), &key, claims)
}

fn sign_with(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

async fn gateway(issuer: &Issuer, refresh_min_interval: Duration) -> TestApp {
    let url = issuer.url.clone();
    spawn_app_with(Backend::Sqlite, move |layer| {
        layer.auth.oidc_issuer = Some(url);
        layer.auth.oidc_audience = Some(AUDIENCE.into());
        layer.auth.oidc_roles_claim = Some("realm_access.roles".into());
        layer.auth.oidc_refresh_min_interval = Some(refresh_min_interval);
        // No HS256 secret to derive webhook secrets from: the deployment names its own key.
        layer.alerts.webhook_key = Some(Secret::new("webhook-key-webhook-key-webhook-key-00"));
    })
    .await
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.get("/v1/brands", token).await.status().as_u16()
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_the_issuer_are_accepted_and_rotation_is_followed() {
    let issuer = Issuer::start(&["rsa-1", "ec-1"]).await;
    let app = gateway(&issuer, Duration::ZERO).await;

    assert_eq!(status(&app, &sign("rsa-1", &issuer.claims())).await, 200);
    assert_eq!(status(&app, &sign("ec-1", &issuer.claims())).await, 200);
    // Roles come from the configured claim: an editor may run commands.
    let created = app
        .post_json(
            "/v1/brands",
            &sign("rsa-1", &issuer.claims()),
            &json!({"name": "Acme"}),
        )
        .await;
    assert_eq!(created.status().as_u16(), 201, "{:?}", created.text().await);
    assert_eq!(issuer.fetches(), 1, "keys are cached");

    // The issuer rotates: rsa-2 appears, rsa-1 is withdrawn. The unknown kid triggers a fetch.
    issuer.publish(&["rsa-2", "ec-1"]);
    assert_eq!(status(&app, &sign("rsa-2", &issuer.claims())).await, 200);
    assert_eq!(issuer.fetches(), 2);
    let body = problem(
        app.get("/v1/brands", &sign("rsa-1", &issuer.claims()))
            .await,
        401,
        "unauthorized",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("rsa-1"), "{body}");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let issuer = Issuer::start(&["rsa-1", "ec-1"]).await;
    let app = gateway(&issuer, Duration::from_secs(60)).await;
    let now = chrono::Utc::now().timestamp();
    let with = |patch: Value| {
        let mut claims = issuer.claims();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let public_pem = fixtures()["rsa-1"]["public_pem"]
        .as_str()
        .unwrap()
        .to_owned();

    let cases = [
        ("expired", sign("rsa-1", &with(json!({"exp": now - 60})))),
        (
            "not yet valid",
            sign("rsa-1", &with(json!({"nbf": now + 600}))),
        ),
        (
            "wrong audience",
            sign("rsa-1", &with(json!({"aud": "another-api"}))),
        ),
        (
            "wrong issuer",
            sign(
                "rsa-1",
                &with(json!({"iss": "https://evil.example/realms/plasma"})),
            ),
        ),
        (
            "unknown kid",
            sign_with(
                Algorithm::RS256,
                Some("rsa-9"),
                &private_key("rsa-2").1,
                &issuer.claims(),
            ),
        ),
        (
            "no kid",
            sign_with(
                Algorithm::RS256,
                None,
                &private_key("rsa-1").1,
                &issuer.claims(),
            ),
        ),
        (
            "algorithm confusion (HS256 keyed with the public key)",
            sign_with(
                Algorithm::HS256,
                Some("rsa-1"),
                &EncodingKey::from_secret(public_pem.as_bytes()),
                &issuer.claims(),
            ),
        ),
        (
            "an ES256 header on the RSA key",
            sign_with(
                Algorithm::ES256,
                Some("rsa-1"),
                &private_key("ec-1").1,
                &issuer.claims(),
            ),
        ),
        // rsa-2 (not published) signs, but the header names rsa-1.
        (
            "signed by another key",
            sign_with(
                Algorithm::RS256,
                Some("rsa-1"),
                &private_key("rsa-2").1,
                &issuer.claims(),
            ),
        ),
        ("no tenant", sign("rsa-1", &with(json!({"tenant": null})))),
        ("an HS256 token of the old shared secret", app.admin()),
    ];
    for (case, token) in cases {
        // Each refusal says why, so an operator can tell a clock skew from a misconfiguration.
        let reason = match case {
            "expired" => "expired",
            "not yet valid" => "not valid yet",
            "wrong audience" => "audience",
            "wrong issuer" => "issuer",
            "unknown kid" => "rsa-9",
            "no kid" => "kid",
            "an ES256 header on the RSA key" => "is for RS256",
            "signed by another key" => "signature",
            "no tenant" => "tenant",
            _ => "HS256",
        };
        let body = problem(app.get("/v1/brands", &token).await, 401, "unauthorized").await;
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{case}: {body}"
        );
    }
    // The valid token still works: nothing above poisoned the cache.
    assert_eq!(status(&app, &sign("rsa-1", &issuer.claims())).await, 200);
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_gateway_hammer_the_issuer() {
    let issuer = Issuer::start(&["rsa-1"]).await;
    let app = gateway(&issuer, Duration::from_secs(60)).await;
    assert_eq!(status(&app, &sign("rsa-1", &issuer.claims())).await, 200);
    issuer.publish(&["rsa-1", "rsa-2"]);
    for _ in 0..20 {
        // rsa-2 is published now, but the first fetch was moments ago: within the interval.
        assert_eq!(status(&app, &sign("rsa-2", &issuer.claims())).await, 401);
    }
    assert_eq!(issuer.fetches(), 1, "refreshes are rate-limited");
}

#[tokio::test]
async fn an_unreachable_issuer_answers_503_not_401() {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/realms/plasma", listener.local_addr().unwrap());
    drop(listener);
    let issuer = Issuer {
        url,
        published: Arc::default(),
        fetches: Arc::default(),
    };
    let app = gateway(&issuer, Duration::ZERO).await;
    let response = app
        .get("/v1/brands", &sign("rsa-1", &issuer.claims()))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503, "auth_unavailable").await;
}
