//! The projection runners a gateway process runs in-process: one per read model, fed from the
//! event store, each under the [`supervise`] loop, stopped by the shutdown signal.

use std::sync::Arc;

use plasma_commands::EventStore;
use plasma_projections::{
    all_projections, Projection, ProjectionError, ProjectionRunner, ReadStore, RunnerOptions,
    StoreSubscription,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::supervisor::{supervise, Exit};

/// Every projection's runner, prepared (tables created, checkpoint loaded) but not yet running.
#[derive(Debug)]
pub struct ProjectionWorkers {
    read: ReadStore,
    store: EventStore,
    options: RunnerOptions,
    runners: Vec<(Arc<dyn Projection>, ProjectionRunner<StoreSubscription>)>,
}

impl ProjectionWorkers {
    /// Prepares one runner per projection. Failing here (e.g. read-model DDL) fails startup.
    pub async fn prepare(
        read: &ReadStore,
        store: &EventStore,
        options: RunnerOptions,
    ) -> Result<Self, ProjectionError> {
        let mut runners = Vec::new();
        for projection in all_projections() {
            let runner = ProjectionRunner::start(
                read.clone(),
                projection.clone(),
                StoreSubscription::new(store.clone()),
                options.clone(),
            )
            .await?;
            runners.push((projection, runner));
        }
        Ok(Self {
            read: read.clone(),
            store: store.clone(),
            options,
            runners,
        })
    }

    /// No in-process runners: the read models are maintained by `plasma project` workers.
    pub fn external(read: &ReadStore, store: &EventStore) -> Self {
        Self {
            read: read.clone(),
            store: store.clone(),
            options: RunnerOptions::default(),
            runners: Vec::new(),
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.runners.iter().map(|(p, _)| p.name()).collect()
    }

    /// Starts every runner; each ends when `shutdown` turns true.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<Exit>> {
        self.runners
            .into_iter()
            .map(|(projection, runner)| {
                let read = self.read.clone();
                let store = self.store.clone();
                let options = self.options.clone();
                let mut prepared = Some(runner);
                let component = format!("projection {}", projection.name());
                tokio::spawn(supervise(component, shutdown.clone(), move |_, stop| {
                    let prepared = prepared.take();
                    let (read, store, projection, options) = (
                        read.clone(),
                        store.clone(),
                        projection.clone(),
                        options.clone(),
                    );
                    async move {
                        let runner = match prepared {
                            Some(runner) => runner,
                            None => {
                                let subscription = StoreSubscription::new(store);
                                ProjectionRunner::start(read, projection, subscription, options)
                                    .await?
                            }
                        };
                        runner.run(stop).await
                    }
                }))
            })
            .collect()
    }
}
