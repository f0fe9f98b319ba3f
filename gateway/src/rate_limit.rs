//! Per-tenant rate limiting: one in-memory token bucket per tenant, in this process.
//!
//! Simple on purpose: with several gateway replicas each enforces its own budget, so the
//! effective limit is the configured one times the replica count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plasma_domain::TenantId;

use crate::error::ApiError;
use crate::options::RateLimitSettings;

/// Buckets idle long enough to be full again are dropped once the map grows past this.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimitSettings,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            settings,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `tenant`'s bucket, or says how long until one is available.
    pub fn check(&self, tenant: &TenantId) -> Result<(), ApiError> {
        self.check_at(tenant, Instant::now())
            .map_err(|retry_after| ApiError::RateLimited { retry_after })
    }

    fn check_at(&self, tenant: &TenantId, now: Instant) -> Result<(), Duration> {
        if self.settings.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.settings.per_second);
        let burst = f64::from(self.settings.burst);
        // A poisoned lock only means another request panicked mid-update; the counts are
        // still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let full_after = Duration::from_secs_f64(burst / rate);
            buckets.retain(|_, b| now.duration_since(b.updated) < full_after);
        }
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_burst_then_waits_for_refills_without_affecting_others() {
        let limiter = RateLimiter::new(RateLimitSettings {
            per_second: 2,
            burst: 3,
        });
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&a, start).is_ok());
        }
        let wait = limiter.check_at(&a, start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert!(limiter.check_at(&b, start).is_ok());
        assert!(limiter
            .check_at(&a, start + Duration::from_millis(500))
            .is_ok());
    }

    #[test]
    fn a_rate_of_zero_turns_limiting_off() {
        let limiter = RateLimiter::new(RateLimitSettings {
            per_second: 0,
            burst: 0,
        });
        let a = TenantId::parse("a").unwrap();
        for _ in 0..1000 {
            assert!(limiter.check_at(&a, Instant::now()).is_ok());
        }
    }
}
