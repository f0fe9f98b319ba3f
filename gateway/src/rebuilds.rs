//! Read-model rebuilds started over HTTP: one at a time per read model, run in this process,
//! their progress kept here for `GET` to report. (Progress is per gateway process; the rebuild
//! itself swaps the shared tables, so any gateway then serves the result.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
pub use plasma_projections::RebuildSource;
use plasma_projections::{projection_named, RebuildProgress, Rebuilder};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    Running,
    Succeeded,
    Failed,
}

/// A rebuild's progress: `position` of `target` are event positions (store) or records read
/// (log); queries keep being served from the live tables until the swap.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuildStatus {
    pub read_model: String,
    pub source: RebuildSource,
    pub state: RebuildState,
    pub applied: u64,
    pub position: i64,
    pub target: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Why a rebuild could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no read model is called `{0}`")]
    UnknownReadModel(String),
    #[error("a rebuild of `{0}` is already running")]
    AlreadyRunning(String),
    #[error("rebuilding from the log needs the log configured (PLASMA_KAFKA_BROKERS, PLASMA_SCHEMA_REGISTRY_URL)")]
    NoLog,
}

#[derive(Debug, Clone)]
pub struct Rebuilds {
    rebuilder: Rebuilder,
    statuses: Arc<Mutex<HashMap<String, RebuildStatus>>>,
}

impl Rebuilds {
    pub fn new(rebuilder: Rebuilder) -> Self {
        Self {
            rebuilder,
            statuses: Arc::default(),
        }
    }

    pub fn status(&self, read_model: &str) -> Option<RebuildStatus> {
        self.lock().get(read_model).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RebuildStatus>> {
        self.statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts rebuilding `read_model` in the background.
    pub fn start(
        &self,
        read_model: &str,
        source: RebuildSource,
    ) -> Result<RebuildStatus, StartError> {
        projection_named(read_model)
            .map_err(|_| StartError::UnknownReadModel(read_model.to_owned()))?;
        if !self.rebuilder.supports(source) {
            return Err(StartError::NoLog);
        }
        let status = RebuildStatus {
            read_model: read_model.to_owned(),
            source,
            state: RebuildState::Running,
            applied: 0,
            position: 0,
            target: 0,
            started_at: Utc::now(),
            finished_at: None,
            error: None,
        };
        {
            let mut statuses = self.lock();
            if statuses
                .get(read_model)
                .is_some_and(|s| s.state == RebuildState::Running)
            {
                return Err(StartError::AlreadyRunning(read_model.to_owned()));
            }
            statuses.insert(read_model.to_owned(), status.clone());
        }
        let this = self.clone();
        let name = read_model.to_owned();
        tokio::spawn(async move {
            let mut progress = |p: RebuildProgress| this.update(&name, |s| set_progress(s, p));
            let outcome = this.rebuilder.rebuild(&name, source, &mut progress).await;
            this.update(&name, |s| {
                s.finished_at = Some(Utc::now());
                match outcome {
                    Ok(p) => {
                        set_progress(s, p);
                        s.state = RebuildState::Succeeded;
                    }
                    Err(error) => {
                        tracing::error!(read_model = %s.read_model, %error, "rebuild failed");
                        s.state = RebuildState::Failed;
                        s.error = Some(format!("{:#}", anyhow::Error::from(error)));
                    }
                }
            });
        });
        Ok(status)
    }

    fn update(&self, read_model: &str, change: impl FnOnce(&mut RebuildStatus)) {
        if let Some(status) = self.lock().get_mut(read_model) {
            change(status);
        }
    }
}

fn set_progress(status: &mut RebuildStatus, progress: RebuildProgress) {
    status.applied = progress.applied;
    status.position = progress.position;
    status.target = progress.target;
}
