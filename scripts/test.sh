#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, starts one
# throwaway PostgreSQL cluster on loopback (each test gets a database of its own in it),
# checks formatting and lints, runs every test, and stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

work=$(mktemp -d /tmp/plasma-test.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
PLASMA_TEST_PG_URL=$(scripts/pg-throwaway.sh start "$work/pg" --fast)
export PLASMA_TEST_PG_URL

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast "$@"
