//! `plasma graph export`: a tenant's knowledge graph as GraphML (Gephi, yEd, NetworkX) or as
//! Cypher statements (Neo4j), from the graph read model of either store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};
use plasma_commands::{EventStore, StoreConfig};
use plasma_domain::TenantId;
use plasma_projections::{GraphSnapshot, ReadModels, ReadStore, ReadStoreConfig};

use crate::app::{EVENTS_DB, READ_DB};

#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Write one tenant's graph to stdout (or --output).
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Graphml,
    Cypher,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The tenant whose graph to export.
    #[arg(long)]
    pub tenant: String,
    #[arg(long, value_enum, default_value = "graphml")]
    pub format: Format,
    /// The embedded store's data dir; ignored when PLASMA_DATABASE_URL (or --database-url)
    /// names a PostgreSQL store.
    #[arg(long, default_value = "./.plasma")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL. Prefer PLASMA_DATABASE_URL: flags show up in `ps`.
    #[arg(long, env = "PLASMA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Write here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub async fn run(command: GraphCommand) -> Result<ExitCode> {
    match command {
        GraphCommand::Export(args) => export(args).await,
    }
}

async fn export(args: ExportArgs) -> Result<ExitCode> {
    let tenant = TenantId::parse(&args.tenant)
        .map_err(|e| anyhow::anyhow!("`{}` is not a tenant: {e}", args.tenant))?;
    let (store_config, read_path) = match &args.database_url {
        Some(url) => (
            StoreConfig::Postgres {
                url: url.clone(),
                max_connections: 2,
            },
            PathBuf::new(),
        ),
        None => {
            let events = args.data_dir.join(EVENTS_DB);
            anyhow::ensure!(
                events.exists(),
                "no embedded store at {} (run `plasma dev` first, or pass --data-dir)",
                args.data_dir.display()
            );
            (
                StoreConfig::Sqlite { path: events },
                args.data_dir.join(READ_DB),
            )
        }
    };
    let store = EventStore::open(&store_config)
        .await
        .context("opening the event store")?;
    let read = ReadStore::open(&ReadStoreConfig::beside(&store, read_path))
        .await
        .context("opening the read store")?;
    let graph = ReadModels::new(read)
        .graph(&tenant)
        .await
        .context("reading the graph")?;
    let text = match args.format {
        Format::Graphml => graphml(&graph),
        Format::Cypher => cypher(&graph),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing to stdout")?,
    }
    eprintln!(
        "plasma graph export: {} entities, {} edges of tenant {}",
        graph.entities.len(),
        graph.edges.len(),
        tenant
    );
    Ok(ExitCode::SUCCESS)
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// GraphML with the entities' name, kind, chunk and document counts, and the edges' weight
/// (normalised PMI), shared chunks and relation kinds.
pub fn graphml(graph: &GraphSnapshot) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n\
         \x20 <key id=\"name\" for=\"node\" attr.name=\"name\" attr.type=\"string\"/>\n\
         \x20 <key id=\"kind\" for=\"node\" attr.name=\"kind\" attr.type=\"string\"/>\n\
         \x20 <key id=\"chunks\" for=\"node\" attr.name=\"chunks\" attr.type=\"long\"/>\n\
         \x20 <key id=\"documents\" for=\"node\" attr.name=\"documents\" attr.type=\"long\"/>\n\
         \x20 <key id=\"weight\" for=\"edge\" attr.name=\"weight\" attr.type=\"double\"/>\n\
         \x20 <key id=\"shared\" for=\"edge\" attr.name=\"shared_chunks\" attr.type=\"long\"/>\n\
         \x20 <key id=\"kinds\" for=\"edge\" attr.name=\"kinds\" attr.type=\"string\"/>\n\
         \x20 <graph id=\"G\" edgedefault=\"undirected\">\n",
    );
    for entity in &graph.entities {
        out.push_str(&format!(
            "    <node id=\"{}\"><data key=\"name\">{}</data><data key=\"kind\">{}</data>\
             <data key=\"chunks\">{}</data><data key=\"documents\">{}</data></node>\n",
            entity.entity_id,
            xml_escape(&entity.name),
            xml_escape(&entity.kind),
            entity.chunks,
            entity.documents
        ));
    }
    for (i, edge) in graph.edges.iter().enumerate() {
        let view = graph.edge_view(edge);
        out.push_str(&format!(
            "    <edge id=\"e{i}\" source=\"{}\" target=\"{}\"><data key=\"weight\">{}</data>\
             <data key=\"shared\">{}</data><data key=\"kinds\">{}</data></edge>\n",
            view.source_id,
            view.target_id,
            view.weight,
            view.shared_chunks,
            xml_escape(&view.kinds.join(","))
        ));
    }
    out.push_str("  </graph>\n</graphml>\n");
    out
}

/// A Cypher string literal.
fn cypher_string(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Cypher statements that MERGE every entity (by id) and its edges, so running them twice
/// changes nothing: `cypher-shell -f graph.cypher`.
pub fn cypher(graph: &GraphSnapshot) -> String {
    let mut out = String::from(
        "CREATE CONSTRAINT plasma_entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE;\n",
    );
    for entity in &graph.entities {
        out.push_str(&format!(
            "MERGE (e:Entity {{id: '{}'}}) SET e.name = {}, e.kind = {}, e.chunks = {}, \
             e.documents = {};\n",
            entity.entity_id,
            cypher_string(&entity.name),
            cypher_string(&entity.kind),
            entity.chunks,
            entity.documents
        ));
    }
    for edge in &graph.edges {
        let view = graph.edge_view(edge);
        let kinds: Vec<String> = view.kinds.iter().map(|k| cypher_string(k)).collect();
        out.push_str(&format!(
            "MATCH (a:Entity {{id: '{}'}}), (b:Entity {{id: '{}'}}) \
             MERGE (a)-[r:RELATED]-(b) SET r.weight = {}, r.shared_chunks = {}, r.kinds = [{}];\n",
            view.source_id,
            view.target_id,
            view.weight,
            view.shared_chunks,
            kinds.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_each_format() {
        assert_eq!(
            xml_escape("A & <B> \"c\" 'd'\u{1}"),
            "A &amp; &lt;B&gt; &quot;c&quot; &apos;d&apos;"
        );
        assert_eq!(cypher_string("O'Brien \\ x\ny"), "'O\\'Brien \\\\ x\\ny'");
    }
}
