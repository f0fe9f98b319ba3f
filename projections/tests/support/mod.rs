//! Fixtures shared by the projection tests: a store pair per backend, and runners.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use plasma_commands::{CommandContext, EventStore, StoreConfig};
use plasma_domain::ids::CommandId;
use plasma_domain::TenantId;
use plasma_projections::{
    catch_up, Projection, ProjectionRunner, ReadModels, ReadStore, ReadStoreConfig, RunnerOptions,
    StoreSubscription,
};
use plasma_testkit::Backend;
use uuid::Uuid;

/// An event store, the read store next to it, and whatever keeps them alive.
pub struct Stores {
    pub events: EventStore,
    pub read: ReadStore,
    _guard: Box<dyn std::any::Any + Send>,
}

/// The stores for `backend`: the setup for `plasma_testkit::on_both_backends!`.
pub async fn stores(backend: Backend) -> Stores {
    match backend {
        Backend::Sqlite => Stores::sqlite().await,
        Backend::Postgres => Stores::postgres().await,
    }
}

impl Stores {
    pub async fn sqlite() -> Self {
        let dir = plasma_testkit::temp_dir();
        let events = EventStore::open(&StoreConfig::Sqlite {
            path: dir.path().join("events.db"),
        })
        .await
        .unwrap();
        let read = ReadStore::open(&ReadStoreConfig::Sqlite {
            path: dir.path().join("read.db"),
        })
        .await
        .unwrap();
        Self {
            events,
            read,
            _guard: Box::new(dir),
        }
    }

    pub async fn postgres() -> Self {
        let pg = plasma_testkit::TestPg::start().await;
        let events = EventStore::open(&StoreConfig::Postgres {
            url: pg.url().to_owned(),
            max_connections: 10,
        })
        .await
        .unwrap();
        let EventStore::Postgres(store) = &events else {
            unreachable!()
        };
        let read = ReadStore::open(&ReadStoreConfig::Postgres {
            pool: store.pool().clone(),
        })
        .await
        .unwrap();
        Self {
            events,
            read,
            _guard: Box::new(pg),
        }
    }

    pub fn queries(&self) -> ReadModels {
        ReadModels::new(self.read.clone())
    }

    /// Brings `projection`'s live tables up to the store's head.
    pub async fn catch_up(&self, projection: Arc<dyn Projection>) {
        let mut runner = self.runner(projection).await;
        catch_up(&mut runner).await.unwrap();
    }

    pub async fn runner(
        &self,
        projection: Arc<dyn Projection>,
    ) -> ProjectionRunner<StoreSubscription> {
        ProjectionRunner::start(
            self.read.clone(),
            projection,
            StoreSubscription::new(self.events.clone()),
            RunnerOptions {
                batch_size: 97, // odd, so batches end mid-way through commands
                ..RunnerOptions::default()
            },
        )
        .await
        .unwrap()
    }
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

pub fn context(tenant_name: &str) -> CommandContext {
    CommandContext::new(
        tenant(tenant_name),
        CommandId::from_uuid(Uuid::now_v7()),
        None,
    )
}
