//! What every handler can reach: the command handler, the read models, the clock, and the
//! gateway's own services. A cheap handle (one `Arc`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use plasma_commands::{CommandHandler, EventStore, Services};
use plasma_domain::brand::ChannelSecrets;
use plasma_domain::content::DraftServices;
use plasma_domain::research::Embedder;
use plasma_projections::{ReadModels, Rebuilder};

use crate::auth::TokenVerifier;
use crate::clock::Clock;
use crate::rate_limit::RateLimiter;
use crate::rebuilds::Rebuilds;

/// Shared state of the HTTP layer.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handler: CommandHandler,
    read: ReadModels,
    clock: Arc<dyn Clock>,
    verifier: TokenVerifier,
    rate_limiter: RateLimiter,
    services: Services,
    draft_services: DraftServices,
    body_limit: usize,
    ready_max_lag: Option<u64>,
    projections: Vec<&'static str>,
    metrics: PrometheusHandle,
    rebuilds: Rebuilds,
    embedders: Vec<Arc<dyn Embedder>>,
    channel_secrets: Arc<dyn ChannelSecrets>,
    tools: Option<Arc<dyn crate::mcp::ToolCaller>>,
    /// Set at shutdown: `/ready` then fails so traffic moves elsewhere while requests finish.
    draining: std::sync::atomic::AtomicBool,
}

/// The parts [`AppState::new`] is built from.
#[derive(Debug)]
pub struct StateParts {
    pub handler: CommandHandler,
    pub read: ReadModels,
    pub clock: Arc<dyn Clock>,
    pub verifier: TokenVerifier,
    pub rate_limiter: RateLimiter,
    pub services: Services,
    pub draft_services: DraftServices,
    pub body_limit: usize,
    /// `/ready` fails when a projection lags more than this; `None`: lag is only reported
    /// (the projections run elsewhere).
    pub ready_max_lag: Option<u64>,
    pub projections: Vec<&'static str>,
    pub metrics: PrometheusHandle,
    /// Runs read-model rebuilds, from the store and (when configured) the log.
    pub rebuilder: Rebuilder,
    /// The embedding models loaded in this process, for search queries.
    pub embedders: Vec<Arc<dyn Embedder>>,
    /// Webhook channels' signing secrets, shown to the brand's owners.
    pub channel_secrets: Arc<dyn ChannelSecrets>,
    /// The tool registry's implementation, served over MCP at `/v1/mcp` when given.
    pub tools: Option<Arc<dyn crate::mcp::ToolCaller>>,
}

impl AppState {
    pub fn new(parts: StateParts) -> Self {
        let StateParts {
            handler,
            read,
            clock,
            verifier,
            rate_limiter,
            services,
            draft_services,
            body_limit,
            ready_max_lag,
            projections,
            metrics,
            rebuilder,
            embedders,
            channel_secrets,
            tools,
        } = parts;
        Self {
            inner: Arc::new(Inner {
                handler,
                read,
                clock,
                verifier,
                rate_limiter,
                services,
                draft_services,
                body_limit,
                ready_max_lag,
                projections,
                metrics,
                rebuilds: Rebuilds::new(rebuilder),
                embedders,
                channel_secrets,
                tools,
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Runs commands (through [`AppState::execute`] in handlers, which adds idempotency checks
    /// and metrics).
    pub fn handler(&self) -> &CommandHandler {
        &self.inner.handler
    }

    pub fn store(&self) -> &EventStore {
        self.inner.handler.store()
    }

    pub fn read(&self) -> &ReadModels {
        &self.inner.read
    }

    /// The embedding models loaded here, the default (first configured) first.
    pub fn channel_secrets(&self) -> &dyn ChannelSecrets {
        self.inner.channel_secrets.as_ref()
    }

    /// The tool registry's implementation, when this gateway serves MCP.
    pub fn tools(&self) -> Option<Arc<dyn crate::mcp::ToolCaller>> {
        self.inner.tools.clone()
    }

    pub fn embedders(&self) -> &[Arc<dyn Embedder>] {
        &self.inner.embedders
    }

    pub fn rebuilds(&self) -> &Rebuilds {
        &self.inner.rebuilds
    }

    /// The instant stamped on commands as `at`.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The aggregates' outside helpers (sentiment scorer, …).
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    pub fn draft_services(&self) -> &DraftServices {
        &self.inner.draft_services
    }

    /// From now on `/ready` answers 503: the process is shutting down.
    pub fn start_draining(&self) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.inner.verifier
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.rate_limiter
    }

    pub fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    pub fn ready_max_lag(&self) -> Option<u64> {
        self.inner.ready_max_lag
    }

    /// The names of every projection this process runs.
    pub fn projections(&self) -> &[&'static str] {
        &self.inner.projections
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
}
