//! Leiden community detection (Traag, Waltman & van Eck 2019, "From Louvain to Leiden:
//! guaranteeing well-connected communities") on undirected weighted graphs, maximising modularity
//! with a resolution parameter.
//!
//! Pure and std-only, like the rest of the domain: randomness comes from a small SplitMix64 seeded
//! by the caller, so a fixed seed always gives the same communities. Each iteration is the paper's
//! three phases: fast local moving (a queue of nodes visited in a seeded random order), refinement
//! (singletons merged, at random, into well-connected sub-communities of their community) and
//! aggregation of the refined partition, whose nodes start in their unrefined community. Iterations
//! repeat until one moves no node. `scripts/leiden-compare.py` runs the reference implementation
//! (leidenalg) on the same edge list and scores a membership with igraph's modularity.

use std::collections::{HashMap, VecDeque};

/// A move must improve a node's gain by more than this times its strength: floating-point noise
/// must never make two communities trade a node back and forth.
const MIN_GAIN: f64 = 1e-12;

/// An undirected weighted graph in compressed sparse row form, which the inner loops scan.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The neighbours of `v` are `targets[offsets[v]..offsets[v + 1]]` (self-loops excluded).
    offsets: Vec<usize>,
    targets: Vec<usize>,
    weights: Vec<f64>,
    /// `A_vv`: twice the weight of `v`'s self-loops (a loop counts twice in the strength, as in
    /// igraph), which keeps aggregation exact: a community's internal weight becomes the loop.
    self_loops: Vec<f64>,
    /// `k_v = Σ_u A_vu`, self-loops included.
    strength: Vec<f64>,
    /// `2m = Σ_v k_v`.
    total: f64,
}

impl Graph {
    /// The graph on nodes `0..nodes` with these undirected edges `(a, b, weight)`. Parallel edges
    /// are summed and self-loops kept; edges with an endpoint out of range or a weight that is not
    /// a finite positive number are ignored, so any input gives a valid graph.
    pub fn from_edges(nodes: usize, edges: &[(usize, usize, f64)]) -> Graph {
        let mut self_loops = vec![0.0; nodes];
        let mut entries: Vec<(usize, usize, f64)> = Vec::with_capacity(edges.len() * 2);
        for &(a, b, w) in edges {
            if a >= nodes || b >= nodes || !w.is_finite() || w <= 0.0 {
                continue;
            }
            if a == b {
                self_loops[a] += 2.0 * w;
            } else {
                entries.push((a, b, w));
                entries.push((b, a, w));
            }
        }
        // Stable: both directions of parallel edges are summed in the same order, so the
        // adjacency stays exactly symmetric.
        entries.sort_by_key(|&(a, b, _)| (a, b));

        let mut offsets = Vec::with_capacity(nodes + 1);
        let mut targets: Vec<usize> = Vec::with_capacity(entries.len());
        let mut weights: Vec<f64> = Vec::with_capacity(entries.len());
        offsets.push(0);
        let mut row = 0;
        let mut row_start = 0;
        for (a, b, w) in entries {
            while row < a {
                row += 1;
                offsets.push(targets.len());
                row_start = targets.len();
            }
            let len = targets.len();
            if len > row_start && targets.get(len - 1) == Some(&b) {
                if let Some(sum) = weights.last_mut() {
                    *sum += w;
                }
            } else {
                targets.push(b);
                weights.push(w);
            }
        }
        while row < nodes {
            row += 1;
            offsets.push(targets.len());
        }
        Graph::from_parts(offsets, targets, weights, self_loops)
    }

    /// How many nodes the graph has (isolated ones included).
    pub fn node_count(&self) -> usize {
        self.strength.len()
    }

    /// Strengths and total weight derived from the adjacency.
    fn from_parts(
        offsets: Vec<usize>,
        targets: Vec<usize>,
        weights: Vec<f64>,
        self_loops: Vec<f64>,
    ) -> Graph {
        let mut graph = Graph {
            offsets,
            targets,
            weights,
            strength: Vec::new(),
            self_loops,
            total: 0.0,
        };
        graph.strength = (0..graph.self_loops.len())
            .map(|v| graph.self_loops[v] + graph.neighbors(v).map(|(_, w)| w).sum::<f64>())
            .collect();
        graph.total = graph.strength.iter().sum();
        graph
    }

    /// `v`'s neighbours (itself excluded) with the edge weights.
    fn neighbors(&self, v: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let start = self.offsets.get(v).copied().unwrap_or(0);
        let end = self.offsets.get(v + 1).copied().unwrap_or(start).max(start);
        let targets = self.targets.get(start..end).unwrap_or(&[]);
        let weights = self.weights.get(start..end).unwrap_or(&[]);
        targets.iter().copied().zip(weights.iter().copied())
    }

