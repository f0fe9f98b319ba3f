//! The knowledge-graph read model: the entities extractions found in a tenant's documents, the
//! chunks that mention them, and the co-occurrence edges between them with their evidence.
//!
//! Stored per document (its entities, mentions and edges), so a new extraction or a removal
//! replaces exactly that document's contribution, and the live graph equals a rebuild row for
//! row. Weights are not stored: an edge's weight is the normalised PMI of its two entities
//! over the tenant's chunks, computed when the graph is read, so it always reflects the whole
//! corpus. Queries read a snapshot of the tenant's graph (cached until the graph moves on) and
//! walk it in memory: neighbourhoods, paths, degrees, and the communities worker's input.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use serde::Serialize;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::research::{Document, DocumentEvent, Entity, Relation};
use plasma_domain::{Context, TenantId};

use crate::read_models::ReadModels;
use crate::read_store::{on_pool, on_tx};
use crate::{ChunkHit, Projection, ProjectionError, ReadTx, Tables};

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "graph";

/// Namespace of entity ids: an entity's id is derived from its key, the same in every tenant,
/// store and rebuild.
const ENTITY_NAMESPACE: Uuid = Uuid::from_u128(0x51c3_e0a7_2b9d_4f61_8e05_93d2_a7c4_16b8);

/// A relation recorded between entities that share no chunk (an outside extractor's typed
/// relation) is kept with this chunk index: evidence of the document as a whole.
const WHOLE_DOCUMENT: i64 = -1;

/// Rows per multi-row INSERT (6 values each: well under both stores' parameter limits).
const INSERT_BATCH: usize = 500;

const TABLES: &[&str] = &[
    "rm_graph_documents",
    "rm_graph_entities",
    "rm_graph_mentions",
    "rm_graph_edges",
];

/// The key entities are merged by across documents: lower case, without a possessive.
pub fn entity_key(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    lower.strip_suffix("'s").map(str::to_owned).unwrap_or(lower)
}

/// The id of the entity whose key is `key`.
pub fn entity_id(key: &str) -> Uuid {
    Uuid::new_v5(&ENTITY_NAMESPACE, key.as_bytes())
}

#[derive(Debug, Clone, Copy)]
pub struct GraphProjection;

