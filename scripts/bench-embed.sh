#!/usr/bin/env bash
# Reproduces the embedding figures in docs/benchmarks.md:
#   scripts/bench-embed.sh [plasma bench embed flags, e.g. --texts 512 --batch 16]
# Installs the models if missing, builds the release binary, measures this machine's
# single-precision matrix-multiply rate with numpy (OpenBLAS sgemm) and then each model's
# throughput, one after the other in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-models.sh
venv=${PLASMA_BENCH_VENV:-$HOME/.cache/plasma/venv}
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import numpy, threadpoolctl' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy threadpoolctl
fi
cargo build --release --locked -p plasma-cli --bin plasma
echo "$(nproc) cores" >&2
# The machine may set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for old OpenBLAS builds; they slow a
# current numpy, so the ceiling is measured without them (a higher ceiling, a harder target).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" - <<'PY'
import time
import numpy as np
from threadpoolctl import threadpool_info
info = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
n = 2048
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
b = np.random.default_rng(1).random((n, n), dtype=np.float32)
a @ b  # warm up
best = 0.0
for _ in range(5):
    t = time.perf_counter()
    a @ b
    best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
print(f"sgemm ceiling (numpy {np.__version__}, {info}): {best:.1f} GFLOP/s on {n}x{n}")
PY
target/release/plasma bench embed "$@"
