//! The workers a gateway process runs in-process: one projection runner per read model and one
//! runner per process (the embedding workers), fed from the event store, each under the
//! [`supervise`] loop, stopped by the shutdown signal.

use std::sync::Arc;

use plasma_commands::EventStore;
use plasma_processes::agent::AgentWorker;
use plasma_processes::communities::CommunityWorker;
use plasma_processes::delivery::DeliveryWorker;
use plasma_processes::{Process, ProcessOptions, ProcessRunner};
use plasma_projections::{
    all_projections, Projection, ProjectionError, ProjectionRunner, ReadModels, ReadStore,
    RunnerOptions, StoreSubscription,
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
    processes: Vec<Arc<dyn Process>>,
    /// Delivery workers whose dispatchers send what their processes schedule.
    dispatchers: Vec<Arc<DeliveryWorker>>,
    /// The graph's communities worker, which follows the graph read model.
    communities: Option<Arc<CommunityWorker>>,
    /// The agent worker's executor (its schedule follows the log as a process).
    agent: Option<Arc<AgentWorker>>,
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
            processes: Vec::new(),
            dispatchers: Vec::new(),
            communities: None,
            agent: None,
        })
    }

    /// Runs `processes` too, from the event store.
    pub fn with_processes(mut self, processes: Vec<Arc<dyn Process>>) -> Self {
        self.processes = processes;
        self
    }

    /// Runs a delivery worker: its process and its dispatcher.
    pub fn with_delivery(mut self, worker: Arc<DeliveryWorker>) -> Self {
        self.processes.push(worker.clone());
        self.dispatchers.push(worker);
        self
    }

    /// Runs the agent worker: its schedule (a process) and its executor.
    pub fn with_agent(mut self, worker: Arc<AgentWorker>) -> Self {
        self.processes.push(worker.clone());
        self.agent = Some(worker);
        self
    }

    /// Runs the communities worker too.
    pub fn with_communities(mut self, worker: Arc<CommunityWorker>) -> Self {
        self.communities = Some(worker);
        self
    }

    /// No in-process runners: the read models are maintained by `plasma project` workers.
    pub fn external(read: &ReadStore, store: &EventStore) -> Self {
        Self {
            read: read.clone(),
            store: store.clone(),
            options: RunnerOptions::default(),
            runners: Vec::new(),
            processes: Vec::new(),
            dispatchers: Vec::new(),
            communities: None,
            agent: None,
        }
    }

    /// Each worker's name, in the order [`ProjectionWorkers::spawn`] returns them.
    pub fn names(&self) -> Vec<String> {
        self.runners
            .iter()
            .map(|(p, _)| format!("projection {}", p.name()))
            .chain(
                self.processes
                    .iter()
                    .map(|p| format!("process {}", p.name())),
            )
            .chain(
                self.dispatchers
                    .iter()
                    .map(|d| format!("dispatcher {}", d.name())),
            )
            .chain(self.communities.iter().map(|_| "communities".to_owned()))
            .chain(self.agent.iter().map(|_| "agent executor".to_owned()))
            .collect()
    }

    /// The read models these workers maintain.
    pub fn projection_names(&self) -> Vec<&'static str> {
        self.runners.iter().map(|(p, _)| p.name()).collect()
    }

    /// Starts every runner; each ends when `shutdown` turns true.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<Exit>> {
        let processes: Vec<JoinHandle<Exit>> = self
            .processes
            .iter()
            .map(|process| {
                let (read, store, process) =
                    (self.read.clone(), self.store.clone(), process.clone());
                let component = format!("process {}", process.name());
                tokio::spawn(supervise(component, shutdown.clone(), move |_, stop| {
                    let (read, store, process) = (read.clone(), store.clone(), process.clone());
                    async move {
                        let subscription = StoreSubscription::new(store);
                        ProcessRunner::start(read, process, subscription, ProcessOptions::default())
                            .await?
                            .run(stop)
                            .await
                    }
                }))
            })
            .collect();
        let mut handles: Vec<JoinHandle<Exit>> = self
            .runners
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
            .collect();
        handles.extend(processes);
        for worker in self.dispatchers {
            let read = ReadModels::new(self.read.clone());
            let component = format!("dispatcher {}", worker.name());
            handles.push(tokio::spawn(supervise(
                component,
                shutdown.clone(),
                move |_, stop| worker.clone().dispatch(read.clone(), stop),
            )));
        }
        if let Some(worker) = self.agent {
            handles.push(tokio::spawn(supervise(
                "agent executor",
                shutdown.clone(),
                move |_, stop| worker.clone().execute(stop),
            )));
        }
        if let Some(worker) = self.communities {
            handles.push(tokio::spawn(supervise(
                "communities",
                shutdown.clone(),
                move |_, stop| {
                    let worker = worker.clone();
                    async move { worker.run(stop).await }
                },
            )));
        }
        handles
    }
}
