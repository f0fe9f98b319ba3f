#!/usr/bin/env bash
# Reproduces the ingest figures in docs/benchmarks.md:
#   scripts/bench-ingest.sh [plasma bench ingest flags, e.g. --events 200000]
# Builds the release binary, starts a throwaway PostgreSQL (durable defaults) on loopback,
# runs every measurement against it in one process, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p plasma-cli --bin plasma
work=$(mktemp -d /tmp/plasma-bench.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
url=$(scripts/pg-throwaway.sh start "$work/pg")
echo "PostgreSQL $(pg_config --version 2>/dev/null || true) at $url; $(nproc) cores" >&2
target/release/plasma bench ingest --database-url "$url" --sqlite-dir "$work" "$@"
