//! The knowledge graph of a tenant's research documents: entities, their neighbourhoods, the
//! paths between them with evidence, and the communities with their reports.

use axum::extract::State;
use axum::Json as JsonBody;
use plasma_domain::ids::EntityId;
use plasma_domain::AggregateId;
use plasma_projections::{
    CommunityRun, CommunityView, EntityRanking, EntityView, NeighbourView, NeighbourhoodView,
    PathStep, PathView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Authorized, Queries};
use crate::error::ApiError;
use crate::extract::{PathId, PathParams, ReadQuery};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(entities))
        .routes(routes!(entity))
        .routes(routes!(path))
        .routes(routes!(communities))
        .routes(routes!(community))
}

fn invalid_query(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidQuery {
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// How the entity list is ordered when no `q` is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Ranking {
    /// Most neighbours first.
    #[default]
    Degree,
    /// Largest sum of edge weights first.
    WeightedDegree,
    /// Most mentioned first.
    Chunks,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EntitiesQuery {
    /// Entities whose name or an alias contains this (any case); exact names first.
    #[param(min_length = 1, max_length = 200, pattern = r"\S")]
    q: Option<String>,
    /// Without `q`: `degree` (default), `weighted_degree` or `chunks`.
    #[param(inline)]
    ranking: Option<Ranking>,
    /// 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct EntityList {
    /// Entities in the tenant's graph.
    total: u64,
    /// Edges in the tenant's graph.
    edges: u64,
    entities: Vec<EntityView>,
}

fn limit(value: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    let value = value.unwrap_or(default);
    if !(1..=max).contains(&value) {
        return Err(invalid_query(
            "limit",
            format!("`limit` must be between 1 and {max}, not {value}"),
        ));
    }
    Ok(value as usize)
}

/// The tenant's entities: those matching `q`, or the top ones by degree, weighted degree or
/// mentions.
#[utoipa::path(
    get,
    path = "/research/entities",
    tag = "research",
    params(EntitiesQuery),
    responses(
        (status = 200, description = "The entities", body = EntityList),
        (status = 400, description = "`invalid_query`: a parameter out of range"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn entities(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<EntitiesQuery>,
) -> Result<JsonBody<EntityList>, ApiError> {
    let params = query.params;
    let limit = limit(params.limit, 50, 500)?;
    let graph = state
        .read()
        .after(query.min_position)
        .graph(caller.tenant())
        .await?;
    if params.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(invalid_query("q", "`q` is longer than 200 characters"));
    }
    let found = match params.q.as_deref().map(str::trim) {
        Some("") => return Err(invalid_query("q", "`q` must not be blank")),
        Some(q) => graph.search(q, limit),
        None => graph.top(
            match params.ranking.unwrap_or_default() {
                Ranking::Degree => EntityRanking::Degree,
                Ranking::WeightedDegree => EntityRanking::WeightedDegree,
                Ranking::Chunks => EntityRanking::Chunks,
            },
            limit,
        ),
    };
    Ok(JsonBody(EntityList {
        total: graph.entities.len() as u64,
        edges: graph.edges.len() as u64,
        entities: found.into_iter().cloned().collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct NeighbourhoodQuery {
    /// Hops from the entity, 1 ..= 3; 1 by default.
    #[param(minimum = 1, maximum = 3)]
    depth: Option<u32>,
    /// The most neighbours listed, 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct EntityDetail {
    #[serde(flatten)]
    neighbourhood: NeighbourhoodView,
    /// The communities it belongs to, one per level: (level, community).
    communities: Vec<(i64, i64)>,
}

/// An entity with its neighbourhood: the entities within `depth` hops, nearest and strongest
/// first, and the edges among them, each weighted by normalised PMI.
#[utoipa::path(
    get,
    path = "/research/entities/{id}",
    tag = "research",
    params(("id" = Uuid, Path, description = "The entity's id"), NeighbourhoodQuery),
    responses(
        (status = 200, description = "The entity and its neighbourhood", body = EntityDetail),
        (status = 400, description = "`invalid_id` or `invalid_query`"),
        (status = 404, description = "`not_found`: no such entity in the caller's graph"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn entity(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathId(id): PathId<EntityId>,
    query: ReadQuery<NeighbourhoodQuery>,
) -> Result<JsonBody<EntityDetail>, ApiError> {
    let params = query.params;
    let depth = params.depth.unwrap_or(1);
    if !(1..=3).contains(&depth) {
        return Err(invalid_query(
            "depth",
            format!("`depth` must be between 1 and 3, not {depth}"),
        ));
    }
    let limit = limit(params.limit, 50, 500)?;
    let reads = state.read().after(query.min_position);
    let graph = reads.graph(caller.tenant()).await?;
    let node = graph
        .node(id.as_uuid())
        .ok_or_else(|| ApiError::NotFound(format!("entity {id} is not in the graph")))?;
    let found = graph.neighbourhood(node, depth, limit);
    let mut members: std::collections::HashSet<usize> = found.iter().map(|(n, _, _)| *n).collect();
    members.insert(node);
    let edges = graph
        .edges
        .iter()
        .filter(|e| members.contains(&e.source) && members.contains(&e.target))
        .map(|e| graph.edge_view(e))
        .collect();
    let neighbours = found
        .iter()
        .filter_map(|&(n, hops, _)| {
            Some(NeighbourView {
                entity: graph.entity(n)?.clone(),
                hops,
            })
        })
        .collect();
    let entity = graph
        .entity(node)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("entity {id} is not in the graph")))?;
    let communities = reads
        .entity_communities(caller.tenant(), id.as_uuid())
        .await?;
    Ok(JsonBody(EntityDetail {
        neighbourhood: NeighbourhoodView {
            entity,
            neighbours,
            edges,
        },
        communities,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PathQuery {
    /// The entity the path starts from.
    from: Uuid,
    /// The entity it ends at.
    to: Uuid,
    /// The most hops searched, 1 ..= 6; 4 by default.
    #[param(minimum = 1, maximum = 6)]
    max_hops: Option<u32>,
}

/// The shortest path between two entities (fewest hops; among those, the strongest edges),
/// with up to three chunks per step that show the two ends together.
#[utoipa::path(
    get,
    path = "/research/paths",
    tag = "research",
    params(PathQuery),
    responses(
        (status = 200, description = "The path", body = PathView),
        (status = 400, description = "`invalid_query`: a missing or malformed id, or `max_hops` out of range"),
        (status = 404, description = "`not_found`: an entity is not in the graph, or no path within `max_hops`"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn path(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<PathQuery>,
) -> Result<JsonBody<PathView>, ApiError> {
    let params = query.params;
    let max_hops = params.max_hops.unwrap_or(4);
    if !(1..=6).contains(&max_hops) {
        return Err(invalid_query(
            "max_hops",
            format!("`max_hops` must be between 1 and 6, not {max_hops}"),
        ));
    }
    let reads = state.read().after(query.min_position);
    let tenant = caller.tenant();
    let graph = reads.graph(tenant).await?;
    let node = |id: Uuid| {
        graph
            .node(id)
            .ok_or_else(|| ApiError::NotFound(format!("entity {id} is not in the graph")))
    };
    let (from, to) = (node(params.from)?, node(params.to)?);
    let (nodes, edges) = graph.shortest_path(from, to, max_hops).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no path between the two entities within {max_hops} hops"
        ))
    })?;
    let mut steps = Vec::with_capacity(edges.len());
    for edge in edges.iter().filter_map(|&e| graph.edges.get(e)) {
        let view = graph.edge_view(edge);
        let keys = reads
            .edge_evidence(tenant, view.source_id, view.target_id, 3)
            .await?;
        let evidence = reads.chunks_at(tenant, &keys, |_| 1.0).await?;
        steps.push(PathStep {
            edge: view,
            evidence,
        });
    }
    Ok(JsonBody(PathView {
        entities: nodes
            .iter()
            .filter_map(|&n| graph.entity(n).cloned())
            .collect(),
        steps,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CommunitiesQuery {
    /// 0 (default) is the coarsest level; each further level splits the large communities.
    #[param(minimum = 0, maximum = 10)]
    level: Option<i64>,
    /// 1 ..= 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CommunityList {
    /// When the communities were computed and how well they divide the graph; absent until the
    /// communities worker has run for the caller's graph.
    run: Option<CommunityRun>,
    /// The position of the graph's last change: the communities are current when
    /// `run.graph_position` equals it, and recomputed in the background otherwise.
    graph_position: i64,
    /// Largest first.
    communities: Vec<CommunityView>,
}

/// The communities of the caller's graph at one level, each with its extractive report: top
/// entities, key relations and cited chunks. Recomputed in the background after the graph
/// changes.
#[utoipa::path(
    get,
    path = "/research/communities",
    tag = "research",
    params(CommunitiesQuery),
    responses(
        (status = 200, description = "The communities", body = CommunityList),
        (status = 400, description = "`invalid_query`: a parameter out of range"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn communities(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    query: ReadQuery<CommunitiesQuery>,
) -> Result<JsonBody<CommunityList>, ApiError> {
    let params = query.params;
    let level = params.level.unwrap_or(0);
    if !(0..=10).contains(&level) {
        return Err(invalid_query(
            "level",
            format!("`level` must be between 0 and 10, not {level}"),
        ));
    }
    let limit = limit(params.limit, 50, 500)?;
    let reads = state.read().after(query.min_position);
    let run = reads.community_run(caller.tenant()).await?;
    let communities = reads
        .communities(caller.tenant(), level, limit as u32)
        .await?;
    let graph_position = reads.graph_position(caller.tenant()).await?;
    Ok(JsonBody(CommunityList {
        run,
        graph_position,
        communities,
    }))
}

#[derive(Debug, Deserialize)]
struct CommunityPath {
    level: String,
    community: String,
}

fn path_number(raw: &str, field: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| (0..=i64::from(u32::MAX)).contains(n))
        .ok_or_else(|| ApiError::InvalidId {
            field: field.to_owned(),
            message: format!("`{field}` must be a non-negative integer"),
        })
}

/// One community with its report.
#[utoipa::path(
    get,
    path = "/research/communities/{level}/{community}",
    tag = "research",
    params(
        ("level" = i64, Path, minimum = 0, maximum = 4294967295_i64, description = "The level"),
        ("community" = i64, Path, minimum = 0, maximum = 4294967295_i64, description = "The community's number within its level"),
    ),
    responses(
        (status = 200, description = "The community", body = CommunityView),
        (status = 400, description = "`invalid_id`: a level or number that is not a non-negative integer"),
        (status = 404, description = "`not_found`: no such community"),
    )
)]
#[tracing::instrument(skip_all, fields(plasma.tenant = %caller.tenant()))]
async fn community(
    State(state): State<AppState>,
    caller: Authorized<Queries>,
    PathParams(path): PathParams<CommunityPath>,
    query: ReadQuery<crate::extract::NoParams>,
) -> Result<JsonBody<CommunityView>, ApiError> {
    let level = path_number(&path.level, "level")?;
    let number = path_number(&path.community, "community")?;
    state
        .read()
        .after(query.min_position)
        .community(caller.tenant(), level, number)
        .await?
        .map(JsonBody)
        .ok_or_else(|| ApiError::NotFound(format!("community {level}/{number} does not exist")))
}
