//! The read models, one projection each.

mod brands;
mod mentions;
mod stats;

use std::sync::Arc;

pub use brands::BrandsProjection;
pub use mentions::MentionsProjection;
pub use stats::BrandStatsProjection;

use crate::{Projection, ProjectionError};

/// Every read model the platform maintains.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(BrandsProjection),
        Arc::new(MentionsProjection),
        Arc::new(BrandStatsProjection),
    ]
}

/// The projection called `name`.
pub fn projection_named(name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
    all_projections()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
}

/// Microseconds since the epoch: read models store instants as integers, exact and sortable on
/// both backends.
pub(crate) fn micros(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_micros()
}
