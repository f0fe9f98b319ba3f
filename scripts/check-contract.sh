#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document, with every check schemathesis has: answers
# conform to the documented statuses, content types, headers and schemas; everything the schema
# allows is accepted and everything it forbids is refused (positive and negative data); no 5xx;
# auth is enforced. Part of the test suite: any failure fails it.
#
#   scripts/check-contract.sh [-n EXAMPLES] [PLASMA_BINARY]
#
# Runs `plasma dev --demo` (the debug build by default) on a temp dir and a free loopback port.
# schemathesis is pinned and installed into ~/.cache/plasma/tools/venv-contract. For a quicker
# look at 5xx only, scripts/fuzz-api.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
examples=25
if [[ "${1:-}" == "-n" ]]; then
  examples=${2:?}
  shift 2
fi
binary=${1:-}
if [[ -z "$binary" ]]; then
  # The current sources (a no-op right after the tests built them).
  cargo build --quiet --locked -p plasma-cli --bin plasma
  binary=target/debug/plasma
fi

SCHEMATHESIS=schemathesis==4.32.5
venv=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}/venv-contract
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version ${SCHEMATHESIS#*==}$"; then
  python3 -m venv "$venv"
  echo "installing $SCHEMATHESIS (PyPI) into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS"
fi

work=$(mktemp -d /tmp/plasma-contract.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PLASMA_RATE_LIMIT_PER_SECOND=0 PLASMA_EMBEDDERS=all-MiniLM-L6-v2 "$binary" dev --data-dir "$work/data" \
  --listen "127.0.0.1:$port" --demo >"$work/server.log" 2>&1 &
server=$!
stop_server() {
  local code=0
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || code=$?
  if [[ $code -ne 0 ]]; then
    echo "check-contract: the server exited with $code on SIGTERM; its log's end:" >&2
    tail -n 40 "$work/server.log" >&2 || true
  fi
  rm -rf "$work"
  return "$code"
}
trap stop_server EXIT
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 1
done
token=$("$binary" token --tenant demo --role admin --data-dir "$work/data")
started=$(date +%s)
# From the temp dir: schemathesis keeps a cache folder in its working directory. Deterministic
# generation, so a failure is found again on the next run.
status=0
(cd "$work" && "$venv/bin/schemathesis" --config-file "$repo/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $token" --checks all -n "$examples" --generation-deterministic \
  --no-color >"$work/report.txt" 2>&1) || status=$?
panics=$(grep -c 'panicked' "$work/server.log" || true)
summary=$(sed -n '/^Failures:/,/^Test cases:/p' "$work/report.txt" | grep -E '❌|generated' || true)
cases=$(grep -E 'generated, ' "$work/report.txt" | tail -n1 | sed 's/^ *//')
if [[ $status -ne 0 || $panics -ne 0 ]]; then
  sed -n '/^=* FAILURES =*$/,$p' "$work/report.txt" | head -400 >&2 || true
  cp "$work/report.txt" "${TMPDIR:-/tmp}/plasma-contract-report.txt"
  echo "check-contract: FAILED ($summary; server panics: $panics); the whole report is in ${TMPDIR:-/tmp}/plasma-contract-report.txt" >&2
  exit 1
fi
echo "check-contract: $cases, no failure ($SCHEMATHESIS, all checks, $((  $(date +%s) - started ))s)"
