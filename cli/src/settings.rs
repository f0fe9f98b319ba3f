//! Settings: one struct, built in layers — defaults → an optional TOML/JSON file → `PLASMA_*`
//! environment variables → command-line flags — and validated once, with messages that name the
//! setting at fault.
//!
//! The file has one table per component:
//!
//! ```toml
//! [store]
//! mode = "server"                  # or "embedded"
//! data_dir = ".plasma"             # embedded: events.db and read.db live here
//! database_url = "postgres://…"    # server
//! max_connections = 16
//!
//! [http]
//! listen = "127.0.0.1:8080"
//! body_limit = "16MiB"
//! request_timeout = "30s"
//! drain_delay = "5s"               # PLASMA_DRAIN_DELAY: after SIGTERM, /ready fails, serving goes on
//! drain_timeout = "30s"            # PLASMA_DRAIN_TIMEOUT: then in-flight requests get this long
//!
//! [auth]
//! jwt_secret = "…at least 32 bytes…"         # HS256 (PLASMA_JWT_SECRET); or an OIDC issuer:
//! oidc_issuer = "https://sso.example.com/realms/plasma"   # PLASMA_OIDC_ISSUER
//! oidc_audience = "plasma-api"               # PLASMA_OIDC_AUDIENCE (required with an issuer)
//! oidc_jwks_url = "https://…/certs"          # PLASMA_OIDC_JWKS_URL; default: discovery
//! oidc_tenant_claim = "tenant"               # PLASMA_OIDC_TENANT_CLAIM (dotted path)
//! oidc_roles_claim = "realm_access.roles"    # PLASMA_OIDC_ROLES_CLAIM; default "roles"
//! oidc_refresh_min_interval = "30s"          # PLASMA_OIDC_REFRESH_MIN_INTERVAL
//!
//! [rate_limit]
//! per_second = 100                 # per tenant; 0 turns rate limiting off
//! burst = 200
//!
//! [consistency]
//! min_position_wait = "2s"
//! ready_max_lag = 10000            # /ready fails beyond it, when the projections run in-process
//!
//! [research]
//! models_dir = "~/.cache/plasma/models"   # PLASMA_MODELS_DIR; filled by scripts/install-models.sh
//! embedders = ["all-MiniLM-L6-v2"]       # PLASMA_EMBEDDERS (comma-separated, or none)
//!
//! [alerts]
//! webhook_key = "…at least 32 bytes…"   # PLASMA_WEBHOOK_KEY; channel secrets derive from it
//! max_attempts = 8                       # PLASMA_WEBHOOK_MAX_ATTEMPTS, then dead-lettered
//! retry_base = "2s"                      # PLASMA_WEBHOOK_RETRY_BASE, doubled per failure
//! timeout = "10s"                        # PLASMA_WEBHOOK_TIMEOUT, per attempt
//! allow_private_targets = false          # PLASMA_WEBHOOK_ALLOW_PRIVATE; true in `plasma dev`
//!
//! [agent]
//! provider = "auto"                      # PLASMA_LLM_PROVIDER: auto (default: local when its
//!                                        #   model is installed, template otherwise), local,
//!                                        #   template or openai
//! local_model = "…/model.gguf"           # PLASMA_LOCAL_MODEL; default: SmolLM2-135M-Instruct
//!                                        #   in the models dir (scripts/install-models.sh)
//! openai_base_url = "https://api.openai.com/v1"   # PLASMA_OPENAI_BASE_URL (any compatible API)
//! openai_model = "gpt-4o-mini"           # PLASMA_OPENAI_MODEL
//! openai_api_key = "sk-…"                # PLASMA_OPENAI_API_KEY (optional for local servers)
//! llm_timeout = "60s"                    # PLASMA_LLM_TIMEOUT, per attempt
//! llm_max_retries = 3                    # PLASMA_LLM_MAX_RETRIES, on 429/5xx/timeouts
//! http_allowed_hosts = ["api.example.com", "*.partner.io"]   # PLASMA_AGENT_HTTP_ALLOWED_HOSTS
//! publish_webhook_url = "https://cms.example.com/hooks/plasma"   # PLASMA_PUBLISH_WEBHOOK_URL
//! publish_secret = "…at least 32 bytes…" # PLASMA_PUBLISH_SECRET; default: from the webhook key
//! concurrency = 32                       # PLASMA_AGENT_CONCURRENCY: runs driven at once
//! lease = "10s"                          # PLASMA_AGENT_LEASE: a killed worker's runs wait this
//! checkpoint_retention = "7d"            # PLASMA_AGENT_CHECKPOINT_RETENTION: then a finished
//!                                        #   run's checkpoints are pruned ("off": never)
//! checkpoints_kept = 1                   # PLASMA_AGENT_CHECKPOINTS_KEPT: the latest ones stay
//! ```

use std::fs::OpenOptions;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore as _;
use serde::{Deserialize, Deserializer};

use plasma_adapters::embedding::default_models_dir;
use plasma_adapters::KnownModel;
use plasma_log::LogConfig;

pub use plasma_gateway::options::{
    AuthSettings, ConsistencySettings, HttpSettings, JwtKey, OidcSettings, RateLimitSettings,
};
use plasma_gateway::Secret;

/// Where embedded mode keeps its files unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = ".plasma";
/// The dev signing secret's file name inside the data dir.
pub const DEV_SECRET_FILE: &str = "dev-jwt-secret";
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// 16 MiB: a full bulk request of 10,000 mentions with ordinary texts fits with room to spare.
const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MIN_POSITION_WAIT: Duration = Duration::from_secs(2);
const DEFAULT_READY_MAX_LAG: u64 = 10_000;
const DEFAULT_RATE_PER_SECOND: u32 = 100;
const DEFAULT_RATE_BURST: u32 = 200;
const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// Everything the gateway needs to start, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreSettings,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub consistency: ConsistencySettings,
    /// The Kafka-compatible log and its schema registry, when configured (server mode).
    pub log: Option<LogConfig>,
    /// Who maintains the read models this gateway queries.
    pub projections: ProjectionsMode,
    /// The research pipeline's models.
    pub research: ResearchSettings,
    /// Alert notifications.
    pub alerts: AlertSettings,
    /// The agent worker: text generation, tools, publishing.
    pub agent: AgentSettings,
}

/// Which text-generation provider writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmProvider {
    /// Deterministic templates in the brand's voice.
    Template,
    /// A GGUF llama model run in-process (SmolLM2-135M-Instruct in the models dir by default).
    /// Unless `required`, a model that is not installed leaves the templates writing (with a
    /// warning); a damaged one always stops the start.
    Local { model_file: PathBuf, required: bool },
    /// An OpenAI-compatible chat-completions API.
    OpenAi {
        base_url: String,
        model: String,
        api_key: Option<Secret>,
    },
}

