#!/usr/bin/env bash
# Installs the official MCP Python SDK (PyPI `mcp` 2.3.0, wheels only) into
# TOOLS_DIR/venv-mcp (TOOLS_DIR: $PLASMA_TOOLS_DIR or ~/.cache/plasma/tools): the client the MCP
# tests (cli/tests/api/mcp.rs) drive Plasma's MCP server with. Quiet and idempotent.
set -euo pipefail
MCP=mcp==2.3.0
tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
venv=$tools/venv-mcp
if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$MCP" ]] ||
  ! "$venv/bin/python" -c 'import mcp, httpx2' 2>/dev/null; then
  echo "installing $MCP (PyPI wheels) into $venv" >&2
  mkdir -p "$tools"
  if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "$MCP"
  echo "$MCP" >"$venv/.installed"
fi