#[async_trait]
impl Projection for GraphProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Research]
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn ddl(&self) -> &'static [&'static str] {
        &[
            // One row per document that reached the graph: its chunk count (the corpus size
            // PMI is computed over), and which extraction it holds.
            "CREATE TABLE IF NOT EXISTS rm_graph_documents{t} (
                tenant_id           TEXT   NOT NULL,
                document_id         {uuid} NOT NULL,
                chunk_count         BIGINT NOT NULL,
                extraction_position BIGINT NOT NULL,
                removed             BIGINT NOT NULL,
                position            BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, document_id)
            )",
            "CREATE TABLE IF NOT EXISTS rm_graph_entities{t} (
                tenant_id   TEXT   NOT NULL,
                entity_id   {uuid} NOT NULL,
                document_id {uuid} NOT NULL,
                entity_key  TEXT   NOT NULL,
                name        TEXT   NOT NULL,
                kind        TEXT   NOT NULL,
                aliases     TEXT   NOT NULL,
                chunk_count BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, entity_id, document_id)
            )",
            "CREATE INDEX IF NOT EXISTS rm_graph_entities_by_document_{g}
                ON rm_graph_entities{t} (tenant_id, document_id)",
            "CREATE TABLE IF NOT EXISTS rm_graph_mentions{t} (
                tenant_id   TEXT   NOT NULL,
                entity_id   {uuid} NOT NULL,
                document_id {uuid} NOT NULL,
                chunk_index BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, entity_id, document_id, chunk_index)
            )",
            "CREATE INDEX IF NOT EXISTS rm_graph_mentions_by_document_{g}
                ON rm_graph_mentions{t} (tenant_id, document_id, chunk_index)",
            // Ends in id order (source < target): an undirected edge is one set of rows.
            "CREATE TABLE IF NOT EXISTS rm_graph_edges{t} (
                tenant_id   TEXT   NOT NULL,
                source_id   {uuid} NOT NULL,
                target_id   {uuid} NOT NULL,
                kind        TEXT   NOT NULL,
                document_id {uuid} NOT NULL,
                chunk_index BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, source_id, target_id, kind, document_id, chunk_index)
            )",
            "CREATE INDEX IF NOT EXISTS rm_graph_edges_by_document_{g}
                ON rm_graph_edges{t} (tenant_id, document_id)",
        ]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == Document::TYPE) {
            match event.event_type.as_str() {
                "DocumentChunked" | "DocumentEntitiesExtracted" | "DocumentRemoved" => {}
                // Ingests carry whole texts and vectors are large: not decoded for nothing.
                _ => continue,
            }
            match event.decode::<DocumentEvent>()? {
                DocumentEvent::DocumentChunked { chunks, .. } => {
                    let count = i64::try_from(chunks.len()).unwrap_or(i64::MAX);
                    let sql = format!(
                        "INSERT INTO {} (tenant_id, document_id, chunk_count, \
                         extraction_position, removed, position) VALUES ($1, $2, $3, 0, 0, $4) \
                         ON CONFLICT (tenant_id, document_id) DO UPDATE SET \
                         chunk_count = excluded.chunk_count",
                        tables.name("rm_graph_documents")
                    );
                    on_tx!(tx, |c| sqlx::query(&sql)
                        .bind(event.tenant.as_str())
                        .bind(event.aggregate_id)
                        .bind(count)
                        .bind(event.position)
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(ProjectionError::db(
                            "projecting a document into the graph"
                        ))?);
                }
                DocumentEvent::DocumentEntitiesExtracted {
                    entities,
                    relations,
                    ..
                } => {
                    // A redelivered older extraction must not replace a newer one.
                    if !claim_document(tx, tables, event, false).await? {
                        continue;
                    }
                    forget_document(tx, tables, event).await?;
                    insert_extraction(tx, tables, event, &entities, &relations).await?;
                }
                DocumentEvent::DocumentRemoved { .. }
                    if claim_document(tx, tables, event, true).await? =>
                {
                    forget_document(tx, tables, event).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Records that the document's graph now reflects `event` (an extraction, or its removal);
/// false when it already reflects a later event or the document was removed.
async fn claim_document(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
    removal: bool,
) -> Result<bool, ProjectionError> {
    let table = tables.name("rm_graph_documents");
    let current_sql = format!(
        "SELECT extraction_position, removed FROM {table} WHERE tenant_id = $1 AND document_id = $2"
    );
    let current: Option<(i64, i64)> = on_tx!(tx, |c| sqlx::query_as(&current_sql)
        .bind(event.tenant.as_str())
        .bind(event.aggregate_id)
        .fetch_optional(c)
        .await
        .map_err(ProjectionError::db("reading a graph document"))?);
    if let Some((extracted, removed)) = current {
        if removed != 0 || extracted >= event.position {
            return Ok(false);
        }
    }
    let removed = i64::from(removal);
    let sql = format!(
        "INSERT INTO {table} (tenant_id, document_id, chunk_count, extraction_position, removed, \
         position) VALUES ($1, $2, 0, $3, $4, $3) ON CONFLICT (tenant_id, document_id) DO UPDATE \
         SET extraction_position = excluded.extraction_position, removed = excluded.removed, \
         position = excluded.position, chunk_count = CASE WHEN excluded.removed = 1 THEN 0 \
         ELSE {table}.chunk_count END"
    );
    on_tx!(tx, |c| sqlx::query(&sql)
        .bind(event.tenant.as_str())
        .bind(event.aggregate_id)
        .bind(event.position)
        .bind(removed)
        .execute(c)
        .await
        .map(|_| ())
        .map_err(ProjectionError::db("recording a graph document"))?);
    Ok(true)
}

/// Deletes the document's entities, mentions and edges.
async fn forget_document(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    for base in &TABLES[1..] {
        let sql = format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND document_id = $2",
            tables.name(base)
        );
        on_tx!(tx, |c| sqlx::query(&sql)
            .bind(event.tenant.as_str())
            .bind(event.aggregate_id)
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db(
                "removing a document from the graph"
            ))?);
    }
    Ok(())
}

async fn insert_extraction(
    tx: &mut ReadTx,
    tables: &Tables,
    event: &RecordedEvent,
    entities: &[Entity],
    relations: &[Relation],
) -> Result<(), ProjectionError> {
    // Entities of one extraction may share a key ("Acme" and "ACME" from an outside
    // extractor): they are one entity here, their chunks merged.
    let mut merged: BTreeMap<String, (&Entity, BTreeSet<usize>, BTreeSet<String>)> =
        BTreeMap::new();
    let mut key_of: HashMap<&str, String> = HashMap::new();
    for entity in entities {
        let key = entity_key(&entity.name);
        if key.is_empty() {
            continue;
        }
        key_of.insert(entity.name.as_str(), key.clone());
        let slot = merged
            .entry(key)
            .or_insert_with(|| (entity, BTreeSet::new(), BTreeSet::new()));
        slot.1.extend(entity.chunk_indexes.iter().copied());
        slot.2.extend(entity.aliases.iter().cloned());
        if entity.name != slot.0.name {
            slot.2.insert(entity.name.clone());
        }
    }
    let entities_sql = format!(
        "INSERT INTO {} (tenant_id, entity_id, document_id, entity_key, name, kind, aliases, \
         chunk_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        tables.name("rm_graph_entities")
    );
    let mut mentions: Vec<(Uuid, i64)> = Vec::new();
    for (key, (entity, chunks, aliases)) in &merged {
        let id = entity_id(key);
        let aliases: Vec<&String> = aliases.iter().filter(|a| **a != entity.name).collect();
        on_tx!(tx, |c| sqlx::query(&entities_sql)
            .bind(event.tenant.as_str())
            .bind(id)
            .bind(event.aggregate_id)
            .bind(key)
            .bind(&entity.name)
            .bind(&entity.kind)
            .bind(super::json_text(&aliases, "[]"))
            .bind(i64::try_from(chunks.len()).unwrap_or(i64::MAX))
            .execute(c)
            .await
            .map(|_| ())
            .map_err(ProjectionError::db("projecting a graph entity"))?);
        mentions.extend(
            chunks
                .iter()
                .map(|chunk| (id, i64::try_from(*chunk).unwrap_or(i64::MAX))),
        );
    }
    let table = tables.name("rm_graph_mentions");
    for batch in mentions.chunks(INSERT_BATCH) {
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(format!(
                "INSERT INTO {table} (tenant_id, entity_id, document_id, chunk_index) "
            ));
            query.push_values(batch, |mut row, (id, chunk)| {
                row.push_bind(event.tenant.as_str())
                    .push_bind(*id)
                    .push_bind(event.aggregate_id)
                    .push_bind(*chunk);
            });
            query.push(" ON CONFLICT DO NOTHING");
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting entity mentions"))?
        });
    }
    let mut edges: Vec<(Uuid, Uuid, &str, i64)> = Vec::new();
    for relation in relations {
        let (Some(from), Some(to)) = (
            key_of.get(relation.from.as_str()),
            key_of.get(relation.to.as_str()),
        ) else {
            continue;
        };
        if from == to {
            continue;
        }
        let (Some(a), Some(b)) = (merged.get(from), merged.get(to)) else {
            continue;
        };
        let mut shared: Vec<i64> =
            a.1.intersection(&b.1)
                .map(|c| i64::try_from(*c).unwrap_or(i64::MAX))
                .collect();
        if shared.is_empty() {
            shared.push(WHOLE_DOCUMENT);
        }
        let (mut source, mut target) = (entity_id(from), entity_id(to));
        if source > target {
            std::mem::swap(&mut source, &mut target);
        }
        edges.extend(
            shared
                .into_iter()
                .map(|chunk| (source, target, relation.kind.as_str(), chunk)),
        );
    }
    let table = tables.name("rm_graph_edges");
    for batch in edges.chunks(INSERT_BATCH) {
        on_tx!(tx, |c| {
            let mut query = sqlx::QueryBuilder::new(format!(
                "INSERT INTO {table} (tenant_id, source_id, target_id, kind, document_id, \
                 chunk_index) "
            ));
            query.push_values(batch, |mut row, (source, target, kind, chunk)| {
                row.push_bind(event.tenant.as_str())
                    .push_bind(*source)
                    .push_bind(*target)
                    .push_bind(*kind)
                    .push_bind(event.aggregate_id)
                    .push_bind(*chunk);
            });
            query.push(" ON CONFLICT DO NOTHING");
            query
                .build()
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting graph edges"))?
        });
    }
    Ok(())
}

