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
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwt: JwtKey,
}

/// How bearer tokens are verified. One variant today; RS256 public keys or a JWKS endpoint
/// would be further variants, verified by the same [`crate::auth::TokenVerifier`].
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// A shared HMAC secret (HS256).
    Hs256(Secret),
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
