#!/usr/bin/env bash
# Reproduces the knowledge-graph figures in docs/benchmarks.md:
#   scripts/bench-graph.sh [quality|extract|all]   (default all)
# Builds the release binary; installs the models, leidenalg (scripts/install-leiden-peer.sh)
# and (extract) the Python 3.11 documentation sources from Debian (python3.11-doc, cached
# under ~/.cache/plasma/corpora like scripts/bench-search.sh does).
#   quality: `plasma dev` (SQLite) and `plasma serve` (PostgreSQL 16 + pgvector), each loaded
#            through HTTP with the FAQ set and the multi-hop set (data/python-faq,
#            data/multihop), waited for until embedded, extracted and their communities
#            computed; recall@10 and MRR@10 per search mode, then search latency at 20 req/s.
#   extract: in process: rule extraction and graph-update throughput over the Python and Perl
#            docs (python3.11-doc, perl-doc),
#            Leiden on that corpus's graph and on a planted-partition graph, next to leidenalg.
# PostgreSQL is a throwaway cluster with durable defaults, from pgserver (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
scripts/install-models.sh
scripts/install-leiden-peer.sh
peer=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}/venv-leiden/bin/python
pgserver_bin=${PLASMA_PGSERVER_DIR:-/opt/plasma/pgserver-0.1.4}/pgserver/pginstall/bin
if [[ -z "${PLASMA_PG_BINDIR:-}" && -x "$pgserver_bin/postgres" ]]; then
  export PLASMA_PG_BINDIR=$pgserver_bin
fi
psql=${PLASMA_PG_BINDIR:-/usr/lib/postgresql/15/bin}/psql
cargo build --release --locked -p plasma-cli --bin plasma
plasma=target/release/plasma

work=$(mktemp -d /tmp/plasma-bench-graph.XXXXXX)
chmod 755 "$work"
server=""
cleanup() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  scripts/pg-throwaway.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export PLASMA_JWT_SECRET=bench-graph-secret-of-at-least-32-bytes
export PLASMA_RATE_LIMIT_PER_SECOND=100000 PLASMA_RATE_LIMIT_BURST=100000
export PLASMA_LOG=${PLASMA_LOG:-warn}
export PLASMA_BENCH_TOKEN=$($plasma token --tenant bench --role admin --ttl 24h)
export PLASMA_EMBEDDERS=all-MiniLM-L6-v2

start() {
  local port
  port=$(free_port)
  $plasma "$@" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
  server=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 600); do
    curl -fsS "$url/health" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
  done
  cat "$work/server.log" >&2
  exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

pg=$(scripts/pg-throwaway.sh start "$work/pg")
database() { "$psql" -q "$pg" -c "CREATE DATABASE $1" >/dev/null; echo "${pg%/postgres}/$1"; }
echo "$(nproc) cores; PostgreSQL $("$psql" -tA "$pg" -c 'show server_version') at $pg" >&2

if [[ $part == quality || $part == all ]]; then
  start dev --data-dir "$work/sqlite"
  $plasma bench graph quality --url "$url" --label sqlite
  stop
  PLASMA_DATABASE_URL=$(database quality) start serve
  $plasma bench graph quality --url "$url" --label postgres
  stop
fi

if [[ $part == extract || $part == all ]]; then
  corpora=${PLASMA_CORPORA_DIR:-$HOME/.cache/plasma/corpora}
  mkdir -p "$corpora"
  for package in python3.11-doc perl-doc; do
    if [[ ! -d "$corpora/$package" ]]; then
      (cd "$corpora" && apt-get download "$package" 2>/dev/null && dpkg-deb -x "$package"_*.deb "$package.tmp" \
        && mv "$package.tmp" "$package" && rm -f "$package"_*.deb)
    fi
  done
  $plasma bench graph extract --peer-python "$peer" --database-url "$(database extract)" \
    --corpus "$corpora/python3.11-doc/usr/share/doc/python3.11/html/_sources" "$corpora/perl-doc/usr/share/perl"
fi
