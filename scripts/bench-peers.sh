#!/usr/bin/env bash
# Event-store append throughput, Plasma next to its peers, side by side in one run on one
# throwaway PostgreSQL (durable defaults), with the same events, the same client concurrency and
# the same batch size:
#
#   scripts/bench-peers.sh [--events N] [--clients C] [--batch B]     defaults 100000 2 1000
#
# 1. `plasma bench ingest`: Plasma's bulk ingest (validation, VADER scoring, dedupe, receipt),
#    the same without scoring, the raw COPY ceiling and stock postgres-es, on fresh databases
#    of the cluster.
# 2. The MentionIngested events Plasma stored (same payloads) are exported and appended by:
#    - message-db 1.3.1 (npm @eventide/message-db: its SQL installed with its own install.sh;
#      `write_message` calls, BATCH per transaction, from Python psycopg 3 clients);
#    - the Python `eventsourcing` 9.5.6 PostgreSQL recorder (`insert_events`, BATCH per call);
#    - Emmett 0.42 (npm @event-driven-io/emmett-postgresql, `appendToStream` with BATCH events
#      per call, on Node).
#    The clients are bench/peers/python_peers.py and bench/peers/emmett.mjs.
# Peers install into ~/.cache/plasma/tools (PyPI, npm); nothing is downloaded at run time after.
set -euo pipefail
cd "$(dirname "$0")/.."
events=100000 clients=2 batch=1000
while [[ $# -gt 0 ]]; do
  case $1 in
    --events) events=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    *) echo "bench-peers: unknown argument $1" >&2; exit 2 ;;
  esac
done

tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
venv=$tools/venv-peers node=$tools/node-peers messagedb=$tools/message-db-1.3.1
if ! "$venv/bin/python" -c 'import eventsourcing, psycopg' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]==3.2.13" "eventsourcing[postgres]==9.5.6"
fi
if [[ ! -d "$node/node_modules/@event-driven-io/emmett-postgresql" ]]; then
  mkdir -p "$node"
  echo '{"private": true, "type": "module"}' >"$node/package.json"
  npm install --silent --no-audit --no-fund --prefix "$node" \
    @event-driven-io/emmett-postgresql@0.42.0 @event-driven-io/emmett@0.42.0 >/dev/null
fi
if [[ ! -f "$messagedb/database/install.sh" ]]; then
  mkdir -p "$messagedb.part"
  (cd "$messagedb.part" && npm pack --silent @eventide/message-db@1.3.1 >/dev/null && tar xzf eventide-message-db-1.3.1.tgz)
  rm -rf "$messagedb" && mv "$messagedb.part/package" "$messagedb" && rm -rf "$messagedb.part"
fi

cargo build --release --locked -p plasma-cli --bin plasma
work=$(mktemp -d /tmp/plasma-peers.XXXXXX)
chmod 755 "$work"
trap 'scripts/pg-throwaway.sh stop "$work/pg"; rm -rf "$work"' EXIT
url=$(scripts/pg-throwaway.sh start "$work/pg")
base=${url%/*}
hostport=${base#*@}
export PGHOST=${hostport%:*} PGPORT=${hostport#*:} PGUSER=${base#postgres://}
PGUSER=${PGUSER%@*}
echo "PostgreSQL $(psql -At "$url" -c 'SHOW server_version') at $url (fsync $(psql -At "$url" -c 'SHOW fsync'), synchronous_commit $(psql -At "$url" -c 'SHOW synchronous_commit')); $(nproc) cores; $events events, $clients clients, batches of $batch" >&2

target/release/plasma bench ingest --database-url "$url" --sqlite-dir "$work" --events "$events" \
  --clients "$clients" --batch "$batch" | tee "$work/plasma.md"

plasma_db=$(psql -At "$url" -c "SELECT datname FROM pg_database WHERE datname ~ '^plasma_bench_[0-9]+$' ORDER BY datname DESC LIMIT 1")
psql -At "$base/$plasma_db" -c "SELECT json_build_object('stream', aggregate_id, 'type', event_type, 'data', payload)::text FROM events WHERE event_type = 'MentionIngested' ORDER BY position" >"$work/events.jsonl"
exported=$(wc -l <"$work/events.jsonl")
bytes=$(psql -At "$base/$plasma_db" -c "SELECT round(avg(octet_length(payload::text))) FROM events WHERE event_type = 'MentionIngested'")
echo "exported $exported events for the peers (average payload $bytes bytes)" >&2

results=()
createdb peer_messagedb
(cd "$messagedb/database" && CREATE_DATABASE=off DATABASE_NAME=peer_messagedb bash install.sh >"$work/message-db-install.log" 2>&1) \
  || { cat "$work/message-db-install.log" >&2; exit 1; }
results+=("$("$venv/bin/python" bench/peers/python_peers.py message-db "$base/peer_messagedb" "$work/events.jsonl" "$clients" "$batch")")
createdb peer_eventsourcing
results+=("$("$venv/bin/python" bench/peers/python_peers.py eventsourcing "$base/peer_eventsourcing" "$work/events.jsonl" "$clients" "$batch")")
createdb peer_emmett
# ES modules resolve packages next to the script: run a copy placed beside node_modules.
cp bench/peers/emmett.mjs "$node/emmett.mjs"
results+=("$(cd "$node" && node emmett.mjs "$base/peer_emmett" "$work/events.jsonl" "$clients" "$batch")")

# Plasma's figures from its own table: "| PostgreSQL bulk ingest | N | s | rate |".
plasma_rate=$(awk -F'|' '$2 == " PostgreSQL bulk ingest " {gsub(/ /, "", $5); print $5}' "$work/plasma.md")
ceiling_rate=$(awk -F'|' '/COPY ceiling/ {gsub(/ /, "", $5); print $5}' "$work/plasma.md")
unscored_rate=$(awk -F'|' '/bulk ingest, no scoring/ {gsub(/ /, "", $5); print $5}' "$work/plasma.md")
echo
echo "| store | events | seconds | events/s | Plasma ÷ it |"
echo "|---|---:|---:|---:|---:|"
printf '| Plasma bulk ingest (scoring included) | %s | | %s | 1.00 |\n' "$events" "$plasma_rate"
printf '| Plasma bulk ingest, no scoring | %s | | %s | %.2f |\n' "$events" "$unscored_rate" "$(echo "$plasma_rate / $unscored_rate" | bc -l)"
printf '| raw COPY ceiling (no indexes) | %s | | %s | %.2f |\n' "$events" "$ceiling_rate" "$(echo "$plasma_rate / $ceiling_rate" | bc -l)"
for line in "${results[@]}"; do
  python3 - "$line" "$plasma_rate" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); plasma = float(sys.argv[2])
rate = r["events"] / r["seconds"]
print(f"| {r['peer']} | {r['events']} | {r['seconds']:.2f} | {rate:.0f} | {plasma / rate:.2f} |")
PY
done
