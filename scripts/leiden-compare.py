#!/usr/bin/env python3
"""Runs the reference Leiden implementation (leidenalg on python-igraph) on an edge list, so the
Rust one in domain/src/research/leiden.rs can be compared with it on quality and speed.

    leiden-compare.py EDGES.tsv [--membership FILE]

EDGES.tsv: first line `# nodes N`, then one `a<TAB>b<TAB>weight` line per undirected edge with
integer node ids 0..N-1 (other lines starting with `#` and blank lines are skipped). Prints one
JSON line: nodes, edges, communities, modularity (igraph's g.modularity of leidenalg's
partition) and seconds (wall time of find_partition only). With --membership FILE (one community
id per line, for nodes 0..N-1, e.g. the Rust result) it also prints their_modularity: that
membership scored by the same igraph formula.

Needs the venv scripts/install-leiden-peer.sh makes (~/.cache/plasma/tools/venv-leiden); run it
with that venv's python.
"""

import argparse
import json
import sys
import time

import igraph
import leidenalg


def read_edges(path):
    nodes = None
    edges = []
    weights = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line[1:].split()
                if nodes is None and len(parts) == 2 and parts[0] == "nodes":
                    nodes = int(parts[1])
                continue
            parts = line.split("\t")
            if len(parts) not in (2, 3):
                sys.exit(f"{path}:{number}: expected a<TAB>b<TAB>weight")
            a, b = int(parts[0]), int(parts[1])
            w = float(parts[2]) if len(parts) == 3 else 1.0
            edges.append((a, b))
            weights.append(w)
    if nodes is None:
        nodes = 1 + max((max(a, b) for a, b in edges), default=-1)
    for a, b in edges:
        if not (0 <= a < nodes and 0 <= b < nodes):
            sys.exit(f"{path}: edge ({a}, {b}) outside 0..{nodes - 1}")
    return nodes, edges, weights


def read_membership(path, nodes):
    with open(path, encoding="utf-8") as f:
        membership = [int(line) for line in f if line.strip()]
    if len(membership) != nodes:
        sys.exit(f"{path}: {len(membership)} community ids for {nodes} nodes")
    return membership


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("edges", help="edge list TSV (first line '# nodes N')")
    parser.add_argument("--membership", help="one community id per line, scored by igraph too")
    args = parser.parse_args()

    nodes, edges, weights = read_edges(args.edges)
    g = igraph.Graph(n=nodes, edges=edges, directed=False)
    g.es["weight"] = weights

    started = time.perf_counter()
    partition = leidenalg.find_partition(
        g, leidenalg.ModularityVertexPartition, weights="weight", seed=42, n_iterations=-1
    )
    seconds = time.perf_counter() - started

    membership = list(partition.membership)
    result = {
        "nodes": nodes,
        "edges": len(edges),
        "communities": len(set(membership)),
        "modularity": g.modularity(membership, weights="weight"),
        "seconds": round(seconds, 6),
    }
    if args.membership:
        theirs = read_membership(args.membership, nodes)
        result["their_modularity"] = g.modularity(theirs, weights="weight")
        result["their_communities"] = len(set(theirs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