    /// Whether modularity is defined: some edge weight, and a finite total.
    fn has_weight(&self) -> bool {
        self.total > 0.0 && self.total.is_finite()
    }

    /// The graph whose nodes are the clusters `0..clusters` of `cluster`: the weight between two
    /// clusters is the sum over their members, a cluster's internal weight its self-loop.
    fn aggregate(&self, cluster: &[usize], clusters: usize) -> Graph {
        // The members of each cluster, contiguous (a counting sort).
        let mut count = vec![0usize; clusters];
        for &c in cluster {
            count[c] += 1;
        }
        let mut start = Vec::with_capacity(clusters + 1);
        let mut sum = 0;
        start.push(0);
        for &c in &count {
            sum += c;
            start.push(sum);
        }
        let mut fill = start.clone();
        let mut members = vec![0usize; cluster.len()];
        for (v, &c) in cluster.iter().enumerate() {
            members[fill[c]] = v;
            fill[c] += 1;
        }

        let mut link = vec![0.0; clusters];
        let mut listed = vec![false; clusters];
        let mut touched: Vec<usize> = Vec::new();
        let mut offsets = Vec::with_capacity(clusters + 1);
        let mut targets = Vec::new();
        let mut weights = Vec::new();
        let mut self_loops = Vec::with_capacity(clusters);
        offsets.push(0);
        for (c, range) in start.windows(2).enumerate() {
            let mut inside = 0.0;
            for &v in members.get(range[0]..range[1]).unwrap_or(&[]) {
                inside += self.self_loops[v];
                for (u, w) in self.neighbors(v) {
                    let d = cluster[u];
                    if d == c {
                        inside += w;
                    } else {
                        if !listed[d] {
                            listed[d] = true;
                            touched.push(d);
                        }
                        link[d] += w;
                    }
                }
            }
            touched.sort_unstable();
            for &d in &touched {
                targets.push(d);
                weights.push(link[d]);
                link[d] = 0.0;
                listed[d] = false;
            }
            touched.clear();
            self_loops.push(inside);
            offsets.push(targets.len());
        }
        Graph::from_parts(offsets, targets, weights, self_loops)
    }

    /// The subgraph induced by `nodes` (node `i` of it is `nodes[i]`). `local` is scratch of
    /// `node_count()` entries, all `usize::MAX`, and is left that way.
    fn induced(&self, nodes: &[usize], local: &mut [usize]) -> Graph {
        for (i, &v) in nodes.iter().enumerate() {
            local[v] = i;
        }
        let mut offsets = Vec::with_capacity(nodes.len() + 1);
        let mut targets = Vec::new();
        let mut weights = Vec::new();
        let mut self_loops = Vec::with_capacity(nodes.len());
        offsets.push(0);
        for &v in nodes {
            for (u, w) in self.neighbors(v) {
                if local[u] != usize::MAX {
                    targets.push(local[u]);
                    weights.push(w);
                }
            }
            offsets.push(targets.len());
            self_loops.push(self.self_loops[v]);
        }
        for &v in nodes {
            local[v] = usize::MAX;
        }
        Graph::from_parts(offsets, targets, weights, self_loops)
    }
}

/// How [`leiden`] runs. The defaults are the paper's and leidenalg's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeidenOptions {
    /// γ: higher gives more, smaller communities; 1.0 is plain modularity.
    pub resolution: f64,
    /// The same seed always gives the same communities.
    pub seed: u64,
    /// At most this many iterations (each: move, refine, aggregate until nothing aggregates);
    /// they stop earlier as soon as one moves no node. 0 leaves every node alone.
    pub max_iterations: usize,
    /// θ of the refinement: a node joins a sub-community with probability ∝ exp(gain / θ), the
    /// gain in edge-weight units (as igraph does). Small θ is nearly greedy; 0 is greedy.
    pub randomness: f64,
}

impl Default for LeidenOptions {
    fn default() -> Self {
        LeidenOptions {
            resolution: 1.0,
            seed: 42,
            max_iterations: 50,
            randomness: 0.01,
        }
    }
}

/// Communities maximising modularity: `membership[v]` is node `v`'s community, numbered from 0
/// in the order of their first node. Every community is connected; isolated nodes are alone.
pub fn leiden(graph: &Graph, options: &LeidenOptions) -> Vec<usize> {
    let mut membership: Vec<usize> = (0..graph.node_count()).collect();
    if !graph.has_weight() {
        return membership;
    }
    let mut rng = SplitMix64(options.seed);
    for _ in 0..options.max_iterations {
        if !iterate(graph, &mut membership, options, &mut rng) {
            break;
        }
    }
    renumber(&membership).0
}

