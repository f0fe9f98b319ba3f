//! The communities worker: divides each tenant's knowledge graph into communities with
//! hierarchical Leiden (a fixed seed: the same graph always gives the same communities), writes
//! an extractive report for each, and embeds the report for global search.
//!
//! It follows the graph read model, not the log: every `interval` it asks which tenants'
//! graphs moved on since their communities were computed, and recomputes one tenant's once its
//! graph has been quiet for a tick (debounced: a burst of ingests costs one computation), or
//! has waited `max_delay` under continuous ingest. Ingest never waits for it. The result
//! replaces the tenant's communities in one transaction, so a SIGKILL at any point leaves the
//! previous communities and the next start computes again; nothing else is affected.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use plasma_domain::research::leiden::{hierarchical_leiden, modularity, Graph, LeidenOptions};
use plasma_domain::research::Embedder;
use plasma_domain::TenantId;
use plasma_projections::models::communities;
use plasma_projections::{
    Citation, CommunityEntity, CommunityRelation, CommunityReport, CommunityRun, CommunityView,
    ComputedCommunities, GraphSnapshot, ReadModels,
};
use tokio::sync::watch;

use crate::ProcessError;

/// Communities computed, by level count.
pub const METRIC_RUNS: &str = "plasma_communities_runs_total";

pub fn describe_metrics() {
    metrics::describe_counter!(METRIC_RUNS, "Community computations of a tenant's graph");
}

/// How the worker paces and bounds its work.
#[derive(Debug, Clone)]
pub struct CommunityOptions {
    /// How often it looks for graphs that moved on.
    pub interval: Duration,
    /// The longest a changing graph waits for its communities.
    pub max_delay: Duration,
    /// The most edges considered, strongest first: bounds one computation's time and memory.
    pub max_edges: usize,
    /// Communities larger than this are split at the next level.
    pub max_community_size: usize,
    pub max_levels: usize,
    pub seed: u64,
}

impl Default for CommunityOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            max_edges: 500_000,
            max_community_size: 30,
            max_levels: 3,
            seed: 42,
        }
    }
}

#[derive(Debug)]
pub struct CommunityWorker {
    read: ReadModels,
    embedder: Option<Arc<dyn Embedder>>,
    options: CommunityOptions,
}

