//! The read side's metric names, with units, and their descriptions.

use crate::ReadStore;

/// Position a projection has applied up to, by `projection`.
pub const PROJECTION_POSITION: &str = "plasma_projection_position";
/// Events a projection is behind the event store head, by `projection`.
pub const PROJECTION_LAG_EVENTS: &str = "plasma_projection_lag_events";
/// Events a projection runner applied in this process, by `projection`.
pub const PROJECTION_APPLIED_EVENTS_TOTAL: &str = "plasma_projection_applied_events_total";

/// Registers every description above with the installed recorder.
pub fn describe() {
    metrics::describe_gauge!(PROJECTION_POSITION, "Position a projection has applied");
    metrics::describe_gauge!(
        PROJECTION_LAG_EVENTS,
        "Events a projection is behind the event store head"
    );
    metrics::describe_counter!(
        PROJECTION_APPLIED_EVENTS_TOTAL,
        "Events a projection runner in this process applied"
    );
}

/// Sets one projection's position and lag behind `head`.
pub fn record_position(name: &str, position: i64, head: i64) {
    metrics::gauge!(PROJECTION_POSITION, "projection" => name.to_owned()).set(position as f64);
    metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => name.to_owned())
        .set((head - position).max(0) as f64);
}

/// Sets the position and lag of each projection in `names` as the read store has them; returns
/// the largest lag.
pub async fn record_positions(
    read: &ReadStore,
    names: &[&str],
    head: i64,
) -> Result<i64, crate::ProjectionError> {
    let mut worst = 0;
    for (name, position) in read.positions().await? {
        if names.contains(&name.as_str()) {
            record_position(&name, position, head);
            worst = worst.max(head - position);
        }
    }
    Ok(worst)
}
