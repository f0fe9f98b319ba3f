//! The options of the HTTP layer's components, each valid by construction; the binary's
//! `Settings` assembles them from its layers.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Port 0 asks the OS for a free port; the bound address is reported by whoever binds.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Longest a request may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
    /// After SIGTERM: how long `/ready` answers 503 while requests are still served, so load
    /// balancers stop sending before the listener closes (Kubernetes removes endpoints
    /// asynchronously).
    pub drain_delay: Duration,
    /// Then: how long in-flight requests may take to finish before the process stops anyway.
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwt: JwtKey,
}

/// How bearer tokens are verified, by the same [`crate::auth::TokenVerifier`].
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// A shared HMAC secret (HS256): `plasma dev`, `plasma token`, tests.
    Hs256(Secret),
    /// RS*/PS*/ES* tokens of an OpenID Connect issuer, checked against its JWKS.
    Oidc(OidcSettings),
}

/// Where an OpenID Connect issuer publishes its keys, and where its tokens put our claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The exact `iss` of accepted tokens; discovery reads `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The `aud` accepted tokens must name (Keycloak: the client id, via an audience mapper).
    pub audience: String,
    /// The JWKS URL, when discovery should be skipped.
    pub jwks_url: Option<String>,
    /// Dotted path of the tenant claim (`tenant`).
    pub tenant_claim: String,
    /// Dotted path of the roles array (`roles`; Keycloak: `realm_access.roles`).
    pub roles_claim: String,
    /// Fewest seconds between two JWKS fetches, however many unknown `kid`s arrive.
    pub refresh_min_interval: Duration,
    /// Cached keys older than this are fetched again on the next token.
    pub max_key_age: Duration,
    /// Longest a discovery or JWKS request may take.
    pub fetch_timeout: Duration,
}

/// Per-tenant token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Sustained requests per second per tenant; 0 turns rate limiting off.
    pub per_second: u32,
    /// Requests a tenant may make at once after being idle.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistencySettings {
    /// How long a query with `min_position` waits for the read models before answering 503.
    pub min_position_wait: Duration,
    /// `/ready` fails when a projection is more than this many events behind the store head.
    pub ready_max_lag: u64,
}