/// Newman's modularity with resolution γ, the definition igraph uses:
/// `Q = 1/(2m) Σ_ij (A_ij − γ k_i k_j / (2m)) δ(c_i, c_j)` (a self-loop counts twice in `A_ii`).
/// 0 for a graph without edges (igraph says NaN there); NaN when `membership` does not have one
/// entry per node.
pub fn modularity(graph: &Graph, membership: &[usize], resolution: f64) -> f64 {
    if membership.len() != graph.node_count() {
        return f64::NAN;
    }
    if !graph.has_weight() {
        return 0.0;
    }
    let (labels, count) = renumber(membership);
    let mut inside = vec![0.0; count];
    let mut weight = vec![0.0; count];
    for (v, &c) in labels.iter().enumerate() {
        weight[c] += graph.strength[v];
        inside[c] += graph.self_loops[v]
            + graph
                .neighbors(v)
                .filter(|&(u, _)| labels[u] == c)
                .map(|(_, w)| w)
                .sum::<f64>();
    }
    let total = graph.total;
    inside
        .iter()
        .zip(&weight)
        .map(|(&e, &k)| e - resolution * k * (k / total))
        .sum::<f64>()
        / total
}

/// Communities at several granularities (GraphRAG-style): level 0 is [`leiden`] on the whole
/// graph; each next level splits every community of more than `max_community_size` nodes by
/// running Leiden on its induced subgraph (seeded by the seed, the level and the community, so
/// it stays deterministic) and keeps the others whole. Each level is a membership over all nodes,
/// numbered from 0 in the order of first node. At most `max_levels` levels (0 gives none); stops
/// when no community is too large or none of the large ones splits any further.
pub fn hierarchical_leiden(
    graph: &Graph,
    options: &LeidenOptions,
    max_community_size: usize,
    max_levels: usize,
) -> Vec<Vec<usize>> {
    let mut levels = Vec::new();
    if max_levels == 0 {
        return levels;
    }
    let mut local = vec![usize::MAX; graph.node_count()];
    let mut current = leiden(graph, options);
    loop {
        let count = current.iter().max().map_or(0, |&c| c + 1);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (v, &c) in current.iter().enumerate() {
            members[c].push(v);
        }
        if levels.len() + 1 >= max_levels || members.iter().all(|m| m.len() <= max_community_size) {
            levels.push(current);
            break;
        }
        let level = levels.len() as u64 + 1;
        let mut next = vec![0usize; current.len()];
        let mut next_id = 0;
        let mut split = false;
        for (c, nodes) in members.iter().enumerate() {
            if nodes.len() <= max_community_size {
                for &v in nodes {
                    next[v] = next_id;
                }
                next_id += 1;
                continue;
            }
            let sub = graph.induced(nodes, &mut local);
            let sub_options = LeidenOptions {
                seed: mix_seed(options.seed, level, c as u64),
                ..*options
            };
            let parts = leiden(&sub, &sub_options);
            let parts_count = parts.iter().max().map_or(0, |&p| p + 1);
            split |= parts_count > 1;
            for (&v, &p) in nodes.iter().zip(&parts) {
                next[v] = next_id + p;
            }
            next_id += parts_count;
        }
        levels.push(current);
        if !split {
            break;
        }
        current = renumber(&next).0;
    }
    levels
}

/// One Leiden iteration from `membership` (over the nodes of `graph`), which it improves in
/// place. Whether any node moved.
fn iterate(
    graph: &Graph,
    membership: &mut [usize],
    options: &LeidenOptions,
    rng: &mut SplitMix64,
) -> bool {
    let gamma = options.resolution;
    // The current aggregate (None: the graph itself), the partition of its nodes, and which of
    // its nodes each node of the graph is in.
    let mut level: Option<Graph> = None;
    let mut partition = renumber(membership).0;
    let mut node_of: Vec<usize> = (0..graph.node_count()).collect();
    let mut changed = false;
    loop {
        let current = level.as_ref().unwrap_or(graph);
        changed |= move_nodes_fast(current, &mut partition, gamma, rng);
        let nodes = current.node_count();
        if count_distinct(&partition, nodes) == nodes {
            break;
        }
        let (refined, clusters) = refine(current, &partition, gamma, options.randomness, rng);
        if clusters == nodes {
            // Nothing merged: aggregating would give the same graph again.
            break;
        }
        let aggregate = current.aggregate(&refined, clusters);
        // Each refined cluster lies inside one community: the aggregate starts from those.
        let mut start = vec![0usize; clusters];
        for (&r, &p) in refined.iter().zip(&partition) {
            start[r] = p;
        }
        for node in node_of.iter_mut() {
            *node = refined[*node];
        }
        partition = renumber(&start).0;
        level = Some(aggregate);
    }
    for (m, &node) in membership.iter_mut().zip(&node_of) {
        *m = partition[node];
    }
    // Leiden's guarantee, kept when the refinement could not merge anything: a community the
    // moves left disconnected becomes its components, which never lowers modularity.
    split_disconnected(graph, membership) || changed
}

