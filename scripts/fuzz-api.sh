#!/usr/bin/env bash
# Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis, PyPI):
#   scripts/fuzz-api.sh [-n EXAMPLES]
# Runs the release `plasma dev --demo` on a temp dir and a free loopback port, sends generated
# requests to every operation, and fails if any answer is a 5xx other than the documented
# 503 not_yet_consistent (a min_position the read models have not reached), or if the server
# logged a panic.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=40
[[ "${1:-}" == "-n" ]] && examples=${2:?}
cargo build --release -p plasma-cli --bin plasma
python3 -m pip install -q schemathesis==4.32.5 2>/dev/null
work=$(mktemp -d /tmp/plasma-fuzz.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PLASMA_RATE_LIMIT_PER_SECOND=0 target/release/plasma dev --data-dir "$work/data" \
  --listen "127.0.0.1:$port" --demo >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
token=$(target/release/plasma token --tenant demo --role admin --data-dir "$work/data")
# From the temp dir: schemathesis keeps a cache folder in its working directory.
(cd "$work" && schemathesis run "http://127.0.0.1:$port/openapi.json" -H "Authorization: Bearer $token" \
  --checks not_a_server_error -n "$examples" --no-color >"$work/report.txt" 2>&1) || true
tail -25 "$work/report.txt"
unexpected=$(grep -E '^\[5[0-9][0-9]\]' "$work/report.txt" | grep -vc '^\[503\]' || true)
not_consistent=$(grep -c 'not_yet_consistent' "$work/report.txt" || true)
server_503=$(grep -cE '^\[503\]' "$work/report.txt" || true)
panics=$(grep -c 'panicked' "$work/server.log" || true)
echo "5xx other than 503: $unexpected; 503 answers: $server_503 (not_yet_consistent: $not_consistent); panics: $panics"
[[ "$unexpected" -eq 0 && "$panics" -eq 0 && "$server_503" -le "$not_consistent" ]]
