//! What the process tests share: where a test's stores live (a temp SQLite dir or a throwaway
//! PostgreSQL database), opening them, and handing the location to a child process that a test
//! kills with SIGKILL.

use std::path::PathBuf;

use plasma_commands::{EventStore, StoreConfig};
use plasma_projections::{ReadStore, ReadStoreConfig};
use plasma_testkit::Backend;

/// Where a test's stores live: a SQLite dir, or a PostgreSQL database URL.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// The location as one string, for a child process's environment.
    pub fn to_env(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite:{}", dir.display()),
            Self::Postgres(url) => format!("postgres:{url}"),
        }
    }

    /// Reads back [`Location::to_env`].
    pub fn from_env(raw: &str) -> Self {
        match raw.split_once(':') {
            Some(("sqlite", dir)) => Self::Sqlite(PathBuf::from(dir)),
            Some(("postgres", url)) => Self::Postgres(url.to_owned()),
            _ => panic!("not a store location: {raw}"),
        }
    }
}

/// A test's stores, kept alive as long as the fixture.
pub struct Fixture {
    pub location: Location,
    _guard: Box<dyn std::any::Any + Send>,
}

pub async fn fixture(backend: Backend) -> Fixture {
    match backend {
        Backend::Sqlite => {
            let dir = plasma_testkit::temp_dir();
            Fixture {
                location: Location::Sqlite(dir.path().to_owned()),
                _guard: Box::new(dir),
            }
        }
        Backend::Postgres => {
            let pg = plasma_testkit::TestPg::start().await;
            Fixture {
                location: Location::Postgres(pg.url().to_owned()),
                _guard: Box::new(pg),
            }
        }
    }
}

pub async fn open(location: &Location) -> (EventStore, ReadStore) {
    let (config, read_path) = match location {
        Location::Sqlite(dir) => (
            StoreConfig::Sqlite {
                path: dir.join("events.db"),
            },
            dir.join("read.db"),
        ),
        Location::Postgres(url) => (
            StoreConfig::Postgres {
                url: url.clone(),
                max_connections: 8,
            },
            PathBuf::new(),
        ),
    };
    let store = EventStore::open(&config).await.unwrap();
    let read = ReadStore::open(&ReadStoreConfig::beside(&store, read_path))
        .await
        .unwrap();
    (store, read)
}