// Queries.

/// One entity of the tenant's graph, over all its documents.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityView {
    pub entity_id: Uuid,
    /// The spelling most documents use.
    pub name: String,
    /// `name`, `handle`, `hashtag`, `domain`, `brand`, `keyword`, `competitor`, or an outside
    /// extractor's kind.
    pub kind: String,
    /// Other spellings found for it.
    pub aliases: Vec<String>,
    /// Documents that mention it.
    pub documents: u64,
    /// Chunks that mention it.
    pub chunks: u64,
    /// Entities it shares a chunk (or a recorded relation) with.
    pub degree: u64,
    /// The sum of its edges' weights.
    pub weighted_degree: f64,
}

/// An edge of the graph.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeView {
    pub source_id: Uuid,
    pub target_id: Uuid,
    /// Normalised PMI of the two entities over the tenant's chunks, in [-1, 1]: 1 when they
    /// only ever appear together, 0 when independent.
    pub weight: f64,
    /// Chunks both appear in (a whole-document relation counts once).
    pub shared_chunks: u64,
    /// The relation kinds recorded: `co_occurs`, or an outside extractor's.
    pub kinds: Vec<String>,
}

/// An entity and the part of the graph within `depth` hops of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeighbourhoodView {
    pub entity: EntityView,
    /// The entities reached, nearest and strongest first, each with its distance in hops.
    pub neighbours: Vec<NeighbourView>,
    /// The edges among the entity and its neighbours.
    pub edges: Vec<EdgeView>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeighbourView {
    pub entity: EntityView,
    pub hops: u32,
}