/// The agent worker's settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub provider: LlmProvider,
    pub llm_timeout: Duration,
    pub llm_max_retries: u32,
    pub http_allowed_hosts: Vec<String>,
    pub publish_webhook_url: Option<String>,
    /// Signs published drafts; `None` when neither it nor a webhook key is known (a log tool).
    pub publish_secret: Option<Secret>,
    pub concurrency: usize,
    pub lease: Duration,
    /// How long after a run finishes its older checkpoints are pruned; `None`: never.
    pub checkpoint_retention: Option<Duration>,
    /// The latest checkpoints pruning leaves (at least 1).
    pub checkpoints_kept: u32,
}

/// How alert webhooks are signed and retried.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Every channel's signing secret derives from it. Without one configured, it derives from
    /// the JWT secret (so `plasma dev` keeps its channel secrets across restarts); `None` in a
    /// log tool given neither.
    pub webhook_key: Option<Secret>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub timeout: Duration,
    /// Whether webhooks may go to loopback, private and link-local addresses: yes for
    /// `plasma dev`, no otherwise unless set.
    pub allow_private_targets: bool,
}

/// Where the embedding models' files are, and which models embed what is ingested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResearchSettings {
    /// Filled by `scripts/install-models.sh`.
    pub models_dir: PathBuf,
    /// Each runs an embedding worker; empty turns embedding off.
    pub embedders: Vec<KnownModel>,
}

/// Who keeps the read models up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectionsMode {
    /// The gateway runs every projection itself, fed from the event store.
    InProcess,
    /// `plasma project` workers do, fed from the log; the gateway only reads.
    External,
}

impl FromStr for ProjectionsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-process" => Ok(Self::InProcess),
            "external" => Ok(Self::External),
            other => Err(format!(
                "`{other}` is not a projections mode: use in-process or external"
            )),
        }
    }
}

/// Where events and read models live.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// SQLite files `events.db` and `read.db` in `data_dir`.
    Embedded { data_dir: PathBuf },
    /// A PostgreSQL database holding both the events and the read models.
    Server {
        database_url: Secret,
        max_connections: u32,
    },
}

/// Which command the settings are for; it decides what may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `plasma dev`: always embedded; without a configured secret, the data dir's dev secret
    /// (created on first run) signs and verifies tokens.
    Dev,
    /// `plasma serve`: the secret must be configured.
    Serve,
    /// `plasma token`: like dev, the data dir's dev secret when none is configured.
    Token,
    /// The log processes (`relay`, `project`, `replay`, `tail`, `schemas`, `topics`): they
    /// serve no API, so no secret is needed.
    LogTool,
}

/// Embedded (SQLite files) or server (PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Embedded,
    Server,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embedded" => Ok(Self::Embedded),
            "server" => Ok(Self::Server),
            other => Err(format!("`{other}` is not a mode: use embedded or server")),
        }
    }
}

