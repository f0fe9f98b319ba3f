//! The database read models live in: a SQLite file of its own (embedded), or the PostgreSQL
//! database the events are in (server). SQL is written once; [`on_tx!`] and [`on_pool!`] run it
//! on whichever backend this is.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

use crate::checkpoint::{CHECKPOINTS_DDL, OFFSETS_DDL};
use crate::ProjectionError;

/// Where the read models live.
#[derive(Debug, Clone)]
pub enum ReadStoreConfig {
    Sqlite {
        path: PathBuf,
    },
    /// Shares the event store's pool: same database, `rm_` tables.
    Postgres {
        pool: PgPool,
    },
}

impl ReadStoreConfig {
    /// The read store that goes with `store`: the same PostgreSQL database (`rm_` tables next to
    /// the events), or, beside an embedded store, a SQLite file of its own at `sqlite_path`.
    pub fn beside(store: &plasma_commands::EventStore, sqlite_path: PathBuf) -> Self {
        match store.postgres_pool() {
            Some(pool) => Self::Postgres { pool: pool.clone() },
            None => Self::Sqlite { path: sqlite_path },
        }
    }
}

/// The read-model database. A cheap handle.
#[derive(Debug, Clone)]
pub enum ReadStore {
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

/// A write transaction on the read store.
#[derive(Debug)]
pub enum ReadTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$c` bound to the transaction's connection, on either backend.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::ReadTx::Sqlite(tx) => {
                let $c = &mut **tx;
                $body
            }
            $crate::ReadTx::Postgres(tx) => {
                let $c = &mut **tx;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p` bound to a pool for reading, on either backend.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match $store {
            $crate::ReadStore::Sqlite { reader: $p, .. } => $body,
            $crate::ReadStore::Postgres { pool: $p } => $body,
        }
    };
}

pub(crate) use crate::{on_pool, on_tx};

/// Makes sqlite-vec (the `vec0` virtual tables of the embedded vector index) available on every
/// SQLite connection this process opens from now on. Idempotent.
#[allow(unsafe_code)]
pub fn register_sqlite_vec() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `sqlite3_vec_init` is the extension's entry point with the signature SQLite
        // expects of an auto extension (`sqlite3 *, char **, const sqlite3_api_routines *`);
        // sqlite-vec is compiled against the SQLite headers libsqlite3-sys links, and SQLite
        // calls it once per new connection.
        unsafe {
            let init: unsafe extern "C" fn() = sqlite_vec::sqlite3_vec_init;
            libsqlite3_sys::sqlite3_auto_extension(Some(std::mem::transmute::<
                unsafe extern "C" fn(),
                unsafe extern "C" fn(
                    *mut libsqlite3_sys::sqlite3,
                    *mut *mut std::os::raw::c_char,
                    *const libsqlite3_sys::sqlite3_api_routines,
                ) -> std::os::raw::c_int,
            >(init)));
        }
    });
}

