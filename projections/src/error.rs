use plasma_commands::StoreError;
use thiserror::Error;

/// What can go wrong on the read side.
#[derive(Debug, Error)]
pub enum ProjectionError {
    #[error("read-model database error while {context}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("reading the event store")]
    Store(#[from] StoreError),
    #[error("stored checkpoint of `{projection}` could not be decoded")]
    BadCheckpoint {
        projection: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("a stored {what} could not be decoded")]
    BadValue {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("no read model is called `{0}`")]
    UnknownProjection(String),
    #[error("`{0}` is not a cursor this API handed out")]
    BadCursor(String),
    /// The Kafka log (server mode), as the log crate reports it.
    #[error("the Kafka log")]
    Log(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A runner cannot go on (a stalled consumer, a failed task); its supervisor starts it
    /// again.
    #[error("projection worker: {0}")]
    Worker(String),
    /// A query's `min_position` lies beyond the last position the event store has written.
    #[error("position {min_position} has not been written (the store's head is {head})")]
    PositionNotWritten { min_position: i64, head: i64 },
    /// A query's `min_position` was not applied by its read models within the wait.
    #[error("the read models have not reached position {min_position} after {}ms", waited.as_millis())]
    NotYetConsistent {
        min_position: i64,
        waited: std::time::Duration,
    },
    #[error("invalid read-store configuration: {0}")]
    Config(String),
}

impl ProjectionError {
    pub fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { context, source }
    }
}
