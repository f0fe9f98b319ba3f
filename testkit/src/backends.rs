//! One test body, run once on each storage backend: [`Backend`] and [`on_both_backends!`].

/// The storage backends every store-facing test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite store in a fresh directory.
    Sqlite,
    /// A fresh database in a throwaway PostgreSQL cluster.
    Postgres,
}

/// The setup [`on_both_backends!`] uses when given none: the test gets the [`Backend`] itself.
#[doc(hidden)]
pub async fn backend_itself(backend: Backend) -> Backend {
    backend
}

/// Instantiates each named test body once per backend, as `sqlite::name` and `postgres::name`.
///
/// `on_both_backends!(setup; test_a, test_b)` calls `setup(Backend::Sqlite).await` (and then
/// `Backend::Postgres`) and hands what it returns to `test_a(..).await`; `setup` is an
/// `async fn(Backend) -> X` and each test an `async fn(X)`, both in the invoking module.
/// Without `setup;` each test is an `async fn(Backend)`. The invoking crate must depend on
/// `tokio` (with the `macros` and `rt-multi-thread` features).
///
/// ```ignore
/// async fn stores(backend: plasma_testkit::Backend) -> Stores { .. }
/// async fn a_write_is_read_back(stores: Stores) { .. }
///
/// plasma_testkit::on_both_backends!(stores; a_write_is_read_back);
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (@module $module:ident $variant:ident $setup:path; $($name:ident)+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($setup($crate::Backend::$variant).await).await;
                }
            )+
        }
    };
    ($setup:ident; $($name:ident),+ $(,)?) => {
        $crate::on_both_backends!(@module sqlite Sqlite super::$setup; $($name)+);
        $crate::on_both_backends!(@module postgres Postgres super::$setup; $($name)+);
    };
    ($($name:ident),+ $(,)?) => {
        $crate::on_both_backends!(@module sqlite Sqlite $crate::backend_itself; $($name)+);
        $crate::on_both_backends!(@module postgres Postgres $crate::backend_itself; $($name)+);
    };
}