/// One step of a path, with the chunks that show the two entities together.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathStep {
    pub edge: EdgeView,
    /// Up to three chunks both entities appear in, to cite.
    pub evidence: Vec<ChunkHit>,
}

/// The shortest path between two entities (fewest hops; among those, the strongest edges).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathView {
    /// From the first entity to the second.
    pub entities: Vec<EntityView>,
    pub steps: Vec<PathStep>,
}

/// How a path search reached a node: hops, summed weight, and the (node, edge) it came by.
type Reached = (u32, f64, Option<(usize, usize)>);

/// How to order the top entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityRanking {
    Degree,
    WeightedDegree,
    Chunks,
}

/// An undirected edge of a snapshot, between node indexes.
#[derive(Debug, Clone)]
pub struct SnapshotEdge {
    pub source: usize,
    pub target: usize,
    pub shared_chunks: u64,
    pub kinds: Vec<String>,
    pub weight: f64,
}

/// A tenant's whole graph in memory, as of `position`.
#[derive(Debug, Default)]
pub struct GraphSnapshot {
    /// The graph's last change (the largest position of a document in it).
    pub position: i64,
    /// Chunks of the documents in the graph: the corpus PMI is computed over.
    pub total_chunks: u64,
    pub entities: Vec<EntityView>,
    pub edges: Vec<SnapshotEdge>,
    /// Per node: (neighbour, edge index).
    pub adjacency: Vec<Vec<(usize, usize)>>,
    /// Per node: the (document, chunk) it is mentioned in.
    pub mentions: Vec<Vec<(Uuid, i64)>>,
    by_id: HashMap<Uuid, usize>,
    /// Lower-case names and aliases → nodes.
    by_name: HashMap<String, Vec<usize>>,
    /// (document, chunk) → the nodes mentioned there.
    by_chunk: HashMap<(Uuid, i64), Vec<usize>>,
}