impl CommunityWorker {
    pub fn new(
        read: ReadModels,
        embedder: Option<Arc<dyn Embedder>>,
        options: CommunityOptions,
    ) -> Self {
        Self {
            read,
            embedder,
            options,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), ProcessError> {
        communities::create_tables(self.read.store()).await?;
        // Per stale tenant: the graph position seen last tick, and since when it is stale.
        let mut seen: HashMap<String, (i64, Instant)> = HashMap::new();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let stale = self.read.stale_community_tenants().await?;
            seen.retain(|tenant, _| stale.iter().any(|(t, _)| t == tenant));
            for (tenant, position) in stale {
                let now = Instant::now();
                let (last, since) = *seen.entry(tenant.clone()).or_insert((-1, now));
                let quiet = last == position;
                if quiet || now.duration_since(since) >= self.options.max_delay {
                    let Ok(tenant_id) = TenantId::parse(&tenant) else {
                        continue;
                    };
                    // A shutdown does not wait for a long computation: dropping it before its
                    // one transaction commits leaves the previous communities.
                    tokio::select! {
                        computed = self.compute(&tenant_id) => { computed?; }
                        _ = stop.changed() => return Ok(()),
                    }
                    seen.remove(&tenant);
                    // One tenant per tick: the others' ingest is not held up by a long run.
                    break;
                }
                seen.insert(tenant, (position, since));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.interval) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Computes and records the tenant's communities from its graph as it stands.
    #[tracing::instrument(skip(self), fields(plasma.tenant = %tenant))]
    pub async fn compute(&self, tenant: &TenantId) -> Result<ComputedCommunities, ProcessError> {
        let started = Instant::now();
        let snapshot = self.read.graph(tenant).await?;
        let options = self.options.clone();
        let graph = snapshot.clone();
        let (levels, level0_modularity) =
            tokio::task::spawn_blocking(move || partition(&graph, &options))
                .await
                .map_err(|e| ProcessError::Task(e.to_string()))?;
        let mut computed = self.reports(tenant, &snapshot, &levels).await?;
        computed.run = CommunityRun {
            graph_position: snapshot.position,
            computed_at: Utc::now(),
            modularity: level0_modularity,
            communities: i64::try_from(computed.communities.len()).unwrap_or(i64::MAX),
            levels: i64::try_from(levels.len()).unwrap_or(i64::MAX),
            millis: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        };
        communities::replace(self.read.store(), tenant, &computed).await?;
        metrics::counter!(METRIC_RUNS).increment(1);
        tracing::info!(
            communities = computed.communities.len(),
            modularity = level0_modularity,
            millis = computed.run.millis,
            "communities computed"
        );
        Ok(computed)
    }

    /// A report (and its embedding) for every community of two or more members.
    async fn reports(
        &self,
        tenant: &TenantId,
        snapshot: &GraphSnapshot,
        levels: &[Vec<usize>],
    ) -> Result<ComputedCommunities, ProcessError> {
        let mut out = ComputedCommunities {
            run: CommunityRun {
                graph_position: 0,
                computed_at: Utc::now(),
                modularity: 0.0,
                communities: 0,
                levels: 0,
                millis: 0,
            },
            communities: Vec::new(),
            members: Vec::new(),
            model: self
                .embedder
                .as_ref()
                .map(|e| e.model().name.clone())
                .unwrap_or_default(),
        };
        let mut texts = Vec::new();
        for (level, membership) in levels.iter().enumerate() {
            let level = i64::try_from(level).unwrap_or(i64::MAX);
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (node, &community) in membership.iter().enumerate() {
                groups.entry(community).or_default().push(node);
            }
            let parents = level
                .checked_sub(1)
                .and_then(|l| levels.get(usize::try_from(l).ok()?));
            for (community, members) in groups {
                if members.len() < 2 {
                    continue;
                }
                let parent = parents
                    .and_then(|p| members.first().and_then(|&m| p.get(m)))
                    .map(|&c| i64::try_from(c).unwrap_or(i64::MAX));
                let community = i64::try_from(community).unwrap_or(i64::MAX);
                let report = self.report(tenant, snapshot, &members).await?;
                let title = report
                    .entities
                    .iter()
                    .take(3)
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                for &node in &members {
                    if let Some(entity) = snapshot.entity(node) {
                        out.members.push((level, entity.entity_id, community));
                    }
                }
                texts.push(format!("{title}. {}", report.summary));
                out.communities.push((
                    CommunityView {
                        level,
                        community,
                        parent,
                        size: i64::try_from(members.len()).unwrap_or(i64::MAX),
                        title,
                        report,
                    },
                    None,
                ));
            }
        }
        if let Some(embedder) = self.embedder.clone() {
            let vectors = tokio::task::spawn_blocking(move || {
                let mut vectors = Vec::with_capacity(texts.len());
                for batch in texts.chunks(16) {
                    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                    vectors.extend(embedder.embed(&refs)?);
                }
                Ok::<_, plasma_domain::research::EmbedError>(vectors)
            })
            .await
            .map_err(|e| ProcessError::Task(e.to_string()))??;
            for ((_, slot), vector) in out.communities.iter_mut().zip(vectors) {
                *slot = Some(vector);
            }
        }
        Ok(out)
    }

    /// The extractive report of one community: its most connected members, strongest inner
    /// links, and the chunks mentioning most members, cited.
    async fn report(
        &self,
        tenant: &TenantId,
        snapshot: &GraphSnapshot,
        members: &[usize],
    ) -> Result<CommunityReport, ProcessError> {
        let inside: std::collections::HashSet<usize> = members.iter().copied().collect();
        let mut strength: HashMap<usize, f64> = HashMap::new();
        let mut links = Vec::new();
        for &node in members {
            for &(other, edge) in snapshot
                .adjacency
                .get(node)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if !inside.contains(&other) {
                    continue;
                }
                let Some(edge) = snapshot.edges.get(edge) else {
                    continue;
                };
                let weight = edge.weight.max(0.0);
                *strength.entry(node).or_default() += weight;
                if node < other {
                    links.push((
                        edge.weight * (1.0 + edge.shared_chunks as f64).ln(),
                        node,
                        other,
                        edge,
                    ));
                }
            }
        }
        let mut ranked: Vec<usize> = members.to_vec();
        ranked.sort_by(|a, b| {
            let (sa, sb) = (
                strength.get(a).copied().unwrap_or(0.0),
                strength.get(b).copied().unwrap_or(0.0),
            );
            sb.total_cmp(&sa).then(a.cmp(b))
        });
        let entities: Vec<CommunityEntity> = ranked
            .iter()
            .take(10)
            .filter_map(|&node| {
                let entity = snapshot.entity(node)?;
                Some(CommunityEntity {
                    entity_id: entity.entity_id,
                    name: entity.name.clone(),
                    kind: entity.kind.clone(),
                    weight: strength.get(&node).copied().unwrap_or(0.0),
                })
            })
            .collect();
        links.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        links.truncate(5);
        // Chunks mentioning most members.
        let mut per_chunk: HashMap<(uuid::Uuid, i64), usize> = HashMap::new();
        let mut documents = std::collections::HashSet::new();
        for &node in members {
            for &(document, chunk) in snapshot
                .mentions
                .get(node)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                *per_chunk.entry((document, chunk)).or_default() += 1;
                documents.insert(document);
            }
        }
        let mut chunks: Vec<((uuid::Uuid, i64), usize)> = per_chunk.into_iter().collect();
        chunks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut cited: Vec<(uuid::Uuid, i64)> = chunks.iter().take(3).map(|(k, _)| *k).collect();
        let mut relation_citation = Vec::new();
        for (_, a, b, _) in &links {
            let (Some(ea), Some(eb)) = (snapshot.entity(*a), snapshot.entity(*b)) else {
                relation_citation.push(None);
                continue;
            };
            let evidence = self
                .read
                .edge_evidence(tenant, ea.entity_id, eb.entity_id, 1)
                .await?;
            let citation = evidence.first().filter(|(_, c)| *c >= 0).map(|key| {
                cited.iter().position(|k| k == key).unwrap_or_else(|| {
                    cited.push(*key);
                    cited.len() - 1
                })
            });
            relation_citation.push(citation);
        }
        let hits = self.read.chunks_at(tenant, &cited, |_| 0.0).await?;
        // Citations keep `cited`'s order; a chunk gone from the index is dropped, and the
        // relation pointing at it loses its citation.
        let mut index_of = HashMap::new();
        let citations: Vec<Citation> = hits
            .into_iter()
            .enumerate()
            .map(|(i, hit)| {
                index_of.insert((hit.document_id, hit.chunk_index), i);
                Citation {
                    document_id: hit.document_id,
                    title: hit.title,
                    chunk_index: hit.chunk_index,
                    snippet: hit.snippet,
                }
            })
            .collect();
        let relations: Vec<CommunityRelation> = links
            .iter()
            .zip(relation_citation)
            .filter_map(|((_, a, b, edge), citation)| {
                Some(CommunityRelation {
                    source: snapshot.entity(*a)?.name.clone(),
                    target: snapshot.entity(*b)?.name.clone(),
                    weight: edge.weight,
                    shared_chunks: edge.shared_chunks,
                    citation: citation
                        .and_then(|c| cited.get(c))
                        .and_then(|key| index_of.get(key).copied()),
                })
            })
            .collect();
        let summary = summary(
            &entities,
            &relations,
            &citations,
            members.len(),
            documents.len(),
        );
        Ok(CommunityReport {
            summary,
            entities,
            relations,
            citations,
            documents: documents.len() as u64,
        })
    }
}

