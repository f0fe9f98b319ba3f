#!/usr/bin/env bash
# Reproduces the in-process text model's figures in docs/benchmarks.md, in one run:
#
#   scripts/bench-llm.sh [--briefs N] [--drafts D]      defaults 50 20
#
# 1. `plasma bench llm`: SmolLM2-135M-Instruct in-process (candle) and in llama.cpp
#    (llama-cpp-python, same GGUF file, same prompts, same thread count): prompt and generation
#    tokens/s and the memory the model adds; then N briefs written by the templates and by the
#    model, voice-checked and revised as the drafting workflow does.
# 2. `plasma bench agent --runs 0`: D drafting workflows end to end on a throwaway PostgreSQL
#    (durable defaults), written by the templates and then by the model: drafts/s.
set -euo pipefail
cd "$(dirname "$0")/.."
briefs=50 drafts=20
while [[ $# -gt 0 ]]; do
  case $1 in
    --briefs) briefs=$2; shift 2 ;;
    --drafts) drafts=$2; shift 2 ;;
    *) echo "bench-llm: unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/install-models.sh
scripts/install-llama-server.sh
python=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}/venv-llama/bin/python
cargo build --release --locked -p plasma-cli --bin plasma
echo "$(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" >&2

target/release/plasma bench llm --llama-python "$python" --briefs "$briefs"

work=$(mktemp -d /tmp/plasma-llm-bench.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
url=$(scripts/pg-throwaway.sh start "$work/pg")
base=${url%/*}
for generator in template local; do
  psql -q "$url" -c "CREATE DATABASE drafts_$generator"
  target/release/plasma bench agent --database-url "$base/drafts_$generator" --runs 0 \
    --drafts "$drafts" --concurrency 4 --generator "$generator"
done
