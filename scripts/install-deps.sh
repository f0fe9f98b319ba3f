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

# initdb refuses to run as root: tests run the cluster as this unprivileged user.
pg_user=${PLASMA_PG_USER:-postgres}
if [[ $(id -u) -eq 0 ]] && ! id "$pg_user" >/dev/null 2>&1; then
  useradd --system --no-create-home "$pg_user"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (crates.io)" >&2
  cargo install cargo-nextest --locked
fi