/// The report's paragraph: who is in it, what links them, what the cited chunks open with.
fn summary(
    entities: &[CommunityEntity],
    relations: &[CommunityRelation],
    citations: &[Citation],
    size: usize,
    documents: usize,
) -> String {
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    let mut text = format!(
        "{size} entities across {documents} documents, led by {}.",
        names.join(", ")
    );
    if !relations.is_empty() {
        let links: Vec<String> = relations
            .iter()
            .map(|r| {
                format!(
                    "{} and {} ({} shared chunks)",
                    r.source, r.target, r.shared_chunks
                )
            })
            .collect();
        text.push_str(&format!(" Strongest links: {}.", links.join("; ")));
    }
    for citation in citations.iter().take(3) {
        text.push(' ');
        text.push_str(citation.snippet.trim());
    }
    text
}

/// The graph's Leiden levels (per level, a community per node) and level 0's modularity.
/// Edges with no positive weight (entities no more likely together than apart) are left out.
fn partition(snapshot: &GraphSnapshot, options: &CommunityOptions) -> (Vec<Vec<usize>>, f64) {
    let mut edges: Vec<(usize, usize, f64)> = snapshot
        .edges
        .iter()
        .filter(|e| e.weight > 0.0)
        .map(|e| (e.source, e.target, e.weight))
        .collect();
    if edges.len() > options.max_edges {
        edges.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        edges.truncate(options.max_edges);
    }
    let graph = Graph::from_edges(snapshot.entities.len(), &edges);
    let leiden = LeidenOptions {
        seed: options.seed,
        ..LeidenOptions::default()
    };
    let levels = hierarchical_leiden(
        &graph,
        &leiden,
        options.max_community_size,
        options.max_levels,
    );
    let q = levels
        .first()
        .map_or(0.0, |level0| modularity(&graph, level0, leiden.resolution));
    (levels, q)
}