/// Normalised PMI: ln(p(ab) / p(a)p(b)) / −ln p(ab), in [−1, 1].
pub fn npmi(shared: u64, a: u64, b: u64, total: u64) -> f64 {
    if shared == 0 || a == 0 || b == 0 || total == 0 {
        return -1.0;
    }
    let n = total as f64;
    let (pab, pa, pb) = (
        (shared as f64 / n).min(1.0),
        (a as f64 / n).min(1.0),
        (b as f64 / n).min(1.0),
    );
    if pab >= 1.0 {
        return 1.0;
    }
    ((pab / (pa * pb)).ln() / -pab.ln()).clamp(-1.0, 1.0)
}

impl GraphSnapshot {
    pub fn node(&self, id: Uuid) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    pub fn entity(&self, node: usize) -> Option<&EntityView> {
        self.entities.get(node)
    }

    /// Nodes whose name or alias is `name` (any case).
    pub fn named(&self, name: &str) -> &[usize] {
        self.by_name
            .get(&entity_key(name))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Nodes mentioned in a chunk.
    pub fn in_chunk(&self, document: Uuid, chunk: i64) -> &[usize] {
        self.by_chunk
            .get(&(document, chunk))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn edge_view(&self, edge: &SnapshotEdge) -> EdgeView {
        let id = |node: usize| {
            self.entities
                .get(node)
                .map(|e| e.entity_id)
                .unwrap_or_default()
        };
        EdgeView {
            source_id: id(edge.source),
            target_id: id(edge.target),
            weight: edge.weight,
            shared_chunks: edge.shared_chunks,
            kinds: edge.kinds.clone(),
        }
    }

    /// Entities within `depth` hops of `node`, nearest first, then by the weight of the edge
    /// they were reached by; at most `limit`.
    pub fn neighbourhood(&self, node: usize, depth: u32, limit: usize) -> Vec<(usize, u32, f64)> {
        let mut seen: HashSet<usize> = HashSet::from([node]);
        let mut out = Vec::new();
        let mut frontier = vec![node];
        for hops in 1..=depth {
            let mut next: Vec<(usize, f64)> = Vec::new();
            for &from in &frontier {
                for &(to, edge) in self
                    .adjacency
                    .get(from)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if seen.insert(to) {
                        let weight = self.edges.get(edge).map_or(0.0, |e| e.weight);
                        next.push((to, weight));
                    }
                }
            }
            next.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            frontier = next.iter().map(|(n, _)| *n).collect();
            out.extend(next.into_iter().map(|(n, w)| (n, hops, w)));
            if out.len() >= limit || frontier.is_empty() {
                break;
            }
        }
        out.truncate(limit);
        out
    }

    /// The fewest-hop path from `from` to `to` (ties broken by the larger sum of weights), as
    /// nodes and the edges between them; `None` when they are not connected within `max_hops`.
    pub fn shortest_path(
        &self,
        from: usize,
        to: usize,
        max_hops: u32,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        if from == to {
            return Some((vec![from], Vec::new()));
        }
        // Breadth first, keeping for each node the best-weighted predecessor on its level.
        let mut level: HashMap<usize, Reached> = HashMap::from([(from, (0, 0.0, None))]);
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            let (hops, score, _) = level.get(&node).copied()?;
            if hops >= max_hops || level.get(&to).is_some_and(|t| t.0 <= hops) {
                continue;
            }
            for &(next, edge) in self
                .adjacency
                .get(node)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let weight = self.edges.get(edge).map_or(0.0, |e| e.weight);
                let candidate = (hops + 1, score + weight, Some((node, edge)));
                match level.get(&next) {
                    None => {
                        level.insert(next, candidate);
                        queue.push_back(next);
                    }
                    Some(&(h, s, _)) if h == hops + 1 && s < candidate.1 => {
                        level.insert(next, candidate);
                    }
                    Some(_) => {}
                }
            }
        }
        let mut nodes = vec![to];
        let mut edges = Vec::new();
        let mut at = to;
        while let Some(&(_, _, Some((prev, edge)))) = level.get(&at) {
            nodes.push(prev);
            edges.push(edge);
            at = prev;
        }
        if at != from {
            return None;
        }
        nodes.reverse();
        edges.reverse();
        Some((nodes, edges))
    }

    /// The top entities by `ranking`, at most `limit`.
    pub fn top(&self, ranking: EntityRanking, limit: usize) -> Vec<&EntityView> {
        let mut entities: Vec<&EntityView> = self.entities.iter().collect();
        entities.sort_by(|a, b| {
            let order = match ranking {
                EntityRanking::Degree => b.degree.cmp(&a.degree),
                EntityRanking::WeightedDegree => b.weighted_degree.total_cmp(&a.weighted_degree),
                EntityRanking::Chunks => b.chunks.cmp(&a.chunks),
            };
            order.then_with(|| a.name.cmp(&b.name))
        });
        entities.truncate(limit);
        entities
    }

    /// Entities whose name or an alias contains `query` (any case): exact names first, then
    /// by chunks.
    pub fn search(&self, query: &str, limit: usize) -> Vec<&EntityView> {
        let needle = query.trim().to_lowercase();
        let mut found: Vec<(bool, &EntityView)> = self
            .entities
            .iter()
            .filter_map(|e| {
                let exact = entity_key(&e.name) == entity_key(&needle)
                    || e.aliases.iter().any(|a| a.to_lowercase() == needle);
                let contains = e.name.to_lowercase().contains(&needle)
                    || e.aliases.iter().any(|a| a.to_lowercase().contains(&needle));
                (exact || contains).then_some((exact, e))
            })
            .collect();
        found.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(b.1.chunks.cmp(&a.1.chunks))
                .then_with(|| a.1.name.cmp(&b.1.name))
        });
        found.into_iter().take(limit).map(|(_, e)| e).collect()
    }
}

