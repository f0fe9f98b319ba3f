//! Bearer-token authentication and role-based permissions.
//!
//! Every `/v1` request carries `Authorization: Bearer <JWT>`. The [`authenticate`] middleware
//! verifies it once, applies the tenant's rate limit, and leaves a [`Principal`] in the request;
//! handlers then state the permission they need in their signature with [`Authorized`]:
//!
//! ```ignore
//! async fn archive(caller: Authorized<Commands>, …) -> Result<…, ApiError>
//! ```
//!
//! The tenant comes only from the token, never from the path, body or a header.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use plasma_domain::TenantId;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::oidc::OidcVerifier;
use crate::options::JwtKey;
use crate::state::AppState;

/// What a caller may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Commands, and the queries an editor needs to see what they changed.
    Editor,
    /// Queries.
    Viewer,
    /// The audit endpoints (event history, state as of a past point).
    Auditor,
}

impl Role {
    pub const ALL: [Self; 4] = [Self::Admin, Self::Editor, Self::Viewer, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims a Plasma token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the caller is (a user or a service), for the log.
    pub sub: String,
    /// The tenant every request of this token acts on.
    pub tenant: String,
    /// Role names; unknown names are ignored, so issuers may add roles before gateways know them.
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub tenant: TenantId,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    pub fn has(&self, permission: fn(Role) -> bool) -> bool {
        self.roles.iter().any(|r| permission(*r))
    }
}

/// Why a token was refused; all of these answer 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is not a valid Plasma token: {0}")]
    Invalid(String),
    #[error("the token's tenant is not a valid tenant id")]
    BadTenant,
    #[error("the token names key `{0}`, which the issuer does not publish")]
    UnknownKey(String),
    /// Not the caller's fault: answered 503, not 401.
    #[error("the token issuer's signing keys cannot be fetched right now")]
    KeysUnavailable,
}

/// Verifies bearer tokens. An enum rather than a trait object: each way of verifying is one
/// variant, chosen from the settings.
#[derive(Clone)]
pub enum TokenVerifier {
    Hs256 { key: DecodingKey },
    Oidc(Arc<OidcVerifier>),
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256 { .. } => f.write_str("TokenVerifier::Hs256"),
            Self::Oidc(verifier) => verifier.fmt(f),
        }
    }
}

impl TokenVerifier {
    pub fn new(key: &JwtKey) -> Self {
        match key {
            JwtKey::Hs256(secret) => Self::Hs256 {
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            },
            JwtKey::Oidc(settings) => Self::Oidc(Arc::new(OidcVerifier::new(settings.clone()))),
        }
    }

    /// Checks signature, algorithm and expiry, and reads the caller out of the claims.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match self {
            Self::Hs256 { key } => verify_hs256(key, token),
            Self::Oidc(verifier) => verifier.verify(token).await,
        }
    }
}

fn verify_hs256(key: &DecodingKey, token: &str) -> Result<Principal, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 5;
    let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|err| match err
        .kind()
    {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => {
            AuthError::Invalid("the token is not signed with HS256".into())
        }
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("the `{claim}` claim is missing"))
        }
        ErrorKind::Json(_) => AuthError::Invalid(
            "its claims need sub, tenant, roles and exp of the right types".into(),
        ),
        _ => AuthError::Invalid("it is not a well-formed JWT".into()),
    })?;
    let claims = data.claims;
    let tenant = TenantId::parse(&claims.tenant).map_err(|_| AuthError::BadTenant)?;
    Ok(Principal {
        subject: claims.sub,
        tenant,
        roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(),
    })
}

/// Signs tokens with the configured key: `plasma token`, `plasma dev`, and tests.
#[derive(Clone)]
pub enum TokenIssuer {
    Hs256 { key: EncodingKey },
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256 { .. } => f.write_str("TokenIssuer::Hs256"),
        }
    }
}

impl TokenIssuer {
    /// `None` with an OIDC issuer: its tokens come from the issuer, never from Plasma.
    pub fn new(key: &JwtKey) -> Option<Self> {
        match key {
            JwtKey::Hs256(secret) => Some(Self::Hs256 {
                key: EncodingKey::from_secret(secret.expose().as_bytes()),
            }),
            JwtKey::Oidc(_) => None,
        }
    }