/// The fast local moving phase: nodes, queued in a random order, each move to the neighbouring
/// community (or a new one) with the largest modularity gain; the neighbours of a moved node
/// outside its new community are queued again. Whether any node moved.
fn move_nodes_fast(
    graph: &Graph,
    partition: &mut [usize],
    gamma: f64,
    rng: &mut SplitMix64,
) -> bool {
    let n = graph.node_count();
    let scale = gamma / graph.total;
    let mut weight = vec![0.0; n];
    let mut size = vec![0usize; n];
    for (&c, &k) in partition.iter().zip(&graph.strength) {
        weight[c] += k;
        size[c] += 1;
    }
    let mut empty: Vec<usize> = (0..n).filter(|&c| size[c] == 0).collect();
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut queue: VecDeque<usize> = order.into();
    let mut queued = vec![true; n];
    let mut link = vec![0.0; n];
    let mut listed = vec![false; n];
    let mut candidates: Vec<usize> = Vec::new();
    let mut moved = false;
    while let Some(v) = queue.pop_front() {
        queued[v] = false;
        let old = partition[v];
        let k = graph.strength[v];
        listed[old] = true;
        candidates.push(old);
        for (u, w) in graph.neighbors(v) {
            let c = partition[u];
            if !listed[c] {
                listed[c] = true;
                candidates.push(c);
            }
            link[c] += w;
        }
        weight[old] -= k;
        size[old] -= 1;
        if size[old] == 0 {
            weight[old] = 0.0;
        }
        // The gain of joining c, up to a term that does not depend on c.
        let stay = link[old] - k * (weight[old] * scale);
        let mut best = old;
        let mut best_gain = stay;
        for &c in &candidates {
            let gain = link[c] - k * (weight[c] * scale);
            if gain > best_gain {
                best = c;
                best_gain = gain;
            }
        }
        for &c in &candidates {
            link[c] = 0.0;
            listed[c] = false;
        }
        candidates.clear();
        // A community of its own gains 0 (the same as staying when v is alone already).
        let mut alone = false;
        if size[old] > 0 && best_gain < 0.0 {
            if let Some(&c) = empty.last() {
                best = c;
                best_gain = 0.0;
                alone = true;
            }
        }
        if best != old && best_gain - stay <= MIN_GAIN * k {
            best = old;
            alone = false;
        }
        if alone {
            empty.pop();
        }
        weight[best] += k;
        size[best] += 1;
        partition[v] = best;
        if best != old {
            moved = true;
            if size[old] == 0 {
                empty.push(old);
            }
            for (u, _) in graph.neighbors(v) {
                if !queued[u] && partition[u] != best {
                    queued[u] = true;
                    queue.push_back(u);
                }
            }
        }
    }
    moved
}

