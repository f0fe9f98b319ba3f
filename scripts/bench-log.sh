#!/usr/bin/env bash
# Reproduces the log figures in docs/benchmarks.md:
#   scripts/bench-log.sh [plasma bench log flags, e.g. --events 20000 --lag-rate 1000]
# Builds the release binary; starts a throwaway PostgreSQL (durable defaults), a tansu broker
# (sqlite storage) and a rivven-schema registry on loopback; measures everything in one process
# against them; stops them. Needs scripts/install-deps.sh to have run (tansu, rivven-schema).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p plasma-cli --bin plasma
work=$(mktemp -d /tmp/plasma-bench-log.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/pg-throwaway.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
bin() { command -v "$1" || echo "$HOME/.cargo/bin/$1"; }

url=$(scripts/pg-throwaway.sh start "$work/pg")
kafka_port=$(free_port)
registry_port=$(free_port)
mkdir "$work/broker"
(cd "$work/broker" && exec "$(bin tansu)" broker \
  --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine sqlite://tansu.db >"$work/tansu.log" 2>&1) &
pids+=($!)
"$(bin rivven-schema)" serve --host 127.0.0.1 --port "$registry_port" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if python3 - "$work/broker/tansu.db" <<'PY' 2>/dev/null; then break; fi
import sqlite3, sys
# tansu 0.6.0 has no index on header(topition, offset_id): every fetched record scans the
# header table. The index is the broker's missing piece (the tests add it too).
db = sqlite3.connect(sys.argv[1])
db.execute("create index if not exists plasma_header_record on header (topition, offset_id)")
db.commit()
PY
  sleep 0.1
done
echo "PostgreSQL at $url; tansu 0.6.0 (sqlite) on $kafka_port; rivven-schema on $registry_port; $(nproc) cores" >&2
PLASMA_LOG=${PLASMA_LOG:-warn} target/release/plasma bench log --database-url "$url" \
  --brokers "127.0.0.1:$kafka_port" --registry-url "http://127.0.0.1:$registry_port" "$@"