impl ReadStore {
    pub async fn open(config: &ReadStoreConfig) -> Result<Self, ProjectionError> {
        let store = match config {
            ReadStoreConfig::Sqlite { path } => {
                register_sqlite_vec();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|err| {
                        ProjectionError::Config(format!("cannot create {}: {err}", dir.display()))
                    })?;
                }
                let options =
                    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                        .map_err(|err| {
                            ProjectionError::Config(format!("bad path {}: {err}", path.display()))
                        })?
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(10));
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
                    .await
                    .map_err(ProjectionError::db("opening the read store"))?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options)
                    .await
                    .map_err(ProjectionError::db("opening the read store for reading"))?;
                Self::Sqlite { writer, reader }
            }
            ReadStoreConfig::Postgres { pool } => Self::Postgres { pool: pool.clone() },
        };
        let mut tx = store.begin().await?;
        if tx.is_postgres() {
            // Workers starting together would race on CREATE TABLE IF NOT EXISTS.
            tx.execute(
                "SELECT pg_advisory_xact_lock(7234501)",
                "serialising read-model DDL",
            )
            .await?;
        }
        on_tx!(&mut tx, |c| sqlx::query(CHECKPOINTS_DDL)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db(
                "creating the checkpoint table"
            ))?);
        tx.execute(OFFSETS_DDL, "creating the offsets table")
            .await?;
        tx.commit().await?;
        Ok(store)
    }

    /// Whether this is the PostgreSQL read store.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// Begins a write transaction (SQLite: IMMEDIATE, so it holds the write lock from the start).
    pub async fn begin(&self) -> Result<ReadTx, ProjectionError> {
        Ok(match self {
            Self::Sqlite { writer, .. } => ReadTx::Sqlite(
                writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(ProjectionError::db("starting a read-model transaction"))?,
            ),
            Self::Postgres { pool } => ReadTx::Postgres(
                pool.begin()
                    .await
                    .map_err(ProjectionError::db("starting a read-model transaction"))?,
            ),
        })
    }

    /// Refreshes the planner's statistics of `tables` (PostgreSQL; SQLite's planner does well
    /// without them here). A catch-up can load 100,000 rows in seconds, long before autovacuum
    /// looks: without statistics a keyset page read the whole brand (73 ms instead of 0.3 ms).
    pub async fn analyze(&self, tables: &[String]) -> Result<(), ProjectionError> {
        if let Self::Postgres { pool } = self {
            for table in tables {
                sqlx::query(&format!("ANALYZE {table}"))
                    .execute(pool)
                    .await
                    .map_err(ProjectionError::db("analyzing a read-model table"))?;
            }
        }
        Ok(())
    }

    /// Positions every projection has applied up to, by name.
    pub async fn positions(&self) -> Result<Vec<(String, i64)>, ProjectionError> {
        on_pool!(self, |p| sqlx::query_as(
            "SELECT name, position FROM projection_checkpoints ORDER BY name"
        )
        .fetch_all(p)
        .await
        .map_err(ProjectionError::db("reading projection positions")))
    }
}

impl ReadTx {
    pub async fn commit(self) -> Result<(), ProjectionError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
        .map_err(ProjectionError::db("committing a read-model transaction"))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Whether a table of that name exists (in the current schema, on PostgreSQL).
    pub(crate) async fn table_exists(&mut self, name: &str) -> Result<bool, ProjectionError> {
        let sql = match self {
            Self::Sqlite(_) => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            Self::Postgres(_) => {
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1"
            }
        };
        let count: i64 = on_tx!(self, |c| sqlx::query_scalar(sql)
            .bind(name)
            .fetch_one(c)
            .await
            .map_err(ProjectionError::db("looking up a table"))?);
        Ok(count > 0)
    }

    /// The declared columns of `name` when it is a SQLite virtual table; `None` otherwise.
    pub(crate) async fn virtual_table_columns(
        &mut self,
        name: &str,
    ) -> Result<Option<Vec<String>>, ProjectionError> {
        let Self::Sqlite(tx) = self else {
            return Ok(None);
        };
        let sql: Option<String> =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await
                .map_err(ProjectionError::db("looking up a table"))?;
        if !sql.is_some_and(|sql| sql.starts_with("CREATE VIRTUAL TABLE")) {
            return Ok(None);
        }
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(name)
                .fetch_all(&mut **tx)
                .await
                .map_err(ProjectionError::db("reading a virtual table's columns"))?;
        Ok(Some(columns))
    }

    /// Runs a statement with one text parameter.
    pub(crate) async fn execute_bound(
        &mut self,
        sql: &str,
        value: &str,
        context: &'static str,
    ) -> Result<(), ProjectionError> {
        on_tx!(self, |c| sqlx::query(sql)
            .bind(value)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db(context))?);
        Ok(())
    }

    /// Runs DDL or a statement without parameters.
    pub async fn execute(
        &mut self,
        sql: &str,
        context: &'static str,
    ) -> Result<(), ProjectionError> {
        on_tx!(self, |c| sqlx::query(sql)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db(context))?);
        Ok(())
    }
}
