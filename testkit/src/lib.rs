//! Test support shared by every crate's tests: a throwaway PostgreSQL cluster, fresh databases,
//! and fresh SQLite directories. Nothing here is used by the product.
//!
//! PostgreSQL comes from the machine's server binaries (`pg_config --bindir`, or `PLASMA_PG_BINDIR`).
//! When `PLASMA_TEST_PG_URL` names a running throwaway cluster (the test script starts one), each
//! test gets a new database in it; otherwise each test starts and stops its own cluster. Either
//! way tests never share a database. If PostgreSQL cannot start, the test fails and says why:
//! nothing is skipped silently.

mod backends;
pub mod log;
mod pg;

#[doc(hidden)]
pub use backends::backend_itself;
pub use backends::Backend;
pub use log::{Broker, Registry};
pub use pg::{PgCluster, TestPg};

/// A fresh directory for an embedded store, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    match tempfile::Builder::new().prefix("plasma-test-").tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("cannot create a temp dir for the test: {err}"),
    }
}

/// Turns on log output for a test when `TEST_LOG` is set.
pub fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("TEST_LOG set: logs go to stderr");
    }
}
