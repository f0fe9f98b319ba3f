//! The log's metric names, with units, and their descriptions: the relay's and the log-fed
//! projection workers'. Registered once per process by [`describe`].

/// Events committed but not yet acknowledged by the broker (head − published position).
pub const METRIC_OUTBOX_DEPTH: &str = "plasma_relay_outbox_depth";
/// Events the broker acknowledged.
pub const METRIC_PUBLISHED: &str = "plasma_relay_published_events_total";
/// From producing a batch to the broker acknowledging all of it.
pub const METRIC_PUBLISH_SECONDS: &str = "plasma_relay_publish_seconds";
/// From an event's commit to its acknowledgement.
pub const METRIC_COMMIT_TO_ACK_SECONDS: &str = "plasma_relay_commit_to_ack_seconds";
/// 1 while this relay replica is the leader.
pub const METRIC_LEADER: &str = "plasma_relay_leader";
/// Events a log-fed worker applied, by `projection`.
pub const METRIC_APPLIED: &str = "plasma_worker_applied_events_total";
/// Relay redeliveries a log-fed worker dropped, by `projection`.
pub const METRIC_DUPLICATES: &str = "plasma_worker_duplicates_dropped_total";

/// Registers every description above with the installed recorder.
pub fn describe() {
    metrics::describe_gauge!(
        METRIC_OUTBOX_DEPTH,
        "Committed events not yet acknowledged by the broker"
    );
    metrics::describe_counter!(METRIC_PUBLISHED, "Events acknowledged by the broker");
    metrics::describe_histogram!(
        METRIC_PUBLISH_SECONDS,
        metrics::Unit::Seconds,
        "From producing a batch to the broker acknowledging all of it"
    );
    metrics::describe_histogram!(
        METRIC_COMMIT_TO_ACK_SECONDS,
        metrics::Unit::Seconds,
        "From an event's commit to its acknowledgement by the broker"
    );
    metrics::describe_gauge!(METRIC_LEADER, "1 while this replica is the leader");
    metrics::describe_counter!(
        METRIC_APPLIED,
        "Events a log-fed projection worker applied to its read model"
    );
    metrics::describe_counter!(
        METRIC_DUPLICATES,
        "Relay redeliveries a log-fed projection worker dropped by position"
    );
}
