#!/usr/bin/env bash
# Installs the reference Leiden implementation scripts/leiden-compare.py runs (leidenalg on
# python-igraph, the C++ implementation by the algorithm's authors) so the Rust one in
# domain/src/research/leiden.rs can be compared with it on quality and speed. Pinned, from PyPI
# wheels only, without root, into TOOLS_DIR/venv-leiden (TOOLS_DIR: $PLASMA_TOOLS_DIR or
# ~/.cache/plasma/tools). Prints nothing and does nothing when it is already there.
#
#   scripts/install-leiden-peer.sh
#
# - leidenalg 0.12.0 (abi3 manylinux wheel, bundles libleidenalg)
# - igraph 1.0.0 (python-igraph, abi3 manylinux wheel, bundles the C core; leidenalg 0.12
#   requires igraph >= 1.0, < 2.0) and its one dependency texttable 1.7.2.
set -euo pipefail

LEIDENALG=leidenalg==0.12.0
IGRAPH=igraph==1.0.0
TEXTTABLE=texttable==1.7.2

tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
venv=$tools/venv-leiden

stamp="$LEIDENALG $IGRAPH $TEXTTABLE"
if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$stamp" ]] ||
  ! "$venv/bin/python" -c 'import igraph, leidenalg' 2>/dev/null; then
  echo "installing $LEIDENALG, $IGRAPH, $TEXTTABLE (PyPI wheels) into $venv" >&2
  mkdir -p "$tools"
  # A venv restored from a cache onto another Python is made anew.
  if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  # Wheels only: the sdists would compile the igraph C core (minutes, and a C toolchain).
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "$LEIDENALG" "$IGRAPH" "$TEXTTABLE"
  echo "$stamp" >"$venv/.installed"
fi
