#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a directory, on a free loopback port.
#
#   scripts/pg-throwaway.sh start DIR [--fast]   prints the superuser URL (also in DIR/url)
#   scripts/pg-throwaway.sh stop DIR
#
# --fast turns fsync off (tests); without it the server keeps PostgreSQL's durable defaults
# (benchmarks). initdb/postgres refuse to run as root, so as root the cluster runs as an
# unprivileged user (PLASMA_PG_USER, default "postgres", created if missing).
set -euo pipefail

cmd=${1:?usage: pg-throwaway.sh start|stop DIR [--fast]}
dir=${2:?usage: pg-throwaway.sh start|stop DIR [--fast]}
fast=${3:-}

bindir=${PLASMA_PG_BINDIR:-$(pg_config --bindir 2>/dev/null || true)}
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  for candidate in /usr/lib/postgresql/16/bin /usr/lib/postgresql/15/bin; do
    [[ -x "$candidate/initdb" ]] && bindir=$candidate && break
  done
fi
[[ -x "$bindir/initdb" ]] || { echo "no PostgreSQL server binaries (run scripts/install-deps.sh)" >&2; exit 1; }

run_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$pg_user" -- "$@"
  else
    "$@"
  fi
}

pg_user=${PLASMA_PG_USER:-postgres}
if [[ $(id -u) -eq 0 ]] && ! id "$pg_user" >/dev/null 2>&1; then
  useradd --system --no-create-home "$pg_user"
fi

case "$cmd" in
  start)
    mkdir -p "$dir/sock"
    [[ $(id -u) -eq 0 ]] && chown -R "$pg_user" "$dir"
    run_pg "$bindir/initdb" -D "$dir/data" -U plasma --auth=trust -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    opts=""
    [[ "$fast" == "--fast" ]] && opts="-c fsync=off -c full_page_writes=off"
    for _ in 1 2 3 4 5; do
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      if run_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
          -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c max_connections=300 $opts" start >/dev/null; then
        echo "postgres://plasma@127.0.0.1:$port/postgres" | tee "$dir/url"
        exit 0
      fi
    done
    cat "$dir/postgres.log" >&2
    exit 1
    ;;
  stop)
    [[ -d "$dir/data" ]] && run_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: pg-throwaway.sh start|stop DIR [--fast]" >&2
    exit 2
    ;;
esac
