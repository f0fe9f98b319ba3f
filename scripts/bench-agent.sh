#!/usr/bin/env bash
# The durable workflow runtime next to LangGraph, side by side in one run on one throwaway
# PostgreSQL (durable defaults): the same 10-step workflow of no-op steps with a checkpoint per
# step, the same number of runs, the same runs in flight at once.
#
#   scripts/bench-agent.sh [--runs N] [--concurrency C] [--drafts D]     defaults 500 16 200
#
# 1. `plasma bench agent`: Plasma's agent worker (one process) drives the runs; then D drafting
#    workflows with the template provider, each approved the moment it asks.
# 2. bench/peers/langgraph_steps.py: LangGraph 1.2.24 with langgraph-checkpoint-postgres 3.2.0,
#    durability "sync" (each step's checkpoint committed before the next step), with one saver
#    (the documented setup) and with C savers sharing the pool (no saver lock between runs).
# Installs the LangGraph peer into ~/.cache/plasma/tools (PyPI wheels); nothing is downloaded at
# run time after.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=500 concurrency=16 drafts=200
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --drafts) drafts=$2; shift 2 ;;
    *) echo "bench-agent: unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/install-langgraph-peer.sh
venv=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}/venv-langgraph
cargo build --release --locked -p plasma-cli --bin plasma
work=$(mktemp -d /tmp/plasma-agent-bench.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
url=$(scripts/pg-throwaway.sh start "$work/pg")
base=${url%/*}
echo "PostgreSQL $(psql -At "$url" -c 'SHOW server_version') (fsync $(psql -At "$url" -c 'SHOW fsync'), synchronous_commit $(psql -At "$url" -c 'SHOW synchronous_commit')); $(nproc) cores; $runs runs of 10 steps, $concurrency in flight" >&2
for db in plasma_agent langgraph_one langgraph_many; do
  psql -q "$url" -c "CREATE DATABASE $db"
done

results=()
target/release/plasma bench agent --database-url "$base/plasma_agent" --runs "$runs" \
  --concurrency "$concurrency" --drafts "$drafts" >"$work/plasma.jsonl"
results+=("$(sed -n 1p "$work/plasma.jsonl")")
drafting=$(sed -n 2p "$work/plasma.jsonl")
results+=("$("$venv/bin/python" bench/peers/langgraph_steps.py --url "$base/langgraph_one" \
  --runs "$runs" --concurrency "$concurrency" --savers 1)")
results+=("$("$venv/bin/python" bench/peers/langgraph_steps.py --url "$base/langgraph_many" \
  --runs "$runs" --concurrency "$concurrency" --savers "$concurrency")")

python3 - "$drafting" "${results[@]}" <<'PY'
import json, sys
drafting = json.loads(sys.argv[1]) if sys.argv[1] else None
rows = [json.loads(line) for line in sys.argv[2:]]
plasma = rows[0]["steps_per_s"]
print()
print("| system | runs × steps | seconds | steps/s | p50 step ms | p99 step ms | checkpoints | Plasma ÷ it |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    name = r["system"]
    if name == "langgraph":
        name = f"LangGraph {r['langgraph']} + checkpoint-postgres {r['checkpoint_postgres']}, durability {r['durability']}, {r.get('savers', 1)} saver(s)"
    else:
        name = "Plasma agent worker (PostgreSQL event store)"
    print(f"| {name} | {r['runs']} × {r['steps']} | {r['seconds']:.2f} | {r['steps_per_s']:.0f} | "
          f"{r['p50_step_ms']:.1f} | {r['p99_step_ms']:.1f} | {r['checkpoints']} | {plasma / r['steps_per_s']:.2f} |")
if drafting:
    print()
    print(f"Drafting workflow, template provider: {drafting['drafts']} drafts in {drafting['seconds']:.2f} s, "
          f"{drafting['drafts_per_s']:.1f} drafts/s end to end (generate, record, voice check, editor's approval, publish).")
PY
