#!/usr/bin/env bash
# Reproduces the search figures in docs/benchmarks.md:
#   scripts/bench-search.sh [quality|scale|all]   (default all)
# Installs the models and (scale) the corpus: the Python 3.11 and Perl 5.36 documentation as
# Debian ships it (python3.11-doc, perl-doc; reStructuredText and POD sources, ~21 MB of text),
# cached under ~/.cache/plasma/corpora. Builds the release binary and starts, one after the
# other, the servers each part measures through HTTP:
#   quality: `plasma dev` (SQLite) and `plasma serve` (PostgreSQL 16 + pgvector), each with both
#            models, loaded with the labelled Python FAQ set (data/python-faq/);
#   scale:   `plasma serve` on PostgreSQL with WordLlama, loaded with the corpus (≥ 100,000
#            chunks of 200 characters).
# PostgreSQL is a throwaway cluster with durable defaults, from pgserver (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
scripts/install-models.sh
pgserver_bin=${PLASMA_PGSERVER_DIR:-/opt/plasma/pgserver-0.1.4}/pgserver/pginstall/bin
if [[ -z "${PLASMA_PG_BINDIR:-}" && -x "$pgserver_bin/postgres" ]]; then
  export PLASMA_PG_BINDIR=$pgserver_bin
fi
psql=${PLASMA_PG_BINDIR:-/usr/lib/postgresql/15/bin}/psql
cargo build --release --locked -p plasma-cli --bin plasma
plasma=target/release/plasma

work=$(mktemp -d /tmp/plasma-bench-search.XXXXXX)
chmod 755 "$work"
server=""
cleanup() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  scripts/pg-throwaway.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export PLASMA_JWT_SECRET=bench-search-secret-of-at-least-32-bytes
export PLASMA_RATE_LIMIT_PER_SECOND=100000 PLASMA_RATE_LIMIT_BURST=100000
export PLASMA_LOG=${PLASMA_LOG:-warn}
export PLASMA_BENCH_TOKEN=$($plasma token --tenant bench --role admin --ttl 24h)

# Starts `plasma $*` on a free port in the background; sets $url.
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
  export PLASMA_EMBEDDERS=all-MiniLM-L6-v2,wordllama-l2-supercat-256
  start dev --data-dir "$work/sqlite"
  $plasma bench search quality --url "$url" --label sqlite
  stop
  PLASMA_DATABASE_URL=$(database quality) start serve
  $plasma bench search quality --url "$url" --label postgres
  stop
fi

if [[ $part == scale || $part == all ]]; then
  corpora=${PLASMA_CORPORA_DIR:-$HOME/.cache/plasma/corpora}
  mkdir -p "$corpora"
  for package in python3.11-doc perl-doc; do
    if [[ ! -d "$corpora/$package" ]]; then
      (cd "$corpora" && apt-get download "$package" 2>/dev/null && dpkg-deb -x "$package"_*.deb "$package.tmp" \
        && mv "$package.tmp" "$package" && rm -f "$package"_*.deb)
    fi
  done
  export PLASMA_EMBEDDERS=wordllama-l2-supercat-256
  export PLASMA_DATABASE_URL=$(database scale)
  start serve
  $plasma bench search scale --url "$url" --database-url "$PLASMA_DATABASE_URL" \
    --corpus "$corpora/python3.11-doc/usr/share/doc/python3.11/html/_sources" "$corpora/perl-doc/usr/share/perl"
  stop
fi
