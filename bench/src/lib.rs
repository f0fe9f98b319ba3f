//! `plasma bench …`: measurements of the platform on this machine, each next to a ceiling or a
//! peer measured in the same run (ratios, since absolute times here are noisy).
//!
//! - [`ingest`]: bulk mention ingest and projection catch-up on both stores, next to stock
//!   postgres-es and a raw COPY.
//! - [`log`]: the relay and a log-fed projection next to the broker's own produce and consume
//!   ceilings, and the end-to-end lag at a steady rate.
//! - [`embed`]: embedding throughput per model, and all-MiniLM-L6-v2's achieved FLOP rate.
//! - [`alerts`]: the alert detector's throughput next to plain projections, its latency to a
//!   webhook at a steady rate, and its precision and recall per method.
//! - [`agent`]: the durable workflow runtime's steps/s and step latency on PostgreSQL (LangGraph
//!   is its peer in scripts/bench-agent.sh), and drafting workflows end to end.
//! - [`llm`]: the in-process text model next to llama.cpp, and its drafts' quality.
//! - [`search`]: research search quality on a labelled set, and HNSW recall and HTTP latency
//!   over ≥ 100,000 chunks.

pub mod agent;
pub mod alerts;
pub mod embed;
pub mod graph;
pub mod ingest;
pub mod llm;
pub mod log;
pub mod mentions;
pub mod search;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Bulk mention ingest and projection catch-up.
    Ingest(ingest::IngestArgs),
    /// The log path: relay and log-fed projection next to the broker's ceilings, and the
    /// end-to-end lag at a steady rate (needs PostgreSQL, a broker and a registry).
    Log(log::LogBenchArgs),
    /// Embedding throughput of each model, and MiniLM's achieved floating-point rate.
    Embed(embed::EmbedBenchArgs),
    /// Research search: quality on a labelled set; recall and latency at scale (needs a
    /// running plasma; see scripts/bench-search.sh).
    Search(search::SearchBenchArgs),
    /// The knowledge graph: search quality per mode on the FAQ and multi-hop sets, latency,
    /// extraction and graph-update throughput, Leiden next to leidenalg.
    Graph(graph::GraphBenchArgs),
    /// Brand alerts: detector throughput, latency to the webhook, detection quality.
    Alerts(alerts::AlertsBenchArgs),
    /// The agent runtime: steps/s and step latency of a no-op workflow, drafts/s end to end
    /// (needs PostgreSQL; see scripts/bench-agent.sh for LangGraph next to it).
    Agent(agent::AgentBenchArgs),
    /// The in-process text model next to llama.cpp (tokens/s, memory) and its drafts' quality
    /// next to the templates' (see scripts/bench-llm.sh).
    Llm(llm::LlmBenchArgs),
}

pub async fn run(bench: Bench) -> Result<ExitCode> {
    match bench {
        Bench::Ingest(args) => ingest::ingest(args).await?,
        Bench::Log(args) => log::log(args).await?,
        Bench::Embed(args) => embed::embed(args).await?,
        Bench::Search(args) => search::search(args).await?,
        Bench::Alerts(args) => alerts::alerts(args).await?,
        Bench::Graph(args) => graph::graph(args).await?,
        Bench::Agent(args) => agent::agent(args).await?,
        Bench::Llm(args) => llm::llm(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
