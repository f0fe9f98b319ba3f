//! `plasma`: one binary, one subcommand per way of running Plasma Engine.

use clap::{Parser, Subcommand};

mod cli;

#[derive(Debug, Parser)]
#[command(
    name = "plasma",
    version,
    about = "Plasma Engine: event-sourced marketing and research backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the platform on this machine.
    #[command(subcommand)]
    Bench(cli::bench::Bench),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLASMA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Bench(bench) => cli::bench::run(bench).await,
    }
}