/// The last snapshot read per tenant, reused while the graph has not moved on.
#[derive(Debug, Default)]
pub(crate) struct GraphCache {
    snapshots: Mutex<HashMap<String, Arc<GraphSnapshot>>>,
}

impl ReadModels {
    /// The tenant's graph as it stands, from the cache while its position has not changed.
    /// The position of the last event that changed the tenant's graph (0 for none).
    pub async fn graph_position(&self, tenant: &TenantId) -> Result<i64, ProjectionError> {
        let position: Option<i64> = on_pool!(&self.store, |p| sqlx::query_scalar(
            "SELECT MAX(position) FROM rm_graph_documents WHERE tenant_id = $1"
        )
        .bind(tenant.as_str())
        .fetch_one(p)
        .await
        .map_err(ProjectionError::db("reading the graph's position"))?);
        Ok(position.unwrap_or(0))
    }

    pub async fn graph(&self, tenant: &TenantId) -> Result<Arc<GraphSnapshot>, ProjectionError> {
        self.settle(&[NAME]).await?;
        let position = self.graph_position(tenant).await?;
        if let Ok(cache) = self.graph_cache.snapshots.lock() {
            if let Some(snapshot) = cache.get(tenant.as_str()) {
                if snapshot.position == position {
                    return Ok(snapshot.clone());
                }
            }
        }
        let snapshot = Arc::new(self.read_graph(tenant, position).await?);
        if let Ok(mut cache) = self.graph_cache.snapshots.lock() {
            cache.insert(tenant.as_str().to_owned(), snapshot.clone());
        }
        Ok(snapshot)
    }