    /// A token for `subject` acting on `tenant` with `roles`, valid for `ttl` from `now`.
    pub fn issue(
        &self,
        subject: &str,
        tenant: &TenantId,
        roles: &[Role],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: subject.to_owned(),
            tenant: tenant.as_str().to_owned(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            exp: now.timestamp().saturating_add(ttl),
            iat: Some(now.timestamp()),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it for expired or odd tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        match self {
            Self::Hs256 { key } => {
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
            }
        }
    }
}

/// A permission a handler can require; see [`Authorized`].
pub trait Permission: Send + Sync + 'static {
    /// Named in 403 answers.
    const NAME: &'static str;
    fn granted_to(role: Role) -> bool;
}

/// Running commands: admin, editor.
#[derive(Debug)]
pub enum Commands {}
/// Reading read models: admin, editor, viewer.
#[derive(Debug)]
pub enum Queries {}
/// Reading the event history and past states: admin, auditor.
#[derive(Debug)]
pub enum Audit {}
/// Operating the platform (rebuilding read models): admin.
#[derive(Debug)]
pub enum Operations {}

impl Permission for Commands {
    const NAME: &'static str = "commands (role admin or editor)";
    fn granted_to(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Editor)
    }
}

impl Permission for Queries {
    const NAME: &'static str = "queries (role admin, editor or viewer)";
    fn granted_to(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Editor | Role::Viewer)
    }
}

impl Permission for Operations {
    const NAME: &'static str = "operations (role admin)";
    fn granted_to(role: Role) -> bool {
        matches!(role, Role::Admin)
    }
}

impl Permission for Audit {
    const NAME: &'static str = "audit (role admin or auditor)";
    fn granted_to(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Auditor)
    }
}

/// An authenticated caller holding permission `P`: 401 without a verified token, 403 without
/// the permission.
#[derive(Debug)]
pub struct Authorized<P> {
    principal: Principal,
    _permission: PhantomData<fn() -> P>,
}

impl<P> Authorized<P> {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn tenant(&self) -> &TenantId {
        &self.principal.tenant
    }
}

impl<P: Permission, S: Send + Sync> FromRequestParts<S> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only the authenticate middleware puts a Principal here; a route mounted outside it
        // therefore refuses everyone rather than trusting anyone.
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::Unauthorized(AuthError::Missing))?;
        if !principal.has(P::granted_to) {
            return Err(ApiError::Forbidden { required: P::NAME });
        }
        Ok(Self {
            principal,
            _permission: PhantomData,
        })
    }
}

/// Middleware for `/v1`: verifies the bearer token, records the tenant on the request span,
/// applies the tenant's rate limit, and hands the [`Principal`] to the handler.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(AuthError::Missing))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(AuthError::NotBearer))?;
    let principal = state
        .verifier()
        .verify(token)
        .await
        .map_err(ApiError::Unauthorized)?;
    tracing::Span::current().record("plasma.tenant", principal.tenant.as_str());
    state.rate_limiter().check(&principal.tenant)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn key() -> JwtKey {
        JwtKey::Hs256(Secret::new("0123456789abcdef0123456789abcdef"))
    }

    #[tokio::test]
    async fn an_issued_token_verifies_to_its_tenant_and_roles() {
        let tenant = TenantId::parse("acme").unwrap();
        let token = TokenIssuer::new(&key())
            .unwrap()
            .issue(
                "ana",
                &tenant,
                &[Role::Editor],
                Duration::from_secs(60),
                Utc::now(),
            )
            .unwrap();
        let principal = TokenVerifier::new(&key()).verify(&token).await.unwrap();
        assert_eq!(principal.tenant, tenant);
        assert_eq!(principal.roles, BTreeSet::from([Role::Editor]));
    }

    #[tokio::test]
    async fn a_token_signed_with_another_secret_is_refused() {
        let other = JwtKey::Hs256(Secret::new("another-secret-another-secret-0000"));
        let token = TokenIssuer::new(&other)
            .unwrap()
            .issue(
                "ana",
                &TenantId::parse("acme").unwrap(),
                &[Role::Admin],
                Duration::from_secs(60),
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            TokenVerifier::new(&key()).verify(&token).await,
            Err(AuthError::BadSignature)
        );
    }

    #[tokio::test]
    async fn unknown_roles_are_ignored_and_editors_cannot_audit() {
        let claims = Claims {
            sub: "ana".into(),
            tenant: "acme".into(),
            roles: vec!["editor".into(), "superhero".into()],
            exp: Utc::now().timestamp() + 60,
            iat: None,
        };
        let token = TokenIssuer::new(&key()).unwrap().sign(&claims).unwrap();
        let principal = TokenVerifier::new(&key()).verify(&token).await.unwrap();
        assert!(principal.has(Commands::granted_to));
        assert!(!principal.has(Audit::granted_to));
    }
}
