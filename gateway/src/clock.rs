//! Where command timestamps come from. Handlers read the clock, never `Utc::now()`, so a test
//! or a replay tool can put the gateway at any instant.

use std::fmt;

use chrono::{DateTime, Utc};

/// The current instant, as the gateway stamps it on commands (`at`) and uses for defaults such
/// as "the last 30 days".
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