/// The refinement phase: within each community, starting from singletons, every well-connected
/// node still alone (visited in a random order) joins a well-connected sub-community of the same
/// community, chosen with probability ∝ exp(gain / θ) among those it does not lower modularity
/// for (staying alone is one of them, gain 0). Sub-communities are therefore connected. Returns
/// the sub-community of each node, numbered `0..count`, and `count`.
fn refine(
    graph: &Graph,
    partition: &[usize],
    gamma: f64,
    theta: f64,
    rng: &mut SplitMix64,
) -> (Vec<usize>, usize) {
    let n = graph.node_count();
    let scale = gamma / graph.total;
    let mut community_weight = vec![0.0; n];
    for (&c, &k) in partition.iter().zip(&graph.strength) {
        community_weight[c] += k;
    }
    let mut cluster: Vec<usize> = (0..n).collect();
    let mut cluster_weight = graph.strength.clone();
    let mut size = vec![1usize; n];
    // E(C, S − C): the weight between a cluster and the rest of its community.
    let mut external: Vec<f64> = (0..n)
        .map(|v| {
            graph
                .neighbors(v)
                .filter(|&(u, _)| partition[u] == partition[v])
                .map(|(_, w)| w)
                .sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut link = vec![0.0; n];
    let mut listed = vec![false; n];
    let mut candidates: Vec<usize> = Vec::new();
    let mut choices: Vec<(usize, f64)> = Vec::new();
    for &v in &order {
        if cluster[v] != v || size[v] != 1 {
            continue;
        }
        let community = partition[v];
        let k = graph.strength[v];
        let total = community_weight[community];
        if external[v] < k * ((total - k) * scale) {
            continue;
        }
        for (u, w) in graph.neighbors(v) {
            if partition[u] != community {
                continue;
            }
            let c = cluster[u];
            if !listed[c] {
                listed[c] = true;
                candidates.push(c);
            }
            link[c] += w;
        }
        choices.clear();
        choices.push((v, 0.0));
        let mut best = v;
        let mut best_gain = 0.0;
        for &c in &candidates {
            let weight = cluster_weight[c];
            if external[c] < weight * ((total - weight) * scale) {
                continue;
            }
            let gain = link[c] - k * (weight * scale);
            if gain >= 0.0 {
                choices.push((c, gain));
                if gain > best_gain {
                    best = c;
                    best_gain = gain;
                }
            }
        }
        for &c in &candidates {
            link[c] = 0.0;
            listed[c] = false;
        }
        candidates.clear();
        let chosen = if theta > 0.0 && theta.is_finite() {
            rng.choose(&mut choices, best_gain, theta).unwrap_or(best)
        } else {
            best
        };
        if chosen != v {
            cluster[v] = chosen;
            cluster_weight[chosen] += k;
            cluster_weight[v] = 0.0;
            size[chosen] += 1;
            size[v] = 0;
            for (u, w) in graph.neighbors(v) {
                if partition[u] != community {
                    continue;
                }
                if cluster[u] == chosen {
                    external[chosen] -= w;
                } else {
                    external[chosen] += w;
                }
            }
        }
    }
    renumber(&cluster)
}

/// Splits every community of `membership` into its connected components (numbered in the order
/// of their first node). Whether any community was split.
fn split_disconnected(graph: &Graph, membership: &mut [usize]) -> bool {
    let n = graph.node_count();
    let before = count_distinct(membership, n);
    let mut component = vec![usize::MAX; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if component[root] != usize::MAX {
            continue;
        }
        let community = membership[root];
        component[root] = next;
        stack.push(root);
        while let Some(v) = stack.pop() {
            for (u, _) in graph.neighbors(v) {
                if component[u] == usize::MAX && membership[u] == community {
                    component[u] = next;
                    stack.push(u);
                }
            }
        }
        next += 1;
    }
    if next == before {
        return false;
    }
    membership.copy_from_slice(&component);
    true
}

/// Labels renumbered `0..count` in the order of first appearance, and `count`.
fn renumber(labels: &[usize]) -> (Vec<usize>, usize) {
    let bound = labels.len();
    let mut dense = vec![usize::MAX; bound];
    let mut sparse: HashMap<usize, usize> = HashMap::new();
    let mut next = 0;
    let renumbered = labels
        .iter()
        .map(|&label| {
            let slot = if label < bound {
                &mut dense[label]
            } else {
                sparse.entry(label).or_insert(usize::MAX)
            };
            if *slot == usize::MAX {
                *slot = next;
                next += 1;
            }
            *slot
        })
        .collect();
    (renumbered, next)
}

/// How many distinct labels, all below `bound`, `labels` has.
fn count_distinct(labels: &[usize], bound: usize) -> usize {
    let mut seen = vec![false; bound];
    let mut count = 0;
    for &label in labels {
        if let Some(slot) = seen.get_mut(label) {
            if !*slot {
                *slot = true;
                count += 1;
            }
        }
    }
    count
}

/// A seed for one sub-community of [`hierarchical_leiden`], distinct per level and community.
fn mix_seed(seed: u64, level: u64, community: u64) -> u64 {
    let mut rng = SplitMix64(seed ^ level.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.0 ^= rng.next_u64() ^ community.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    rng.next_u64()
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast and good enough to shuffle and sample.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below 2^-40 for our sizes).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// One of `choices` (item, gain) with probability ∝ exp(gain / theta); `best` is their
    /// largest gain, subtracted first so that no exponential overflows. Gains become weights.
    fn choose(&mut self, choices: &mut [(usize, f64)], best: f64, theta: f64) -> Option<usize> {
        let mut sum = 0.0;
        for choice in choices.iter_mut() {
            choice.1 = ((choice.1 - best) / theta).exp();
            sum += choice.1;
        }
        let mut target = self.next_f64() * sum;
        for &(item, weight) in choices.iter() {
            if target < weight {
                return Some(item);
            }
            target -= weight;
        }
        choices.last().map(|&(item, _)| item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zachary's karate club (igraph's `Famous("Zachary")`, 0-based).
    #[rustfmt::skip]
    const KARATE: [(usize, usize); 78] = [
        (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (0, 10), (0, 11), (0, 12),
        (0, 13), (0, 17), (0, 19), (0, 21), (0, 31), (1, 2), (1, 3), (1, 7), (1, 13), (1, 17),
        (1, 19), (1, 21), (1, 30), (2, 3), (2, 7), (2, 27), (2, 28), (2, 32), (2, 9), (2, 8),
        (2, 13), (3, 7), (3, 12), (3, 13), (4, 6), (4, 10), (5, 6), (5, 10), (5, 16), (6, 16),
        (8, 30), (8, 32), (8, 33), (9, 33), (13, 33), (14, 32), (14, 33), (15, 32), (15, 33),
        (18, 32), (18, 33), (19, 33), (20, 32), (20, 33), (22, 32), (22, 33), (23, 25), (23, 27),
        (23, 32), (23, 33), (23, 29), (24, 25), (24, 27), (24, 31), (25, 31), (26, 29), (26, 33),
        (27, 33), (28, 31), (28, 33), (29, 32), (29, 33), (30, 32), (30, 33), (31, 32), (31, 33),
        (32, 33),
    ];

    fn unweighted(nodes: usize, edges: &[(usize, usize)]) -> Graph {
        let edges: Vec<(usize, usize, f64)> = edges.iter().map(|&(a, b)| (a, b, 1.0)).collect();
        Graph::from_edges(nodes, &edges)
    }

    /// `count` cliques of `size` nodes, clique `c` on nodes `c*size..(c+1)*size`, each joined to
    /// the next by one edge (the last to the first when `ring`).
    fn cliques(count: usize, size: usize, ring: bool) -> Graph {
        let mut edges = Vec::new();
        for c in 0..count {
            let base = c * size;
            for i in 0..size {
                for j in i + 1..size {
                    edges.push((base + i, base + j));
                }
            }
            if ring || c + 1 < count {
                edges.push((base + size - 1, ((c + 1) % count) * size));
            }
        }
        unweighted(count * size, &edges)
    }

    /// `groups` planted groups of `size` nodes: each node gets `inside` random edges within its
    /// group and `across` to anywhere, so some nodes hang on by one edge.
    fn planted(groups: usize, size: usize, inside: usize, across: usize, seed: u64) -> Graph {
        let mut rng = SplitMix64(seed);
        let n = groups * size;
        let mut edges = Vec::new();
        for v in 0..n {
            let group = v / size;
            for _ in 0..inside {
                let u = group * size + rng.below(size);
                edges.push((v, u, 1.0 + rng.below(3) as f64));
            }
            for _ in 0..across {
                edges.push((v, rng.below(n), 1.0));
            }
        }
        Graph::from_edges(n, &edges)
    }

    fn communities(membership: &[usize]) -> Vec<Vec<usize>> {
        let count = membership.iter().max().map_or(0, |&c| c + 1);
        let mut members = vec![Vec::new(); count];
        for (v, &c) in membership.iter().enumerate() {
            members[c].push(v);
        }
        members
    }

    fn assert_connected(graph: &Graph, membership: &[usize]) {
        for (c, nodes) in communities(membership).iter().enumerate() {
            assert!(
                !nodes.is_empty(),
                "community {c} is empty: numbering has a gap"
            );
            let mut seen = vec![false; graph.node_count()];
            let mut stack = vec![nodes[0]];
            seen[nodes[0]] = true;
            let mut reached = 1;
            while let Some(v) = stack.pop() {
                for (u, _) in graph.neighbors(v) {
                    if !seen[u] && membership[u] == c {
                        seen[u] = true;
                        reached += 1;
                        stack.push(u);
                    }
                }
            }
            assert_eq!(reached, nodes.len(), "community {c} is not connected");
        }
    }

    fn assert_first_appearance_order(membership: &[usize]) {
        let mut next = 0;
        for &c in membership {
            assert!(c <= next, "community {c} appears before {next}");
            if c == next {
                next += 1;
            }
        }
    }

    #[test]
    fn two_cliques_joined_by_one_edge_are_two_communities() {
        let graph = cliques(2, 5, false);
        let membership = leiden(&graph, &LeidenOptions::default());
        assert_eq!(membership, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn ring_of_cliques_gives_each_clique_its_community() {
        // 8 cliques of 6: m = 8 · 16, each clique has 15 edges inside and strength 32, so
        // Q = 8 · (15/128 − (32/256)²) = 0.8125 (igraph agrees), and no merge does better.
        let graph = cliques(8, 6, true);
        let membership = leiden(&graph, &LeidenOptions::default());
        let expected: Vec<usize> = (0..48).map(|v| v / 6).collect();
        assert_eq!(membership, expected);
        assert!((modularity(&graph, &membership, 1.0) - 0.8125).abs() < 1e-12);
    }

    #[test]
    fn same_seed_gives_the_same_membership() {
        let graph = planted(10, 30, 3, 1, 7);
        let options = LeidenOptions {
            seed: 99,
            ..LeidenOptions::default()
        };
        let first = leiden(&graph, &options);
        assert_eq!(first, leiden(&graph, &options));
        assert_first_appearance_order(&first);
        let other = leiden(
            &graph,
            &LeidenOptions {
                seed: 100,
                ..options
            },
        );
        assert_eq!(other.len(), first.len());
    }

    #[test]
    fn one_community_has_zero_modularity() {
        let graph = planted(4, 10, 3, 1, 1);
        assert!(modularity(&graph, &[0; 40], 1.0).abs() < 1e-12);
        assert!((modularity(&graph, &[7; 40], 0.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn empty_graph_gives_nothing() {
        let graph = Graph::from_edges(0, &[]);
        assert_eq!(graph.node_count(), 0);
        assert!(leiden(&graph, &LeidenOptions::default()).is_empty());
        assert_eq!(modularity(&graph, &[], 1.0), 0.0);
        assert_eq!(
            hierarchical_leiden(&graph, &LeidenOptions::default(), 10, 3),
            vec![Vec::<usize>::new()]
        );
    }

    #[test]
    fn isolated_nodes_are_alone() {
        let graph = unweighted(7, &[(1, 2), (2, 3), (1, 3)]);
        let membership = leiden(&graph, &LeidenOptions::default());
        assert_eq!(membership, vec![0, 1, 1, 1, 2, 3, 4]);
        let none = leiden(&unweighted(3, &[]), &LeidenOptions::default());
        assert_eq!(none, vec![0, 1, 2]);
    }

    #[test]
    fn bad_edges_are_ignored_and_parallel_ones_summed() {
        let graph = Graph::from_edges(
            3,
            &[
                (0, 1, 1.0),
                (1, 0, 2.0),
                (0, 5, 1.0),
                (7, 7, 1.0),
                (1, 2, f64::NAN),
                (1, 2, f64::INFINITY),
                (1, 2, -1.0),
                (1, 2, 0.0),
            ],
        );
        assert_eq!(graph.node_count(), 3);
        assert_eq!(graph.neighbors(0).collect::<Vec<_>>(), vec![(1, 3.0)]);
        assert_eq!(graph.neighbors(1).collect::<Vec<_>>(), vec![(0, 3.0)]);
        assert_eq!(graph.neighbors(2).count(), 0);
        assert_eq!(graph.total, 6.0);
        assert_eq!(leiden(&graph, &LeidenOptions::default()), vec![0, 0, 1]);
        assert!(modularity(&graph, &[0, 0], 1.0).is_nan());
        // Community ids need not be small.
        let q = modularity(&graph, &[usize::MAX, usize::MAX, 3], 1.0);
        assert!((q - modularity(&graph, &[0, 0, 1], 1.0)).abs() < 1e-15);
    }

    #[test]
    fn self_loops_count_twice_like_igraph() {
        // Values from igraph 1.0's Graph.modularity on the same weighted graph.
        let graph = Graph::from_edges(
            6,
            &[
                (0, 1, 1.0),
                (1, 2, 1.0),
                (0, 2, 1.0),
                (2, 3, 1.0),
                (3, 4, 1.0),
                (3, 3, 2.0),
                (5, 5, 3.0),
                (0, 0, 0.5),
            ],
        );
        let cases: [([usize; 6], f64, f64); 3] = [
            ([0, 0, 0, 1, 1, 2], 0.5668934240362812, 0.7358276643990929),
            ([0, 0, 0, 0, 0, 0], 0.0, 0.5),
            ([0, 1, 2, 3, 4, 5], 0.308390022675737, 0.4160997732426304),
        ];
        for (membership, at_one, at_half) in cases {
            assert!((modularity(&graph, &membership, 1.0) - at_one).abs() < 1e-12);
            assert!((modularity(&graph, &membership, 0.5) - at_half).abs() < 1e-12);
        }
        // leidenalg finds the same partition; a node with only a loop stays alone.
        assert_eq!(
            leiden(&graph, &LeidenOptions::default()),
            vec![0, 0, 0, 1, 1, 2]
        );
    }

    #[test]
    fn karate_club_reaches_the_optimum() {
        let graph = unweighted(34, &KARATE);
        // leidenalg's partition, the known optimum 0.4197896: igraph's formula, same value.
        let best = [
            1, 1, 1, 1, 3, 3, 3, 1, 0, 0, 3, 1, 1, 1, 0, 0, 3, 1, 0, 1, 0, 1, 0, 2, 2, 2, 0, 2, 2,
            0, 0, 2, 0, 0,
        ];
        assert!((modularity(&graph, &best, 1.0) - 0.41978961209730437).abs() < 1e-12);
        for seed in 0..10 {
            let options = LeidenOptions {
                seed,
                ..LeidenOptions::default()
            };
            let membership = leiden(&graph, &options);
            let q = modularity(&graph, &membership, 1.0);
            assert!(q >= 0.41, "seed {seed}: modularity {q}");
            assert_connected(&graph, &membership);
        }
    }

    #[test]
    fn higher_resolution_gives_more_communities() {
        let graph = unweighted(34, &KARATE);
        let coarse = leiden(&graph, &LeidenOptions::default());
        let options = LeidenOptions {
            resolution: 3.0,
            ..LeidenOptions::default()
        };
        let fine = leiden(&graph, &options);
        assert!(fine.iter().max() > coarse.iter().max());
    }

    #[test]
    fn communities_are_connected() {
        for seed in 0..5 {
            // Sparse: many nodes hang on by one or two edges, where Louvain disconnects.
            let graph = planted(20, 25, 1, 1, seed);
            let options = LeidenOptions {
                seed,
                ..LeidenOptions::default()
            };
            let membership = leiden(&graph, &options);
            assert_eq!(membership.len(), 500);
            assert_connected(&graph, &membership);
            assert_first_appearance_order(&membership);
            assert!(modularity(&graph, &membership, 1.0) > 0.5);
        }
    }

    #[test]
    fn greedy_refinement_and_no_iterations() {
        let graph = unweighted(34, &KARATE);
        let greedy = LeidenOptions {
            randomness: 0.0,
            ..LeidenOptions::default()
        };
        let membership = leiden(&graph, &greedy);
        assert!(modularity(&graph, &membership, 1.0) >= 0.40);
        let none = LeidenOptions {
            max_iterations: 0,
            ..LeidenOptions::default()
        };
        assert_eq!(leiden(&graph, &none), (0..34).collect::<Vec<_>>());
    }

    #[test]
    fn hierarchical_levels_split_big_communities() {
        // 30 cliques of 5 in a ring: the resolution limit makes modularity merge neighbouring
        // cliques (igraph: 0.8863 against 0.8758 for the cliques); within such a community the
        // cliques are the best split.
        let graph = cliques(30, 5, true);
        let options = LeidenOptions::default();
        let levels = hierarchical_leiden(&graph, &options, 5, 4);
        assert_eq!(levels.len(), 2);
        assert!(communities(&levels[0]).iter().any(|c| c.len() > 5));
        assert!(modularity(&graph, &levels[0], 1.0) > 0.88);
        let cliques: Vec<usize> = (0..150).map(|v| v / 5).collect();
        assert_eq!(levels[1], cliques);
        // Each level refines the one before.
        for nodes in communities(&levels[1]) {
            assert!(nodes.iter().all(|&v| levels[0][v] == levels[0][nodes[0]]));
        }
        assert_eq!(levels, hierarchical_leiden(&graph, &options, 5, 4));
        assert_eq!(
            hierarchical_leiden(&graph, &options, 5, 1),
            vec![levels[0].clone()]
        );
        assert!(hierarchical_leiden(&graph, &options, 5, 0).is_empty());
        assert_eq!(
            hierarchical_leiden(&graph, &options, 1000, 4),
            vec![levels[0].clone()]
        );
    }

    #[test]
    fn unsplittable_communities_stop_the_levels() {
        // A clique of 8 is one community however often Leiden runs on it.
        let edges: Vec<(usize, usize)> = (0..8)
            .flat_map(|i| (i + 1..8).map(move |j| (i, j)))
            .collect();
        let graph = unweighted(8, &edges);
        let levels = hierarchical_leiden(&graph, &LeidenOptions::default(), 3, 5);
        assert_eq!(levels, vec![vec![0; 8]]);
    }
}
