#!/usr/bin/env bash
# Checks the CI configuration offline (part of the test suite; the GitHub workflows run it too):
#
# 1. the workflows in .github/workflows, with jactionlint (actionlint's checks, shellcheck on
#    the run: scripts, and its security rules: injection, permissions, cache poisoning, ...);
# 2. the dependency policy of deny.toml: `cargo deny --frozen check licenses bans sources`
#    (advisories need the RustSec database from the network: security.yml runs them);
# 3. the CycloneDX SBOM: cargo cyclonedx on a copy of the workspace in a temp dir (it writes
#    one BOM next to each crate's Cargo.toml), checked to be CycloneDX JSON with components.
#
#   scripts/check-ci.sh
#
# Installs the tools first (scripts/install-ci-tools.sh). Needs the locked crates already
# downloaded (any cargo build or `cargo fetch` did it). Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-ci-tools.sh
bin=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}/venv-ci/bin

work=$(mktemp -d /tmp/plasma-check-ci.XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0
summary=()
result() { # name ok|FAILED detail
  summary+=("$(printf '  %-12s %-6s %s' "$1" "$2" "$3")")
  if [[ "$2" == ok ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# --- 1. Workflows ---------------------------------------------------------------------------
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
linter="jactionlint $("$bin/jactionlint" --version | head -n1), shellcheck $("$bin/shellcheck" --version | sed -n 's/^version: //p')"
if [[ ${#workflows[@]} -eq 0 ]]; then
  result workflows FAILED "no workflow in .github/workflows"
# With the venv first on PATH, jactionlint finds shellcheck and checks every run: script.
elif PATH="$bin:$PATH" "$bin/jactionlint" --no-color "${workflows[@]}"; then
  result workflows ok "${#workflows[@]} linted ($linter)"
else
  result workflows FAILED "findings above (${#workflows[@]} files, $linter)"
fi

# --- 2. Licences, bans, sources -------------------------------------------------------------
deny_version=$("$bin/cargo-deny" --version)
if "$bin/cargo-deny" --frozen --color never check licenses bans sources >"$work/deny.log" 2>&1; then
  deny_status=$(grep -E '^bans .*, licenses .*, sources ' "$work/deny.log" | tail -n1)
  warnings=$(grep -c '^warning\[' "$work/deny.log" || true)
  result cargo-deny ok "$deny_status ($deny_version; $warnings warnings: duplicate versions)"
else
  cat "$work/deny.log" >&2
  deny_status=$(grep -E '^bans .*, licenses .*, sources ' "$work/deny.log" | tail -n1 || true)
  result cargo-deny FAILED "${deny_status:-cargo-deny did not run} ($deny_version; output above)"
fi

# --- 3. SBOM --------------------------------------------------------------------------------
# A copy of the sources (git's files, tracked or new, minus the ignored ones), not the target dir.
mkdir -p "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$work/src"
else
  tar --exclude=./target --exclude=./.git --exclude=./.plasma -cf - . | tar -xf - -C "$work/src"
fi
if (cd "$work/src" && CARGO_NET_OFFLINE=true cargo cyclonedx --format json --spec-version 1.5 \
  --target x86_64-unknown-linux-gnu -q) 2>"$work/sbom.log"; then
  if sbom=$(python3 - "$work/src" 2>&1 <<'PY'
import json, pathlib, sys

root = pathlib.Path(sys.argv[1])
boms = sorted(root.glob("*/*.cdx.json"))
if not boms:
    sys.exit("no *.cdx.json written")
for path in boms:
    bom = json.loads(path.read_text())
    if bom.get("bomFormat") != "CycloneDX" or bom.get("specVersion") != "1.5":
        sys.exit(f"{path.name}: not CycloneDX 1.5 JSON")
    for component in bom.get("components", []):
        if not all(component.get(key) for key in ("name", "version", "purl")):
            sys.exit(f"{path.name}: a component without name, version or purl: {component}")
cli = json.loads((root / "cli" / "plasma-cli.cdx.json").read_text())
components = cli.get("components", [])
names = {c["name"] for c in components}
if cli["metadata"]["component"]["name"] != "plasma-cli" or not {"axum", "sqlx", "tokio"} <= names:
    sys.exit("plasma-cli.cdx.json does not describe the plasma binary's dependencies")
print(f"plasma-cli: {len(components)} components, CycloneDX 1.5 ({len(boms)} BOMs, one per crate)")
PY
  ); then
    result SBOM ok "$sbom"
  else
    result SBOM FAILED "$sbom"
  fi
else
  cat "$work/sbom.log" >&2
  result SBOM FAILED "cargo cyclonedx failed (above)"
fi

echo "check-ci:"
printf '%s\n' "${summary[@]}"
echo "check-ci: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