    async fn read_graph(
        &self,
        tenant: &TenantId,
        position: i64,
    ) -> Result<GraphSnapshot, ProjectionError> {
        let failed = || ProjectionError::db("reading the graph");
        let total: Option<i64> = on_pool!(&self.store, |p| {
            sqlx::query_scalar(
                "SELECT CAST(SUM(chunk_count) AS BIGINT) FROM rm_graph_documents \
             WHERE tenant_id = $1 AND removed = 0",
            )
            .bind(tenant.as_str())
            .fetch_one(p)
            .await
            .map_err(failed())?
        });
        let rows: Vec<(Uuid, String, String, String)> = on_pool!(&self.store, |p| sqlx::query_as(
            "SELECT entity_id, name, kind, aliases FROM rm_graph_entities \
             WHERE tenant_id = $1 ORDER BY entity_id, document_id"
        )
        .bind(tenant.as_str())
        .fetch_all(p)
        .await
        .map_err(failed())?);
        // Per entity: spellings and kinds with their document counts, aliases, chunks.
        struct Gathered {
            names: BTreeMap<String, u64>,
            kinds: BTreeMap<String, u64>,
            aliases: BTreeSet<String>,
            documents: u64,
        }
        let mut gathered: BTreeMap<Uuid, Gathered> = BTreeMap::new();
        for (id, name, kind, aliases) in rows {
            let entry = gathered.entry(id).or_insert_with(|| Gathered {
                names: BTreeMap::new(),
                kinds: BTreeMap::new(),
                aliases: BTreeSet::new(),
                documents: 0,
            });
            *entry.names.entry(name).or_default() += 1;
            *entry.kinds.entry(kind).or_default() += 1;
            entry
                .aliases
                .extend(crate::read_models::json_list(&aliases));
            entry.documents += 1;
        }
        let mut snapshot = GraphSnapshot {
            position,
            total_chunks: u64::try_from(total.unwrap_or(0)).unwrap_or(0),
            ..GraphSnapshot::default()
        };
        let most = |counts: &BTreeMap<String, u64>| {
            counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(s, _)| s.clone())
                .unwrap_or_default()
        };
        for (id, entity) in gathered {
            let name = most(&entity.names);
            let mut aliases: BTreeSet<String> = entity.aliases;
            aliases.extend(entity.names.keys().cloned());
            aliases.remove(&name);
            let node = snapshot.entities.len();
            for spelling in std::iter::once(&name).chain(aliases.iter()) {
                let slot = snapshot.by_name.entry(entity_key(spelling)).or_default();
                if !slot.contains(&node) {
                    slot.push(node);
                }
            }
            snapshot.by_id.insert(id, node);
            snapshot.entities.push(EntityView {
                entity_id: id,
                name,
                kind: most(&entity.kinds),
                aliases: aliases.into_iter().collect(),
                documents: entity.documents,
                chunks: 0,
                degree: 0,
                weighted_degree: 0.0,
            });
        }
        let nodes = snapshot.entities.len();
        snapshot.mentions = vec![Vec::new(); nodes];
        snapshot.adjacency = vec![Vec::new(); nodes];
        let mentions: Vec<(Uuid, Uuid, i64)> = on_pool!(&self.store, |p| sqlx::query_as(
            "SELECT entity_id, document_id, chunk_index FROM rm_graph_mentions \
             WHERE tenant_id = $1 ORDER BY entity_id, document_id, chunk_index"
        )
        .bind(tenant.as_str())
        .fetch_all(p)
        .await
        .map_err(failed())?);
        for (id, document, chunk) in mentions {
            if let Some(node) = snapshot.node(id) {
                snapshot.mentions[node].push((document, chunk));
                snapshot
                    .by_chunk
                    .entry((document, chunk))
                    .or_default()
                    .push(node);
            }
        }
        for (node, mentions) in snapshot.mentions.iter().enumerate() {
            snapshot.entities[node].chunks = mentions.len() as u64;
        }
        let edges: Vec<(Uuid, Uuid, String, i64)> = on_pool!(&self.store, |p| sqlx::query_as(
            "SELECT source_id, target_id, kind, COUNT(*) AS shared FROM rm_graph_edges \
             WHERE tenant_id = $1 GROUP BY source_id, target_id, kind \
             ORDER BY source_id, target_id, kind"
        )
        .bind(tenant.as_str())
        .fetch_all(p)
        .await
        .map_err(failed())?);
        let mut by_pair: BTreeMap<(usize, usize), (u64, Vec<String>)> = BTreeMap::new();
        for (source, target, kind, shared) in edges {
            if let (Some(a), Some(b)) = (snapshot.node(source), snapshot.node(target)) {
                let slot = by_pair.entry((a, b)).or_default();
                // Kinds share evidence chunks: the most evidence any kind has.
                slot.0 = slot.0.max(u64::try_from(shared).unwrap_or(0));
                slot.1.push(kind);
            }
        }
        let total = snapshot.total_chunks;
        for ((a, b), (shared, kinds)) in by_pair {
            let weight = npmi(
                shared,
                snapshot.entities[a].chunks.max(1),
                snapshot.entities[b].chunks.max(1),
                total.max(shared),
            );
            let edge = snapshot.edges.len();
            snapshot.edges.push(SnapshotEdge {
                source: a,
                target: b,
                shared_chunks: shared,
                kinds,
                weight,
            });
            snapshot.adjacency[a].push((b, edge));
            snapshot.adjacency[b].push((a, edge));
            for node in [a, b] {
                snapshot.entities[node].degree += 1;
                snapshot.entities[node].weighted_degree += weight;
            }
        }
        Ok(snapshot)
    }

    /// Up to `limit` (document, chunk) pairs where both ends of an edge appear together.
    pub async fn edge_evidence(
        &self,
        tenant: &TenantId,
        source: Uuid,
        target: Uuid,
        limit: u32,
    ) -> Result<Vec<(Uuid, i64)>, ProjectionError> {
        let (source, target) = if source <= target {
            (source, target)
        } else {
            (target, source)
        };
        let rows: Vec<(Uuid, i64)> = on_pool!(&self.store, |p| sqlx::query_as(
            "SELECT DISTINCT document_id, chunk_index FROM rm_graph_edges \
             WHERE tenant_id = $1 AND source_id = $2 AND target_id = $3 \
             ORDER BY document_id, chunk_index LIMIT $4"
        )
        .bind(tenant.as_str())
        .bind(source)
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
        .map_err(ProjectionError::db("reading an edge's evidence"))?);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npmi_is_one_for_entities_only_seen_together_and_zero_when_independent() {
        assert!((npmi(5, 5, 5, 100) - 1.0).abs() < 1e-9 || npmi(5, 5, 5, 100) > 0.99);
        assert!(npmi(25, 50, 50, 100).abs() < 1e-9);
        assert!(npmi(1, 50, 50, 100) < 0.0);
        assert_eq!(npmi(0, 5, 5, 100), -1.0);
    }

    #[test]
    fn keys_fold_case_and_possessives() {
        assert_eq!(entity_key(" Acme's "), "acme");
        assert_eq!(entity_id("acme"), entity_id(&entity_key("ACME")));
    }
}
