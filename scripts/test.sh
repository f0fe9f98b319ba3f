#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, starts one
# throwaway PostgreSQL cluster (16, with pgvector) on loopback (each test gets a database of its own in it),
# checks formatting and lints, runs every test, and stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

# rust-toolchain.toml pins the compiler; an offline machine cannot download it. If the pinned
# name is missing but the installed stable is that version, register stable under the name
# (as this machine kind's own set-up does) before anything runs cargo.
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
toolchains=${RUSTUP_HOME:-$HOME/.rustup}/toolchains
if [[ -n "$pinned" && -d "$toolchains" ]] && ! compgen -G "$toolchains/$pinned-*" >/dev/null; then
  for stable in "$toolchains"/stable-*; do
    if [[ -x "$stable/bin/rustc" ]] && "$stable/bin/rustc" --version | grep -q "^rustc $pinned "; then
      ln -s "$stable" "$toolchains/$pinned-${stable#"$toolchains"/stable-}"
    fi
  done
fi

scripts/install-deps.sh

# Server-mode tests run on PostgreSQL 16 with pgvector (installed above from pgserver's wheel).
pgserver_bin=${PLASMA_PGSERVER_DIR:-/opt/plasma/pgserver-0.1.4}/pgserver/pginstall/bin
if [[ -z "${PLASMA_PG_BINDIR:-}" && -x "$pgserver_bin/postgres" ]]; then
  export PLASMA_PG_BINDIR=$pgserver_bin
fi

work=$(mktemp -d /tmp/plasma-test.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
PLASMA_TEST_PG_URL=$(scripts/pg-throwaway.sh start "$work/pg" --fast)
export PLASMA_TEST_PG_URL

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The deployment, checked by real tools: the Helm chart (helm lint and template, every manifest
# through kubernetes-validate for two Kubernetes versions, checkov, the fields that matter) and
# the CI configuration (actionlint on the workflows, cargo-deny on licences, bans and sources,
# a CycloneDX SBOM).
scripts/check-chart.sh
scripts/check-ci.sh
cargo nextest run --workspace --locked --no-fail-fast "$@"
# The HTTP API against its OpenAPI document: schemathesis with every check, on the binary the
# tests just built.
scripts/check-contract.sh
