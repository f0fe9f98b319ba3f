#!/usr/bin/env bash
# Reproduces the HTTP figures in docs/benchmarks.md:
#   scripts/bench-http.sh [--mentions 200000] [--rate 1000] [--seconds 20]
# Builds the release binary, installs oha (crates.io) if missing, starts a throwaway
# PostgreSQL (durable defaults) on loopback, and measures the real server on SQLite and on
# PostgreSQL: bulk ingest through HTTP, single-ingest latency, and query latency at a fixed rate.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p plasma-cli --bin plasma
command -v oha >/dev/null 2>&1 || cargo install oha --version 1.16.0 --locked
work=$(mktemp -d /tmp/plasma-bench-http.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
url=$(scripts/pg-throwaway.sh start "$work/pg")
python3 scripts/bench_http.py --plasma target/release/plasma --work "$work" --pg-admin-url "$url" "$@"
