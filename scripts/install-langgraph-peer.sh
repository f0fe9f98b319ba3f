#!/usr/bin/env bash
# Installs the LangGraph peer that bench/peers/langgraph_steps.py runs (a 10-step durable graph
# checkpointed into PostgreSQL) next to Plasma's durable workflow runtime. Pinned, from PyPI
# wheels only, without root, into TOOLS_DIR/venv-langgraph (TOOLS_DIR: $PLASMA_TOOLS_DIR or
# ~/.cache/plasma/tools). Prints nothing and does nothing when it is already there.
#
#   scripts/install-langgraph-peer.sh
#
# - langgraph 1.2.24 (the latest 1.2.x) and langgraph-checkpoint-postgres 3.2.0
#   (AsyncPostgresSaver); their own dependencies (langgraph-checkpoint, langchain-core, ...)
#   resolve within the ranges these two declare.
# - psycopg[binary] 3.3.9 (libpq bundled in the wheel) and psycopg-pool 3.3.3.
set -euo pipefail

LANGGRAPH=langgraph==1.2.24
CHECKPOINT_POSTGRES=langgraph-checkpoint-postgres==3.2.0
PSYCOPG=psycopg[binary]==3.3.9
PSYCOPG_POOL=psycopg-pool==3.3.3

tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
venv=$tools/venv-langgraph

stamp="$LANGGRAPH $CHECKPOINT_POSTGRES $PSYCOPG $PSYCOPG_POOL"
if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$stamp" ]] ||
  ! "$venv/bin/python" -c 'import langgraph, langgraph.checkpoint.postgres' 2>/dev/null; then
  echo "installing $LANGGRAPH, $CHECKPOINT_POSTGRES, $PSYCOPG, $PSYCOPG_POOL (PyPI wheels) into $venv" >&2
  mkdir -p "$tools"
  # A venv restored from a cache onto another Python is made anew.
  if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "$LANGGRAPH" "$CHECKPOINT_POSTGRES" "$PSYCOPG" "$PSYCOPG_POOL"
  echo "$stamp" >"$venv/.installed"
fi