/// Why the settings are unusable. Each message names the setting and where it can be set.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    ParseFile { path: PathBuf, message: String },
    #[error("config file {}: use a .toml or .json file", path.display())]
    FileFormat { path: PathBuf },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("missing setting {key}: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    #[error("cannot read or create the dev signing secret {}", path.display())]
    DevSecret {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// One layer of settings: every value optional, later layers override earlier ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsLayer {
    #[serde(default)]
    pub store: StoreLayer,
    #[serde(default)]
    pub http: HttpLayer,
    #[serde(default)]
    pub auth: AuthLayer,
    #[serde(default)]
    pub rate_limit: RateLimitLayer,
    #[serde(default)]
    pub consistency: ConsistencyLayer,
    #[serde(default)]
    pub log: LogLayer,
    #[serde(default)]
    pub projections: ProjectionsLayer,
    #[serde(default)]
    pub research: ResearchLayer,
    #[serde(default)]
    pub alerts: AlertsLayer,
    #[serde(default)]
    pub agent: AgentLayer,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLayer {
    pub provider: Option<String>,
    pub local_model: Option<PathBuf>,
    pub openai_base_url: Option<String>,
    pub openai_model: Option<String>,
    pub openai_api_key: Option<Secret>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub llm_timeout: Option<Duration>,
    pub llm_max_retries: Option<u32>,
    pub http_allowed_hosts: Option<Vec<String>>,
    pub publish_webhook_url: Option<String>,
    pub publish_secret: Option<Secret>,
    pub concurrency: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub lease: Option<Duration>,
    /// A duration, or "off".
    pub checkpoint_retention: Option<String>,
    pub checkpoints_kept: Option<u32>,
}

impl AgentLayer {
    fn validate(
        self,
        alerts: &AlertSettings,
        models_dir: &Path,
    ) -> Result<AgentSettings, SettingsError> {
        let provider = match self.provider.as_deref().map(str::trim).unwrap_or("auto") {
            "template" => LlmProvider::Template,
            "auto" | "local" => LlmProvider::Local {
                model_file: self.local_model.clone().unwrap_or_else(|| {
                    models_dir
                        .join(plasma_adapters::local_llm::SMOLLM2_DIR)
                        .join(plasma_adapters::local_llm::SMOLLM2_FILE)
                }),
                required: self.provider.as_deref().map(str::trim) == Some("local"),
            },
            "openai" => {
                let base_url = self.openai_base_url.ok_or(SettingsError::Missing {
                    key: "agent.openai_base_url (PLASMA_OPENAI_BASE_URL)",
                    hint: "the openai provider needs the API's base URL, e.g. https://api.openai.com/v1",
                })?;
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    return Err(invalid(
                        "agent.openai_base_url (PLASMA_OPENAI_BASE_URL)",
                        "must be an http(s) URL",
                    ));
                }
                let model = self.openai_model.ok_or(SettingsError::Missing {
                    key: "agent.openai_model (PLASMA_OPENAI_MODEL)",
                    hint: "the openai provider needs a model name",
                })?;
                LlmProvider::OpenAi {
                    base_url,
                    model,
                    api_key: self.openai_api_key,
                }
            }
            other => {
                return Err(invalid(
                    "agent.provider (PLASMA_LLM_PROVIDER)",
                    format!("`{other}` is not a provider: use auto, local, template or openai"),
                ))
            }
        };
        let llm_timeout = self.llm_timeout.unwrap_or(Duration::from_secs(60));
        let lease = self.lease.unwrap_or(Duration::from_secs(10));
        for (key, value) in [
            ("agent.llm_timeout (PLASMA_LLM_TIMEOUT)", llm_timeout),
            ("agent.lease (PLASMA_AGENT_LEASE)", lease),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(3600) {
                return Err(invalid(key, "must be between 100ms and 1h"));
            }
        }
        let concurrency = self.concurrency.unwrap_or(32);
        if !(1..=1024).contains(&concurrency) {
            return Err(invalid(
                "agent.concurrency (PLASMA_AGENT_CONCURRENCY)",
                "must be between 1 and 1024",
            ));
        }
        const RETENTION: &str = "agent.checkpoint_retention (PLASMA_AGENT_CHECKPOINT_RETENTION)";
        let checkpoint_retention = match self.checkpoint_retention.as_deref().map(str::trim) {
            None => Some(Duration::from_secs(7 * 24 * 3600)),
            Some("off") => None,
            Some(value) => {
                let retention = parse_duration(RETENTION, value)?;
                if retention > Duration::from_secs(10 * 366 * 24 * 3600) {
                    return Err(invalid(RETENTION, "must be at most 10 years, or off"));
                }
                Some(retention)
            }
        };
        let checkpoints_kept = self.checkpoints_kept.unwrap_or(1);
        if !(1..=100).contains(&checkpoints_kept) {
            return Err(invalid(
                "agent.checkpoints_kept (PLASMA_AGENT_CHECKPOINTS_KEPT)",
                "must be between 1 and 100",
            ));
        }
        let publish_secret = match self.publish_secret {
            Some(secret) if secret.expose().len() < MIN_SECRET_BYTES => {
                return Err(invalid(
                    "agent.publish_secret (PLASMA_PUBLISH_SECRET)",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ))
            }
            Some(secret) => Some(secret),
            None => alerts
                .webhook_key
                .as_ref()
                .map(|key| Secret::new(format!("plasma-publisher|{}", key.expose()))),
        };
        Ok(AgentSettings {
            provider,
            llm_timeout,
            llm_max_retries: self.llm_max_retries.unwrap_or(3).min(10),
            http_allowed_hosts: self.http_allowed_hosts.unwrap_or_default(),
            publish_webhook_url: self.publish_webhook_url.filter(|u| !u.trim().is_empty()),
            publish_secret,
            concurrency,
            lease,
            checkpoint_retention,
            checkpoints_kept,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsLayer {
    pub webhook_key: Option<Secret>,
    pub max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub retry_base: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    pub allow_private_targets: Option<bool>,
}

impl AlertsLayer {
    /// `jwt_known`: the JWT secret is the one the gateway uses (configured, or the dev secret),
    /// so a key derived from it is the gateway's too.
    fn validate(
        self,
        auth: &AuthSettings,
        jwt_known: bool,
        profile: Profile,
    ) -> Result<AlertSettings, SettingsError> {
        let webhook_key = match self.webhook_key {
            Some(key) if key.expose().len() < MIN_SECRET_BYTES => {
                return Err(invalid(
                    "alerts.webhook_key (PLASMA_WEBHOOK_KEY)",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ))
            }
            Some(key) => Some(key),
            // A log tool without either secret: only `plasma alerts` needs one, and says so.
            None if !jwt_known => None,
            None => match &auth.jwt {
                JwtKey::Hs256(secret) => {
                    Some(Secret::new(format!("plasma-webhooks|{}", secret.expose())))
                }
                // No shared secret to derive from: the gateway and `plasma alerts` ask for one.
                JwtKey::Oidc(_) => None,
            },
        };
        let max_attempts = self.max_attempts.unwrap_or(8);
        if !(1..=50).contains(&max_attempts) {
            return Err(invalid(
                "alerts.max_attempts (PLASMA_WEBHOOK_MAX_ATTEMPTS)",
                "must be between 1 and 50",
            ));
        }
        let retry_base = self.retry_base.unwrap_or(Duration::from_secs(2));
        let timeout = self.timeout.unwrap_or(Duration::from_secs(10));
        for (key, value) in [
            ("alerts.retry_base (PLASMA_WEBHOOK_RETRY_BASE)", retry_base),
            ("alerts.timeout (PLASMA_WEBHOOK_TIMEOUT)", timeout),
        ] {
            if value < Duration::from_millis(10) || value > Duration::from_secs(3600) {
                return Err(invalid(key, "must be between 10ms and 1h"));
            }
        }
        Ok(AlertSettings {
            webhook_key,
            max_attempts,
            retry_base,
            timeout,
            allow_private_targets: self
                .allow_private_targets
                .unwrap_or(profile == Profile::Dev),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchLayer {
    pub models_dir: Option<PathBuf>,
    /// Model names, e.g. ["all-MiniLM-L6-v2", "wordllama-l2-supercat-256"]; [] for none.
    pub embedders: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLayer {
    pub brokers: Option<String>,
    pub registry_url: Option<String>,
    pub topic_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionsLayer {
    pub mode: Option<ProjectionsMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreLayer {
    pub mode: Option<Mode>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<Secret>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLayer {
    pub listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "opt_bytes")]
    pub body_limit: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub drain_delay: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub drain_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLayer {
    pub jwt_secret: Option<Secret>,
    pub oidc_issuer: Option<String>,
    pub oidc_audience: Option<String>,
    pub oidc_jwks_url: Option<String>,
    pub oidc_tenant_claim: Option<String>,
    pub oidc_roles_claim: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub oidc_refresh_min_interval: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitLayer {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyLayer {
    #[serde(default, deserialize_with = "opt_duration")]
    pub min_position_wait: Option<Duration>,
    pub ready_max_lag: Option<u64>,
}

impl SettingsLayer {
    /// Reads a TOML (`.toml`) or JSON (`.json`) file; unknown keys are refused.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let parse_error = |message: String| SettingsError::ParseFile {
            path: path.to_owned(),
            message,
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text).map_err(|err| parse_error(err.to_string())),
            Some("json") => serde_json::from_str(&text).map_err(|err| parse_error(err.to_string())),
            _ => Err(SettingsError::FileFormat {
                path: path.to_owned(),
            }),
        }
    }

    /// Reads the `PLASMA_*` variables through `get` (the process environment in `main`, a map
    /// in tests). Empty values count as unset.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut layer = Self::default();
        if let Some(v) = var("PLASMA_MODE") {
            layer.store.mode = Some(v.trim().parse().map_err(|m| invalid("PLASMA_MODE", m))?);
        }
        if let Some(v) = var("PLASMA_DATA_DIR") {
            layer.store.data_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("PLASMA_DATABASE_URL") {
            layer.store.database_url = Some(Secret::new(v));
        }
        if let Some(v) = var("PLASMA_DATABASE_MAX_CONNECTIONS") {
            layer.store.max_connections =
                Some(parse_number("PLASMA_DATABASE_MAX_CONNECTIONS", &v)?);
        }
        if let Some(v) = var("PLASMA_LISTEN") {
            layer.http.listen = Some(parse_listen("PLASMA_LISTEN", &v)?);
        }
        if let Some(v) = var("PLASMA_BODY_LIMIT") {
            layer.http.body_limit =
                Some(parse_bytes(&v).map_err(|m| invalid("PLASMA_BODY_LIMIT", m))?);
        }
        if let Some(v) = var("PLASMA_REQUEST_TIMEOUT") {
            layer.http.request_timeout = Some(parse_duration("PLASMA_REQUEST_TIMEOUT", &v)?);
        }
        if let Some(v) = var("PLASMA_DRAIN_DELAY") {
            layer.http.drain_delay = Some(parse_duration("PLASMA_DRAIN_DELAY", &v)?);
        }
        if let Some(v) = var("PLASMA_DRAIN_TIMEOUT") {
            layer.http.drain_timeout = Some(parse_duration("PLASMA_DRAIN_TIMEOUT", &v)?);
        }
        if let Some(v) = var("PLASMA_JWT_SECRET") {
            layer.auth.jwt_secret = Some(Secret::new(v));
        }
        layer.auth.oidc_issuer = var("PLASMA_OIDC_ISSUER");
        layer.auth.oidc_audience = var("PLASMA_OIDC_AUDIENCE");
        layer.auth.oidc_jwks_url = var("PLASMA_OIDC_JWKS_URL");
        layer.auth.oidc_tenant_claim = var("PLASMA_OIDC_TENANT_CLAIM");
        layer.auth.oidc_roles_claim = var("PLASMA_OIDC_ROLES_CLAIM");
        if let Some(v) = var("PLASMA_OIDC_REFRESH_MIN_INTERVAL") {
            layer.auth.oidc_refresh_min_interval =
                Some(parse_duration("PLASMA_OIDC_REFRESH_MIN_INTERVAL", &v)?);
        }
        if let Some(v) = var("PLASMA_RATE_LIMIT_PER_SECOND") {
            layer.rate_limit.per_second = Some(parse_number("PLASMA_RATE_LIMIT_PER_SECOND", &v)?);
        }
        if let Some(v) = var("PLASMA_RATE_LIMIT_BURST") {
            layer.rate_limit.burst = Some(parse_number("PLASMA_RATE_LIMIT_BURST", &v)?);
        }
        if let Some(v) = var("PLASMA_MIN_POSITION_WAIT") {
            layer.consistency.min_position_wait =
                Some(parse_duration("PLASMA_MIN_POSITION_WAIT", &v)?);
        }
        if let Some(v) = var("PLASMA_READY_MAX_LAG") {
            layer.consistency.ready_max_lag = Some(parse_number("PLASMA_READY_MAX_LAG", &v)?);
        }
        if let Some(v) = var("PLASMA_KAFKA_BROKERS") {
            layer.log.brokers = Some(v.trim().to_owned());
        }
        if let Some(v) = var("PLASMA_SCHEMA_REGISTRY_URL") {
            layer.log.registry_url = Some(v.trim().to_owned());
        }
        if let Some(v) = var("PLASMA_TOPIC_PREFIX") {
            layer.log.topic_prefix = Some(v.trim().to_owned());
        }
        if let Some(v) = var("PLASMA_MODELS_DIR") {
            layer.research.models_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("PLASMA_EMBEDDERS") {
            layer.research.embedders = Some(match v.trim() {
                "none" => Vec::new(),
                list => list.split(',').map(|m| m.trim().to_owned()).collect(),
            });
        }
        if let Some(v) = var("PLASMA_WEBHOOK_KEY") {
            layer.alerts.webhook_key = Some(Secret::new(v));
        }
        if let Some(v) = var("PLASMA_WEBHOOK_MAX_ATTEMPTS") {
            layer.alerts.max_attempts = Some(parse_number("PLASMA_WEBHOOK_MAX_ATTEMPTS", &v)?);
        }
        if let Some(v) = var("PLASMA_WEBHOOK_RETRY_BASE") {
            layer.alerts.retry_base = Some(parse_duration("PLASMA_WEBHOOK_RETRY_BASE", &v)?);
        }
        if let Some(v) = var("PLASMA_WEBHOOK_ALLOW_PRIVATE") {
            layer.alerts.allow_private_targets = Some(match v.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                other => {
                    return Err(invalid(
                        "PLASMA_WEBHOOK_ALLOW_PRIVATE",
                        format!("`{other}` is not true or false"),
                    ))
                }
            });
        }
        if let Some(v) = var("PLASMA_WEBHOOK_TIMEOUT") {
            layer.alerts.timeout = Some(parse_duration("PLASMA_WEBHOOK_TIMEOUT", &v)?);
        }
        layer.agent.provider = var("PLASMA_LLM_PROVIDER");
        layer.agent.local_model = var("PLASMA_LOCAL_MODEL").map(PathBuf::from);
        layer.agent.openai_base_url = var("PLASMA_OPENAI_BASE_URL");
        layer.agent.openai_model = var("PLASMA_OPENAI_MODEL");
        layer.agent.openai_api_key = var("PLASMA_OPENAI_API_KEY").map(Secret::new);
        if let Some(v) = var("PLASMA_LLM_TIMEOUT") {
            layer.agent.llm_timeout = Some(parse_duration("PLASMA_LLM_TIMEOUT", &v)?);
        }
        layer.agent.checkpoint_retention = var("PLASMA_AGENT_CHECKPOINT_RETENTION");
        if let Some(v) = var("PLASMA_AGENT_CHECKPOINTS_KEPT") {
            layer.agent.checkpoints_kept = Some(parse_number("PLASMA_AGENT_CHECKPOINTS_KEPT", &v)?);
        }
        if let Some(v) = var("PLASMA_LLM_MAX_RETRIES") {
            layer.agent.llm_max_retries = Some(parse_number("PLASMA_LLM_MAX_RETRIES", &v)?);
        }
        if let Some(v) = var("PLASMA_AGENT_HTTP_ALLOWED_HOSTS") {
            layer.agent.http_allowed_hosts = Some(
                v.split(',')
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect(),
            );
        }
        layer.agent.publish_webhook_url = var("PLASMA_PUBLISH_WEBHOOK_URL");
        layer.agent.publish_secret = var("PLASMA_PUBLISH_SECRET").map(Secret::new);
        if let Some(v) = var("PLASMA_AGENT_CONCURRENCY") {
            layer.agent.concurrency = Some(parse_number("PLASMA_AGENT_CONCURRENCY", &v)?);
        }
        if let Some(v) = var("PLASMA_AGENT_LEASE") {
            layer.agent.lease = Some(parse_duration("PLASMA_AGENT_LEASE", &v)?);
        }
        if let Some(v) = var("PLASMA_PROJECTIONS") {
            layer.projections.mode = Some(
                v.trim()
                    .parse()
                    .map_err(|m| invalid("PLASMA_PROJECTIONS", m))?,
            );
        }
        Ok(layer)
    }

    /// `over`'s values win where it has them.
    pub fn merge(self, over: Self) -> Self {
        Self {
            store: StoreLayer {
                mode: over.store.mode.or(self.store.mode),
                data_dir: over.store.data_dir.or(self.store.data_dir),
                database_url: over.store.database_url.or(self.store.database_url),
                max_connections: over.store.max_connections.or(self.store.max_connections),
            },
            http: HttpLayer {
                listen: over.http.listen.or(self.http.listen),
                body_limit: over.http.body_limit.or(self.http.body_limit),
                request_timeout: over.http.request_timeout.or(self.http.request_timeout),
                drain_delay: over.http.drain_delay.or(self.http.drain_delay),
                drain_timeout: over.http.drain_timeout.or(self.http.drain_timeout),
            },
            auth: AuthLayer {
                jwt_secret: over.auth.jwt_secret.or(self.auth.jwt_secret),
                oidc_issuer: over.auth.oidc_issuer.or(self.auth.oidc_issuer),
                oidc_audience: over.auth.oidc_audience.or(self.auth.oidc_audience),
                oidc_jwks_url: over.auth.oidc_jwks_url.or(self.auth.oidc_jwks_url),
                oidc_tenant_claim: over.auth.oidc_tenant_claim.or(self.auth.oidc_tenant_claim),
                oidc_roles_claim: over.auth.oidc_roles_claim.or(self.auth.oidc_roles_claim),
                oidc_refresh_min_interval: over
                    .auth
                    .oidc_refresh_min_interval
                    .or(self.auth.oidc_refresh_min_interval),
            },
            rate_limit: RateLimitLayer {
                per_second: over.rate_limit.per_second.or(self.rate_limit.per_second),
                burst: over.rate_limit.burst.or(self.rate_limit.burst),
            },
            consistency: ConsistencyLayer {
                min_position_wait: over
                    .consistency
                    .min_position_wait
                    .or(self.consistency.min_position_wait),
                ready_max_lag: over
                    .consistency
                    .ready_max_lag
                    .or(self.consistency.ready_max_lag),
            },
            log: LogLayer {
                brokers: over.log.brokers.or(self.log.brokers),
                registry_url: over.log.registry_url.or(self.log.registry_url),
                topic_prefix: over.log.topic_prefix.or(self.log.topic_prefix),
            },
            projections: ProjectionsLayer {
                mode: over.projections.mode.or(self.projections.mode),
            },
            research: ResearchLayer {
                models_dir: over.research.models_dir.or(self.research.models_dir),
                embedders: over.research.embedders.or(self.research.embedders),
            },
            alerts: AlertsLayer {
                webhook_key: over.alerts.webhook_key.or(self.alerts.webhook_key),
                max_attempts: over.alerts.max_attempts.or(self.alerts.max_attempts),
                retry_base: over.alerts.retry_base.or(self.alerts.retry_base),
                timeout: over.alerts.timeout.or(self.alerts.timeout),
                allow_private_targets: over
                    .alerts
                    .allow_private_targets
                    .or(self.alerts.allow_private_targets),
            },
            agent: AgentLayer {
                provider: over.agent.provider.or(self.agent.provider),
                local_model: over.agent.local_model.or(self.agent.local_model),
                openai_base_url: over.agent.openai_base_url.or(self.agent.openai_base_url),
                openai_model: over.agent.openai_model.or(self.agent.openai_model),
                openai_api_key: over.agent.openai_api_key.or(self.agent.openai_api_key),
                llm_timeout: over.agent.llm_timeout.or(self.agent.llm_timeout),
                llm_max_retries: over.agent.llm_max_retries.or(self.agent.llm_max_retries),
                http_allowed_hosts: over
                    .agent
                    .http_allowed_hosts
                    .or(self.agent.http_allowed_hosts),
                publish_webhook_url: over
                    .agent
                    .publish_webhook_url
                    .or(self.agent.publish_webhook_url),
                publish_secret: over.agent.publish_secret.or(self.agent.publish_secret),
                concurrency: over.agent.concurrency.or(self.agent.concurrency),
                lease: over.agent.lease.or(self.agent.lease),
                checkpoint_retention: over
                    .agent
                    .checkpoint_retention
                    .or(self.agent.checkpoint_retention),
                checkpoints_kept: over.agent.checkpoints_kept.or(self.agent.checkpoints_kept),
            },
        }
    }
}

impl Settings {
    /// Defaults → `config_file` → environment (read through `env`) → `flags`, validated for
    /// `profile`.
    pub fn load(
        profile: Profile,
        config_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: SettingsLayer,
    ) -> Result<Self, SettingsError> {
        let mut layer = SettingsLayer::default();
        if let Some(path) = config_file {
            layer = layer.merge(SettingsLayer::from_file(path)?);
        }
        layer = layer.merge(SettingsLayer::from_env(env)?);
        Self::from_layer(layer.merge(flags), profile)
    }

    /// Fills in defaults and validates.
    pub fn from_layer(layer: SettingsLayer, profile: Profile) -> Result<Self, SettingsError> {
        let jwt_configured = layer.auth.jwt_secret.is_some();
        let (store, data_dir) = layer.store.validate(profile)?;
        let http = layer.http.validate()?;
        let auth = layer.auth.validate(profile, &data_dir)?;
        let rate_limit = layer.rate_limit.validate()?;
        let consistency = layer.consistency.validate(http.request_timeout)?;
        let log = layer.log.validate()?;
        let projections = layer.projections.mode.unwrap_or(ProjectionsMode::InProcess);
        let research = layer.research.validate()?;
        let alerts = layer.alerts.validate(
            &auth,
            jwt_configured || profile != Profile::LogTool,
            profile,
        )?;
        let agent = layer.agent.validate(&alerts, &research.models_dir)?;
        Ok(Self {
            store,
            http,
            auth,
            rate_limit,
            consistency,
            log,
            projections,
            research,
            alerts,
            agent,
        })
    }
}

// Each component validates its own layer; `Settings::from_layer` only assembles them.

impl StoreLayer {
    /// The store, and the data dir (where the dev secret lives even in server mode).
    fn validate(&self, profile: Profile) -> Result<(StoreSettings, PathBuf), SettingsError> {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mode = match profile {
            Profile::Dev => Mode::Embedded,
            Profile::Serve | Profile::Token | Profile::LogTool => {
                self.mode.unwrap_or(if self.database_url.is_some() {
                    Mode::Server
                } else {
                    Mode::Embedded
                })
            }
        };
        let store = match mode {
            Mode::Embedded => StoreSettings::Embedded {
                data_dir: data_dir.clone(),
            },
            Mode::Server => {
                let database_url = self.database_url.clone().ok_or(SettingsError::Missing {
                    key: "store.database_url (PLASMA_DATABASE_URL, --database-url)",
                    hint: "server mode needs a PostgreSQL URL",
                })?;
                let url = database_url.expose();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    // The URL is a secret: say what is wrong without echoing it.
                    return Err(invalid(
                        "store.database_url (PLASMA_DATABASE_URL, --database-url)",
                        "expected a postgres:// or postgresql:// URL",
                    ));
                }
                let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
                if !(1..=1000).contains(&max_connections) {
                    return Err(invalid(
                        "store.max_connections (PLASMA_DATABASE_MAX_CONNECTIONS)",
                        format!("{max_connections} is out of range 1..=1000"),
                    ));
                }
                StoreSettings::Server {
                    database_url,
                    max_connections,
                }
            }
        };

        Ok((store, data_dir))
    }
}

impl HttpLayer {
    fn validate(&self) -> Result<HttpSettings, SettingsError> {
        let listen = match self.listen {
            Some(listen) => listen,
            None => parse_listen("http.listen", DEFAULT_LISTEN)?,
        };
        let body_limit = self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        if !(1024..=1024 * 1024 * 1024).contains(&body_limit) {
            return Err(invalid(
                "http.body_limit (PLASMA_BODY_LIMIT)",
                format!("{body_limit} bytes is out of range 1KiB..=1GiB"),
            ));
        }
        let request_timeout = self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if request_timeout < Duration::from_millis(100)
            || request_timeout > Duration::from_secs(3600)
        {
            return Err(invalid(
                "http.request_timeout (PLASMA_REQUEST_TIMEOUT)",
                "must be between 100ms and 1h",
            ));
        }
        let drain_delay = self.drain_delay.unwrap_or(Duration::ZERO);
        if drain_delay > Duration::from_secs(600) {
            return Err(invalid(
                "http.drain_delay (PLASMA_DRAIN_DELAY)",
                "must be at most 10m",
            ));
        }
        // In-flight requests end within the request timeout anyway; waiting longer is pointless.
        let drain_timeout = self.drain_timeout.unwrap_or(request_timeout);
        if drain_timeout > Duration::from_secs(3600) {
            return Err(invalid(
                "http.drain_timeout (PLASMA_DRAIN_TIMEOUT)",
                "must be at most 1h",
            ));
        }

        Ok(HttpSettings {
            listen,
            body_limit,
            request_timeout,
            drain_delay,
            drain_timeout,
        })
    }
}

impl AuthLayer {
    fn validate(self, profile: Profile, data_dir: &Path) -> Result<AuthSettings, SettingsError> {
        if let Some(issuer) = self.oidc_issuer {
            return Ok(AuthSettings {
                jwt: JwtKey::Oidc(oidc_settings(
                    issuer,
                    self.oidc_audience,
                    self.oidc_jwks_url,
                    self.oidc_tenant_claim,
                    self.oidc_roles_claim,
                    self.oidc_refresh_min_interval,
                )?),
            });
        }
        let secret = match (self.jwt_secret, profile) {
            (Some(secret), _) => secret,
            (None, Profile::Dev | Profile::Token) => dev_secret(data_dir)?,
            // Never verifies anything: these processes serve no API.
            (None, Profile::LogTool) => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
            (None, Profile::Serve) => {
                return Err(SettingsError::Missing {
                    key: "auth.jwt_secret (PLASMA_JWT_SECRET)",
                    hint: "plasma serve needs the HS256 secret its tokens are signed with",
                })
            }
        };
        if secret.expose().len() < MIN_SECRET_BYTES {
            return Err(invalid(
                "auth.jwt_secret (PLASMA_JWT_SECRET)",
                format!("must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }

        Ok(AuthSettings {
            jwt: JwtKey::Hs256(secret),
        })
    }
}

fn oidc_settings(
    issuer: String,
    audience: Option<String>,
    jwks_url: Option<String>,
    tenant_claim: Option<String>,
    roles_claim: Option<String>,
    refresh_min_interval: Option<Duration>,
) -> Result<OidcSettings, SettingsError> {
    let http_url = |key: &'static str, value: &str| {
        if value.starts_with("https://") || value.starts_with("http://") {
            Ok(())
        } else {
            Err(invalid(key, "must be an http(s) URL"))
        }
    };
    http_url("auth.oidc_issuer (PLASMA_OIDC_ISSUER)", &issuer)?;
    if let Some(url) = &jwks_url {
        http_url("auth.oidc_jwks_url (PLASMA_OIDC_JWKS_URL)", url)?;
    }
    let audience = audience
        .filter(|a| !a.trim().is_empty())
        .ok_or(SettingsError::Missing {
            key: "auth.oidc_audience (PLASMA_OIDC_AUDIENCE)",
            hint: "tokens are accepted only when their `aud` names this API",
        })?;
    let claim = |key: &'static str, value: Option<String>, default: &str| {
        let value = value.unwrap_or_else(|| default.to_owned());
        if value.is_empty() || value.split('.').any(str::is_empty) {
            Err(invalid(
                key,
                "must be a claim name or a dotted path such as realm_access.roles",
            ))
        } else {
            Ok(value)
        }
    };
    let refresh_min_interval = refresh_min_interval.unwrap_or(Duration::from_secs(30));
    if refresh_min_interval > Duration::from_secs(3600) {
        return Err(invalid(
            "auth.oidc_refresh_min_interval (PLASMA_OIDC_REFRESH_MIN_INTERVAL)",
            "must be at most 1h",
        ));
    }
    Ok(OidcSettings {
        issuer,
        audience,
        jwks_url,
        tenant_claim: claim(
            "auth.oidc_tenant_claim (PLASMA_OIDC_TENANT_CLAIM)",
            tenant_claim,
            "tenant",
        )?,
        roles_claim: claim(
            "auth.oidc_roles_claim (PLASMA_OIDC_ROLES_CLAIM)",
            roles_claim,
            "roles",
        )?,
        refresh_min_interval,
        max_key_age: Duration::from_secs(15 * 60),
        fetch_timeout: Duration::from_secs(5),
    })
}

impl RateLimitLayer {
    fn validate(&self) -> Result<RateLimitSettings, SettingsError> {
        let per_second = self.per_second.unwrap_or(DEFAULT_RATE_PER_SECOND);
        let burst = self.burst.unwrap_or(DEFAULT_RATE_BURST);
        if per_second > 0 && burst == 0 {
            return Err(invalid(
                "rate_limit.burst (PLASMA_RATE_LIMIT_BURST)",
                "must be at least 1 while rate limiting is on (per_second > 0)",
            ));
        }

        Ok(RateLimitSettings { per_second, burst })
    }
}

impl ConsistencyLayer {
    fn validate(&self, request_timeout: Duration) -> Result<ConsistencySettings, SettingsError> {
        let min_position_wait = self.min_position_wait.unwrap_or(DEFAULT_MIN_POSITION_WAIT);
        if min_position_wait > Duration::from_secs(60) {
            return Err(invalid(
                "consistency.min_position_wait (PLASMA_MIN_POSITION_WAIT)",
                "must be at most 60s",
            ));
        }
        if min_position_wait >= request_timeout {
            return Err(invalid(
                "consistency.min_position_wait (PLASMA_MIN_POSITION_WAIT)",
                "must be shorter than http.request_timeout",
            ));
        }
        let ready_max_lag = self.ready_max_lag.unwrap_or(DEFAULT_READY_MAX_LAG);

        Ok(ConsistencySettings {
            min_position_wait,
            ready_max_lag,
        })
    }
}

impl ResearchLayer {
    fn validate(self) -> Result<ResearchSettings, SettingsError> {
        let models_dir = match self.models_dir {
            Some(dir) => dir,
            None => default_models_dir(),
        };
        let names = self
            .embedders
            .unwrap_or_else(|| vec![KnownModel::MiniLm.name().to_owned()]);
        let mut embedders = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            let model = KnownModel::parse(name).ok_or_else(|| {
                let known: Vec<&str> = KnownModel::ALL.iter().map(|m| m.name()).collect();
                invalid(
                    "research.embedders (PLASMA_EMBEDDERS)",
                    format!("`{name}` is not a model: use {} or none", known.join(", ")),
                )
            })?;
            if !embedders.contains(&model) {
                embedders.push(model);
            }
        }
        Ok(ResearchSettings {
            models_dir,
            embedders,
        })
    }
}

impl LogLayer {
    fn validate(self) -> Result<Option<LogConfig>, SettingsError> {
        let log = match (self.brokers, self.registry_url) {
            (None, None) => None,
            (Some(brokers), Some(registry_url)) => {
                if brokers.is_empty() {
                    return Err(invalid("log.brokers (PLASMA_KAFKA_BROKERS)", "is empty"));
                }
                if !(registry_url.starts_with("http://") || registry_url.starts_with("https://")) {
                    return Err(invalid(
                        "log.registry_url (PLASMA_SCHEMA_REGISTRY_URL)",
                        "expected an http:// or https:// URL",
                    ));
                }
                let topic_prefix = self.topic_prefix.unwrap_or_else(|| "plasma".to_owned());
                if topic_prefix.is_empty()
                    || !topic_prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    return Err(invalid(
                        "log.topic_prefix (PLASMA_TOPIC_PREFIX)",
                        "use letters, digits, '.', '_' or '-'",
                    ));
                }
                Some(LogConfig {
                    brokers,
                    registry_url,
                    topic_prefix,
                })
            }
            (None, Some(_)) => {
                return Err(SettingsError::Missing {
                    key: "log.brokers (PLASMA_KAFKA_BROKERS)",
                    hint: "a schema registry is configured but no brokers",
                })
            }
            (Some(_), None) => {
                return Err(SettingsError::Missing {
                    key: "log.registry_url (PLASMA_SCHEMA_REGISTRY_URL)",
                    hint: "brokers are configured but no schema registry",
                })
            }
        };
        Ok(log)
    }
}

/// The data dir's dev signing secret, created (random, owner-only) on first use, so dev tokens
/// keep working across restarts of `plasma dev`.
pub fn dev_secret(data_dir: &Path) -> Result<Secret, SettingsError> {
    let path = data_dir.join(DEV_SECRET_FILE);
    let error = |source| SettingsError::DevSecret {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(error)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(hex.as_bytes()).map_err(error)?;
            file.sync_all().map_err(error)?;
            Ok(Secret::new(hex))
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(error)?;
            Ok(Secret::new(text.trim()))
        }
        Err(err) => Err(error(err)),
    }
}

fn parse_number<T: FromStr>(key: &str, value: &str) -> Result<T, SettingsError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|err| invalid(key, format!("`{}`: {err}", value.trim())))
}

fn parse_listen(key: &str, value: &str) -> Result<SocketAddr, SettingsError> {
    value.trim().parse().map_err(|_| {
        invalid(
            key,
            format!("`{}` is not an address like 127.0.0.1:8080", value.trim()),
        )
    })
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, SettingsError> {
    humantime::parse_duration(value.trim()).map_err(|err| {
        invalid(
            key,
            format!("`{}`: {err} (try 2s, 500ms, 1m)", value.trim()),
        )
    })
}

/// A byte size: a number of bytes, or a number with B, KB, MB, GB (powers of 1000) or KiB,
/// MiB, GiB (powers of 1024).
pub fn parse_bytes(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{value}` is not a size like 16MiB or 1048576"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1024,
        "mib" => 1024 * 1024,
        "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit `{other}`: use B, KiB, MiB, GiB")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{value}` is too large"))
}

fn opt_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let raw: Option<String> = Option::deserialize(de)?;
    raw.map(|s| {
        humantime::parse_duration(s.trim())
            .map_err(|err| serde::de::Error::custom(format!("`{s}`: {err} (try 2s, 500ms, 1m)")))
    })
    .transpose()
}

fn opt_bytes<'de, D: Deserializer<'de>>(de: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Option::<Size>::deserialize(de)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn with_secret() -> SettingsLayer {
        SettingsLayer {
            auth: AuthLayer {
                jwt_secret: Some(Secret::new(SECRET)),
                ..AuthLayer::default()
            },
            ..SettingsLayer::default()
        }
    }

    #[test]
    fn defaults_give_an_embedded_store_on_localhost_8080() {
        let settings = Settings::load(Profile::Serve, None, env(&[]), with_secret()).unwrap();
        assert!(
            matches!(&settings.store, StoreSettings::Embedded { data_dir } if data_dir == Path::new(".plasma"))
        );
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.http.body_limit, 16 * 1024 * 1024);
        assert_eq!(
            settings.consistency.min_position_wait,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plasma.toml");
        std::fs::write(
            &file,
            "[http]\nlisten = \"127.0.0.1:1111\"\nrequest_timeout = \"5s\"\nbody_limit = \"1MiB\"\n",
        )
        .unwrap();
        let vars = env(&[("PLASMA_LISTEN", "127.0.0.1:2222")]);
        let settings = Settings::load(Profile::Serve, Some(&file), &vars, with_secret()).unwrap();
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:2222");
        assert_eq!(settings.http.request_timeout, Duration::from_secs(5));
        assert_eq!(settings.http.body_limit, 1024 * 1024);

        let mut flags = with_secret();
        flags.http.listen = Some("127.0.0.1:3333".parse().unwrap());
        let settings = Settings::load(Profile::Serve, Some(&file), &vars, flags).unwrap();
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:3333");
    }

    #[test]
    fn a_json_config_file_works_too_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("plasma.json");
        std::fs::write(&good, r#"{"rate_limit": {"per_second": 5, "burst": 7}}"#).unwrap();
        let settings =
            Settings::load(Profile::Serve, Some(&good), env(&[]), with_secret()).unwrap();
        assert_eq!(
            settings.rate_limit,
            RateLimitSettings {
                per_second: 5,
                burst: 7
            }
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[http]\nlisten_on = \"x\"\n").unwrap();
        let err = Settings::load(Profile::Serve, Some(&bad), env(&[]), with_secret()).unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn checkpoint_retention_defaults_to_a_week_and_can_be_turned_off() {
        let load =
            |vars: &[(&str, &str)]| Settings::load(Profile::Serve, None, env(vars), with_secret());
        let settings = load(&[]).unwrap();
        assert_eq!(
            settings.agent.checkpoint_retention,
            Some(Duration::from_secs(7 * 24 * 3600))
        );
        assert_eq!(settings.agent.checkpoints_kept, 1);
        let settings = load(&[
            ("PLASMA_AGENT_CHECKPOINT_RETENTION", "36h"),
            ("PLASMA_AGENT_CHECKPOINTS_KEPT", "3"),
        ])
        .unwrap();
        assert_eq!(
            settings.agent.checkpoint_retention,
            Some(Duration::from_secs(36 * 3600))
        );
        assert_eq!(settings.agent.checkpoints_kept, 3);
        let off = load(&[("PLASMA_AGENT_CHECKPOINT_RETENTION", "off")]).unwrap();
        assert_eq!(off.agent.checkpoint_retention, None);
        for (key, value) in [
            ("PLASMA_AGENT_CHECKPOINT_RETENTION", "soon"),
            ("PLASMA_AGENT_CHECKPOINTS_KEPT", "0"),
        ] {
            let err = load(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn a_database_url_selects_server_mode_and_is_never_printed() {
        let vars = env(&[("PLASMA_DATABASE_URL", "postgres://u:hunter2@db/plasma")]);
        let settings = Settings::load(Profile::Serve, None, vars, with_secret()).unwrap();
        assert!(matches!(settings.store, StoreSettings::Server { .. }));
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(!format!("{settings:?}").contains(SECRET));
    }

    #[test]
    fn server_mode_without_a_database_url_is_refused_with_the_setting_named() {
        let vars = env(&[("PLASMA_MODE", "server")]);
        let err = Settings::load(Profile::Serve, None, vars, with_secret()).unwrap_err();
        assert!(err.to_string().contains("PLASMA_DATABASE_URL"), "{err}");
    }

    #[test]
    fn serve_refuses_to_start_without_a_secret_and_with_a_short_one() {
        let err =
            Settings::load(Profile::Serve, None, env(&[]), SettingsLayer::default()).unwrap_err();
        assert!(err.to_string().contains("PLASMA_JWT_SECRET"), "{err}");
        let err = Settings::load(
            Profile::Serve,
            None,
            env(&[("PLASMA_JWT_SECRET", "short")]),
            SettingsLayer::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let err = Settings::load(
            Profile::Serve,
            None,
            env(&[("PLASMA_REQUEST_TIMEOUT", "soon")]),
            with_secret(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("PLASMA_REQUEST_TIMEOUT"), "{err}");
    }

    #[test]
    fn dev_generates_a_secret_once_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut flags = SettingsLayer::default();
        flags.store.data_dir = Some(dir.path().to_owned());
        let first = Settings::load(Profile::Dev, None, env(&[]), flags.clone()).unwrap();
        let second = Settings::load(Profile::Token, None, env(&[]), flags).unwrap();
        let (JwtKey::Hs256(a), JwtKey::Hs256(b)) = (first.auth.jwt, second.auth.jwt) else {
            panic!("dev and token use the HS256 dev secret");
        };
        assert_eq!(a, b);
        assert!(a.expose().len() >= 32);
    }

    #[test]
    fn embedders_default_to_minilm_can_be_listed_or_turned_off_and_unknown_ones_are_refused() {
        let settings = Settings::load(Profile::Serve, None, env(&[]), with_secret()).unwrap();
        assert_eq!(settings.research.embedders, vec![KnownModel::MiniLm]);
        let vars = env(&[(
            "PLASMA_EMBEDDERS",
            "wordllama-l2-supercat-256, all-MiniLM-L6-v2",
        )]);
        let settings = Settings::load(Profile::Serve, None, vars, with_secret()).unwrap();
        assert_eq!(
            settings.research.embedders,
            vec![KnownModel::WordLlama, KnownModel::MiniLm]
        );
        let vars = env(&[("PLASMA_EMBEDDERS", "none")]);
        let settings = Settings::load(Profile::Serve, None, vars, with_secret()).unwrap();
        assert!(settings.research.embedders.is_empty());
        let vars = env(&[("PLASMA_EMBEDDERS", "gpt-embed")]);
        let err = Settings::load(Profile::Serve, None, vars, with_secret()).unwrap_err();
        assert!(err.to_string().contains("PLASMA_EMBEDDERS"), "{err}");
        assert!(err.to_string().contains("gpt-embed"), "{err}");
    }

    #[test]
    fn sizes_accept_plain_bytes_and_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_bytes("2 KB"), Ok(2000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
