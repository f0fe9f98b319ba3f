//! What a projection is: a name, the tables it owns, and how a batch of events changes them.

use async_trait::async_trait;
use plasma_commands::RecordedEvent;
use plasma_domain::Context;

use crate::{ProjectionError, ReadTx};

/// Table names for one copy of a read model: the live tables (no suffix) or the shadow tables a
/// rebuild fills (suffix `__rebuild`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    suffix: &'static str,
}

impl Tables {
    pub const LIVE: Self = Self { suffix: "" };
    pub const SHADOW: Self = Self {
        suffix: "__rebuild",
    };

    /// The actual name of table `base` in this copy.
    pub fn name(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }

    pub(crate) fn checkpoint_name(&self, projection: &str) -> String {
        format!("{projection}{}", self.suffix)
    }
}

/// A read model's projection.
///
/// `ddl` statements are templates: `{t}` is replaced by the table suffix, `{g}` by a generation
/// tag that keeps index names unique across rebuilds, `{uuid}` by the backend's UUID type.
/// Tables must be prefixed `rm_` and named by base in `tables`.
#[async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// The bounded contexts whose events it reads (in server mode: the topics it consumes).
    fn contexts(&self) -> &'static [Context];
    fn tables(&self) -> &'static [&'static str];
    fn ddl(&self) -> &'static [&'static str];

    /// The DDL for one backend, when it differs between them (a vector index); `ddl` otherwise.
    fn ddl_for(&self, postgres: bool) -> &'static [&'static str] {
        let _ = postgres;
        self.ddl()
    }

    /// Applies `events` (in position order; some may be of no interest) inside `tx`.
    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError>;
}

/// Creates a projection's tables (if missing) in the copy `tables`.
pub(crate) async fn create_tables(
    tx: &mut ReadTx,
    projection: &dyn Projection,
    tables: &Tables,
    generation: &str,
) -> Result<(), ProjectionError> {
    if tx.is_postgres() {
        // Two processes starting on a fresh database would otherwise race on CREATE TABLE IF
        // NOT EXISTS (a unique violation in pg_type); the lock lasts until this transaction ends.
        tx.execute(
            "SELECT pg_advisory_xact_lock(7234501)",
            "serialising read-model DDL",
        )
        .await?;
    }
    // A copy whose tables all exist is left alone: its indexes may carry another generation's
    // names (a swapped-in rebuild), and re-running the DDL would add a second set.
    let mut all_exist = true;
    for table in projection.tables() {
        if !tx.table_exists(&tables.name(table)).await? {
            all_exist = false;
            break;
        }
    }
    if all_exist {
        return Ok(());
    }
    let uuid = if tx.is_postgres() { "uuid" } else { "BLOB" };
    for ddl in projection.ddl_for(tx.is_postgres()) {
        let sql = ddl
            .replace("{t}", tables.suffix)
            .replace("{g}", generation)
            .replace("{uuid}", uuid);
        tx.execute(&sql, "creating read-model tables").await?;
    }
    Ok(())
}
