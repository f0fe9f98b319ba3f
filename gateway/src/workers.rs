//! The projection workers the gateway runs in-process: one [`ProjectionRunner`] per projection,
//! fed from the event store, restarted with a backoff when it fails, stopped by the shutdown
//! signal.

use std::sync::Arc;
use std::time::Duration;

use plasma_commands::EventStore;
use plasma_projections::{
    all_projections, Projection, ProjectionError, ProjectionRunner, ReadStore, RunnerOptions,
    StoreSubscription,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::log_cause_chain;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Every projection's runner, prepared (tables created, checkpoint loaded) but not yet running.
#[derive(Debug)]
pub struct ProjectionWorkers {
    read: ReadStore,
    store: EventStore,
    options: RunnerOptions,
    runners: Vec<(Arc<dyn Projection>, ProjectionRunner<StoreSubscription>)>,
}

/// How one worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerExit {
    pub projection: &'static str,
    /// How often it failed and was started again before the shutdown.
    pub restarts: u32,
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

    /// Starts every worker; each ends when `shutdown` turns true.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<WorkerExit>> {
        self.runners
            .into_iter()
            .map(|(projection, runner)| {
                let worker = Worker {
                    read: self.read.clone(),
                    store: self.store.clone(),
                    options: self.options.clone(),
                    projection,
                };
                tokio::spawn(worker.run(runner, shutdown.clone()))
            })
            .collect()
    }
}

struct Worker {
    read: ReadStore,
    store: EventStore,
    options: RunnerOptions,
    projection: Arc<dyn Projection>,
}

impl Worker {
    #[tracing::instrument(skip_all, fields(plasma.projection = self.projection.name()))]
    async fn run(
        self,
        runner: ProjectionRunner<StoreSubscription>,
        mut shutdown: watch::Receiver<bool>,
    ) -> WorkerExit {
        let name = self.projection.name();
        let mut restarts = 0u32;
        let mut runner = Some(runner);
        loop {
            let result = match runner.take() {
                Some(runner) => runner.run(shutdown.clone()).await,
                None => match self.restart().await {
                    Ok(runner) => runner.run(shutdown.clone()).await,
                    Err(err) => Err(err),
                },
            };
            match result {
                Ok(()) => break,
                Err(err) => {
                    log_cause_chain(&err, "projection_failed");
                    if *shutdown.borrow() {
                        break;
                    }
                    restarts += 1;
                    let backoff = Duration::from_millis(100u64 << restarts.min(6)).min(MAX_BACKOFF);
                    tracing::warn!(
                        restarts,
                        backoff_ms = backoff.as_millis() as u64,
                        "restarting projection"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    if *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        WorkerExit {
            projection: name,
            restarts,
        }
    }

    async fn restart(&self) -> Result<ProjectionRunner<StoreSubscription>, ProjectionError> {
        ProjectionRunner::start(
            self.read.clone(),
            self.projection.clone(),
            StoreSubscription::new(self.store.clone()),
            self.options.clone(),
        )
        .await
    }
}
