use thiserror::Error;

/// What can go wrong in the event store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer appended to one of the streams first; reload and decide again.
    #[error("a concurrent command changed the aggregate first")]
    Conflict,
    /// The command id was recorded by a concurrent retry of the same command.
    #[error("the command was already recorded")]
    DuplicateCommand,
    #[error("database error while {context}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the {backend} event store")]
    Migrate {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("stored {what} could not be decoded")]
    Corrupt {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid store configuration: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { context, source }
    }

    pub(crate) fn corrupt(
        what: &'static str,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Self {
        move |source| Self::Corrupt { what, source }
    }
}

/// Why a command did not go through.
#[derive(Debug, Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command: nothing was written.
    #[error(transparent)]
    Domain(E),
    /// Concurrent writers kept winning; the bounded retries ran out.
    #[error("the aggregate kept changing concurrently; retried {attempts} times")]
    Conflict { attempts: u32 },
    /// The command id was recorded for a different request (another command, aggregate or
    /// payload): an idempotency key may only be retried with the same request.
    #[error("this command id was already used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}
