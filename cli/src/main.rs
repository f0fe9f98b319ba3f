//! `plasma`: parses the command line, builds the settings, wires the components and runs them
//! under one shutdown signal (ctrl-c or SIGTERM), then reports how each ended.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use plasma_cli::args::{self, Cli, Command};
use plasma_cli::demo::{DemoOutcome, DEMO_TENANT};
use plasma_cli::settings::StoreSettings;
use plasma_cli::supervisor::shutdown_signal;
use plasma_cli::{log, Application, Profile, Settings};
use plasma_domain::TenantId;
use plasma_gateway::{Role, TokenIssuer};

/// Large, short-lived buffers (a model's activations) are reused instead of being mapped and
/// unmapped on every tensor, as glibc's allocator does above its mmap threshold.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the token `plasma dev` prints stays valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Dev(_) | Command::Serve(_) => "info,sqlx=warn",
        Command::Migrate(_) => "info,sqlx=warn",
        Command::Relay(_)
        | Command::Project(_)
        | Command::Embed(_)
        | Command::Alerts(_)
        | Command::Extract(_)
        | Command::Agent(_)
        | Command::Communities(_)
        | Command::Replay(_) => "info,sqlx=warn,rdkafka=warn",
        Command::Token(_)
        | Command::Mcp(_)
        | Command::Bench(_)
        | Command::Openapi
        | Command::Tail(_)
        | Command::Graph(_)
        | Command::Schemas(_)
        | Command::Topics(_) => "warn",
    };
    let component = match &cli.command {
        Command::Dev(_) => "dev",
        Command::Serve(_) => "gateway",
        Command::Relay(_) => "relay",
        Command::Project(_) => "projector",
        Command::Embed(_) => "embedder",
        Command::Alerts(_) => "alerts",
        Command::Extract(_) => "extractor",
        Command::Agent(_) => "agent",
        Command::Communities(_) => "communities",
        Command::Replay(_) => "replay",
        _ => "cli",
    };
    let telemetry = plasma_cli::telemetry::init(component, default_log);
    let result = match cli.command {
        Command::Dev(args) => dev(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Token(args) => token(args),
        Command::Mcp(args) => mcp(args).await,
        Command::Bench(bench) => plasma_bench::run(bench).await,
        Command::Openapi => openapi(),
        Command::Migrate(args) => log::migrate(args).await,
        Command::Relay(args) => log::relay(args).await,
        Command::Project(args) => log::project(args).await,
        Command::Embed(args) => log::embed(args).await,
        Command::Alerts(args) => log::alerts(args).await,
        Command::Extract(args) => log::extract(args).await,
        Command::Agent(args) => log::agent(args).await,
        Command::Communities(args) => log::communities(args).await,
        Command::Graph(command) => plasma_cli::graph::run(command).await,
        Command::Replay(args) => log::replay(args).await,
        Command::Tail(args) => log::tail(args).await,
        Command::Schemas(command) => log::schemas(command).await,
        Command::Topics(command) => log::topics(command).await,
    };
    telemetry.shutdown().await;
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("plasma: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn dev(args: args::DevArgs) -> Result<ExitCode> {
    let settings = Settings::load(
        Profile::Dev,
        args.config.config.as_deref(),
        env,
        args.layer(),
    )?;
    let data_dir = match &settings.store {
        StoreSettings::Embedded { data_dir } => data_dir.display().to_string(),
        StoreSettings::Server { .. } => "(server)".to_owned(),
    };
    let app = Application::build(settings).await?;
    let tenant = TenantId::parse(DEMO_TENANT)?;
    if args.demo {
        eprintln!("loading the demo data set into tenant `{DEMO_TENANT}`…");
        match app.load_demo(&tenant).await? {
            DemoOutcome::Loaded(summary) => eprintln!(
                "demo loaded: {} brands, {} mentions (spike on {}), {} drafts, {} agent runs, {} documents; up to position {}",
                summary.brands.len(),
                summary.mentions,
                summary.spike.day,
                summary.drafts,
                summary.agent_runs,
                summary.documents,
                summary.last_position
            ),
            DemoOutcome::Skipped { head } => eprintln!(
                "demo not loaded: the store already holds {head} events (use a fresh --data-dir)"
            ),
        }
    }
    let token = app
        .token_issuer()
        .context("plasma dev signs its own tokens: unset PLASMA_OIDC_ISSUER")?
        .issue(
            "dev",
            &tenant,
            &[Role::Admin],
            DEV_TOKEN_TTL,
            chrono::Utc::now(),
        )
        .context("signing the dev token")?;
    let url = format!("http://{}", app.local_addr());
    println!("Plasma Engine dev server, embedded store in {data_dir}");
    println!("  API      {url}/v1");
    println!("  health   {url}/health   ready {url}/ready   metrics {url}/metrics");
    println!("  token    admin of tenant `{DEMO_TENANT}`, valid 30 days:");
    println!();
    println!("export PLASMA_TOKEN={token}");
    println!("curl -H \"Authorization: Bearer $PLASMA_TOKEN\" {url}/v1/brands");
    if args.demo {
        println!("curl -H \"Authorization: Bearer $PLASMA_TOKEN\" {url}/v1/alerts   # the demo's spike, with its evidence");
    }
    println!();
    run(app).await
}

async fn serve(args: args::ServeArgs) -> Result<ExitCode> {
    let settings = Settings::load(
        Profile::Serve,
        args.config.config.as_deref(),
        env,
        args.layer(),
    )?;
    let app = Application::build(settings).await?;
    eprintln!("plasma serving on http://{}", app.local_addr());
    run(app).await
}

fn token(args: args::TokenArgs) -> Result<ExitCode> {
    let settings = Settings::load(
        Profile::Token,
        args.config.config.as_deref(),
        env,
        args.layer(),
    )?;
    let tenant = TenantId::parse(&args.tenant)?;
    let token = TokenIssuer::new(&settings.auth.jwt)
        .context("with an OIDC issuer configured, tokens come from the issuer, not from plasma")?
        .issue(
            &args.subject,
            &tenant,
            &args.roles,
            args.ttl,
            chrono::Utc::now(),
        )
        .context("signing the token")?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// `plasma mcp`: the tool registry on stdio for an MCP client that starts it (Claude Desktop,
/// an IDE, the MCP SDKs), acting as the token's tenant with its roles. It opens the same store
/// as `plasma dev` / `plasma serve` would.
async fn mcp(args: args::McpArgs) -> Result<ExitCode> {
    let settings = Settings::load(
        Profile::Token,
        args.config.config.as_deref(),
        env,
        args.layer(),
    )?;
    let principal = plasma_gateway::TokenVerifier::new(&settings.auth.jwt)
        .verify(args.token.trim())
        .await
        .context("the token was refused")?;
    let (store_config, read_path) = match &settings.store {
        StoreSettings::Embedded { data_dir } => (
            plasma_commands::StoreConfig::Sqlite {
                path: data_dir.join(plasma_cli::app::EVENTS_DB),
            },
            data_dir.join(plasma_cli::app::READ_DB),
        ),
        StoreSettings::Server {
            database_url,
            max_connections,
        } => (
            plasma_commands::StoreConfig::Postgres {
                url: database_url.expose().to_owned(),
                max_connections: *max_connections,
            },
            std::path::PathBuf::new(),
        ),
    };
    let store = plasma_commands::EventStore::open(&store_config)
        .await
        .context("opening the event store")?;
    let read = plasma_projections::ReadStore::open(&plasma_projections::ReadStoreConfig::beside(
        &store, read_path,
    ))
    .await
    .context("opening the read store")?;
    let tools = plasma_cli::app::tool_box(
        &settings.agent,
        &plasma_commands::CommandHandler::new(store),
        plasma_projections::ReadModels::new(read),
    )?;
    eprintln!(
        "plasma mcp: serving {} tools on stdio for tenant {}",
        plasma_domain::agent::tools::all().len(),
        principal.tenant
    );
    let server = plasma_gateway::mcp::McpServer::new(
        std::sync::Arc::new(plasma_cli::app::DirectTools(tools)),
        Some(principal),
    );
    plasma_gateway::mcp::serve_stdio(server).await?;
    Ok(ExitCode::SUCCESS)
}

fn openapi() -> Result<ExitCode> {
    let document = plasma_gateway::routes::openapi_document()
        .to_pretty_json()
        .context("encoding the OpenAPI document")?;
    println!("{document}");
    Ok(ExitCode::SUCCESS)
}

/// Serves until ctrl-c or SIGTERM and reports each component's end.
async fn run(app: Application) -> Result<ExitCode> {
    let report = app.run_until_stopped(shutdown_signal()).await;
    for (component, outcome) in &report.components {
        eprintln!("{component}: {outcome}");
    }
    Ok(if report.all_stopped_cleanly() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
