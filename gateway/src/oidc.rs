//! Tokens issued by an OpenID Connect provider (Keycloak, Auth0, Entra…), verified against the
//! issuer's published keys (JWKS).
//!
//! Keys are fetched on first use, cached by `kid`, and fetched again when a token names a key
//! the cache lacks (the issuer rotated) or the cache is old; refreshes are rate-limited, so a
//! stream of tokens with made-up `kid`s cannot turn the gateway into a load generator against
//! the issuer. Only asymmetric algorithms are accepted, and only the algorithm the key itself
//! is for: a token "signed" with HS256 using the public key as the secret is refused.

use std::collections::HashMap;
use std::time::Instant;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use plasma_domain::TenantId;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::auth::{AuthError, Principal, Role};
use crate::options::OidcSettings;

/// Asymmetric algorithms only: HMAC would let anyone holding the (public) JWKS sign tokens.
const ACCEPTED: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Verifies tokens against an issuer's JWKS; see the module docs.
pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: RwLock<KeyCache>,
    /// Serialises refreshes and remembers when the last one started (the rate limit).
    refreshing: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .field("audience", &self.settings.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            keys: RwLock::new(KeyCache::default()),
            refreshing: Mutex::new(None),
        }
    }

    /// Checks the signature with the issuer's key named by `kid`, then issuer, audience, expiry
    /// and not-before, and reads tenant and roles from the configured claims.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("it is not a well-formed JWT".into()))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "tokens signed with {:?} are not accepted (RS*, PS* or ES* keys of the issuer)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key (`kid`)".into()))?;
        let (key, algorithm) = self.key(&kid).await?;
        if algorithm != header.alg {
            return Err(AuthError::Invalid(format!(
                "key `{kid}` is for {algorithm:?}, the token says {:?}",
                header.alg
            )));
        }

        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => {
                    AuthError::Invalid("the token is not valid yet".into())
                }
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidIssuer => {
                    AuthError::Invalid("the token's issuer is not trusted".into())
                }
                ErrorKind::InvalidAudience => {
                    AuthError::Invalid("the token is not meant for this API (audience)".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("the `{claim}` claim is missing"))
                }
                _ => AuthError::Invalid("it is not a well-formed JWT".into()),
            })?
            .claims;
        self.principal(&claims)
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Invalid("the `sub` claim must be a string".into()))?;
        let tenant = claim(claims, &self.settings.tenant_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "the tenant claim `{}` is missing or not a string",
                    self.settings.tenant_claim
                ))
            })?;
        let tenant = TenantId::parse(tenant).map_err(|_| AuthError::BadTenant)?;
        // Issuers list many roles of their own (Keycloak's `offline_access`…): keep ours.
        let roles = claim(claims, &self.settings.roles_claim)
            .and_then(Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Role::parse)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Principal {
            subject: subject.to_owned(),
            tenant,
            roles,
        })
    }

    /// The key named `kid`, refreshing the cache when it lacks it or is old.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        {
            let cache = self.keys.read().await;
            let fresh = cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.settings.max_key_age);
            if let (Some(found), true) = (cache.keys.get(kid), fresh) {
                return Ok(found.clone());
            }
        }
        let refreshed = self.refresh().await;
        let cache = self.keys.read().await;
        match (cache.keys.get(kid), refreshed) {
            (Some(found), _) => Ok(found.clone()),
            (None, Err(err)) if cache.keys.is_empty() => Err(err),
            (None, _) => Err(AuthError::UnknownKey(kid.to_owned())),
        }
    }

    /// Fetches the JWKS again unless a refresh started within the minimum interval. A failed
    /// refresh keeps the keys already cached.
    async fn refresh(&self) -> Result<(), AuthError> {
        let mut last = self.refreshing.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.settings.refresh_min_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(issuer = %self.settings.issuer, keys = keys.len(), "fetched the issuer's signing keys");
                let mut cache = self.keys.write().await;
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.settings.issuer, %reason, "could not fetch the issuer's signing keys");
                Err(AuthError::KeysUnavailable)
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, String> {
        let jwks_url = match &self.settings.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                self.get_json::<Discovery>(&url).await?.jwks_uri
            }
        };
        let set: JwkSet = self.get_json(&jwks_url).await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Keys for encryption, without an id, or of a kind we don't verify with are skipped.
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let Some(algorithm) = key_algorithm(jwk) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), (key, algorithm));
            }
        }
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        response
            .json()
            .await
            .map_err(|e| format!("GET {url}: unexpected body: {e}"))
    }
}

/// The algorithm a JWK verifies: its `alg` when given, else what its key type implies.
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (Some(KeyAlgorithm::RS384), AlgorithmParameters::RSA(_)) => Algorithm::RS384,
        (Some(KeyAlgorithm::RS512), AlgorithmParameters::RSA(_)) => Algorithm::RS512,
        (Some(KeyAlgorithm::PS256), AlgorithmParameters::RSA(_)) => Algorithm::PS256,
        (Some(KeyAlgorithm::PS384), AlgorithmParameters::RSA(_)) => Algorithm::PS384,
        (Some(KeyAlgorithm::PS512), AlgorithmParameters::RSA(_)) => Algorithm::PS512,
        (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(_)) => Algorithm::ES256,
        (Some(KeyAlgorithm::ES384), AlgorithmParameters::EllipticCurve(_)) => Algorithm::ES384,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        _ => return None,
    };
    Some(algorithm)
}

/// A claim by dotted path: `realm_access.roles` is Keycloak's place for realm roles.
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |value, segment| value.get(segment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_found_by_dotted_path() {
        let claims =
            json!({"realm_access": {"roles": ["editor", "offline_access"]}, "tenant": "acme"});
        assert_eq!(
            claim(&claims, "realm_access.roles"),
            Some(&json!(["editor", "offline_access"]))
        );
        assert_eq!(claim(&claims, "tenant"), Some(&json!("acme")));
        assert_eq!(claim(&claims, "realm_access.missing"), None);
    }
}
