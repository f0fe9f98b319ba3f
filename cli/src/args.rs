//! The `plasma` command line: one subcommand per way of running Plasma Engine. Flags become the
//! last settings layer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use plasma_gateway::{Role, Secret};

use crate::log;
use crate::settings::{SettingsLayer, StoreLayer};

#[derive(Debug, Parser)]
#[command(
    name = "plasma",
    version,
    about = "Plasma Engine: event-sourced marketing and research backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway on an embedded store (SQLite files in a data dir) and print a dev token.
    Dev(DevArgs),
    /// Run the gateway; with --database-url (or PLASMA_DATABASE_URL) on PostgreSQL.
    Serve(ServeArgs),
    /// Print a token signed with the configured secret (or the data dir's dev secret).
    Token(TokenArgs),
    /// Measure the platform on this machine.
    #[command(subcommand)]
    Bench(plasma_bench::Bench),
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
    /// Bring the PostgreSQL schema up to this release (event store, read models) and exit.
    Migrate(log::MigrateArgs),
    /// Publish committed events from the PostgreSQL event store to the topics (server mode).
    Relay(log::RelayArgs),
    /// Maintain one read model from the topics, as a member of its consumer group.
    Project(log::ProjectArgs),
    /// Embed chunked documents with one model, from the topics, as a member of its consumer group.
    Embed(log::EmbedArgs),
    /// Detect brand alerts and deliver their webhooks, from the topics (server mode).
    Alerts(log::AlertsArgs),
    /// Extract the entities of chunked documents, from the topics (server mode).
    Extract(log::ExtractArgs),
    /// Serve the tool registry over MCP on stdin/stdout, as the token's tenant and roles.
    Mcp(McpArgs),
    /// Execute agent workflow runs: follow the agent topic, claim due runs, drive them.
    Agent(log::AgentArgs),
    /// Compute the knowledge graph's communities whenever a tenant's graph changes.
    Communities(log::CommunitiesArgs),
    /// The knowledge graph: export a tenant's graph as GraphML or Cypher.
    #[command(subcommand)]
    Graph(crate::graph::GraphCommand),
    /// Rebuild a read model from the topics (or the event store) and swap it in.
    Replay(log::ReplayArgs),
    /// Print a topic's events as JSON lines, decoded through the schema registry.
    Tail(log::TailArgs),
    /// The Avro event contract: register it, check it, document it.
    #[command(subcommand)]
    Schemas(log::SchemasCommand),
    /// Create the event topics.
    #[command(subcommand)]
    Topics(log::TopicsCommand),
}

/// Where settings come from besides flags.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A TOML or JSON settings file; PLASMA_* variables and flags override it.
    #[arg(long, env = "PLASMA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where events.db, read.db and the dev secret live [default: ./.plasma].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Load the demo data set first (only into an empty store).
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// PostgreSQL URL (server mode). Prefer PLASMA_DATABASE_URL: flags show up in `ps`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Data dir for embedded mode, when no database URL is set.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The tenant the token acts on.
    #[arg(long)]
    pub tenant: String,
    /// A role: admin, editor, viewer or auditor (repeat for several).
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// How long the token is valid, e.g. 24h, 30d.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Who the token is for (its `sub` claim).
    #[arg(long, default_value = "dev")]
    pub subject: String,
    /// The data dir whose dev secret signs the token when no secret is configured.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value)
        .ok_or_else(|| format!("`{value}` is not a role: admin, editor, viewer, auditor"))
}

impl DevArgs {
    pub fn layer(&self) -> SettingsLayer {
        let mut layer = SettingsLayer::default();
        layer.store.data_dir = self.data_dir.clone();
        layer.http.listen = self.listen;
        layer
    }
}

impl ServeArgs {
    pub fn layer(&self) -> SettingsLayer {
        let mut layer = SettingsLayer {
            store: StoreLayer {
                data_dir: self.data_dir.clone(),
                database_url: self.database_url.clone().map(Secret::new),
                ..StoreLayer::default()
            },
            ..SettingsLayer::default()
        };
        layer.http.listen = self.listen;
        layer
    }
}

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A token (from `plasma token` or the issuer) whose tenant and roles the calls act with.
    #[arg(long, env = "PLASMA_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The embedded store's data dir, when no database URL is set [default: ./.plasma].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL. Prefer PLASMA_DATABASE_URL: flags show up in `ps`.
    #[arg(long)]
    pub database_url: Option<String>,
}

impl McpArgs {
    pub fn layer(&self) -> SettingsLayer {
        let mut layer = SettingsLayer::default();
        layer.store.data_dir = self.data_dir.clone();
        layer.store.database_url = self.database_url.clone().map(Secret::new);
        layer
    }
}

impl TokenArgs {
    pub fn layer(&self) -> SettingsLayer {
        let mut layer = SettingsLayer::default();
        layer.store.data_dir = self.data_dir.clone();
        layer
    }
}
