#!/usr/bin/env python3
"""Asserts the fields of the Helm chart's rendered manifests that matter in production.

Run by scripts/check-chart.sh with the tools venv's python (PyYAML comes with
kubernetes-validate); it renders nothing itself:

    check-chart.py --repo . --case RENDERED.yaml=VALUES.yaml[,VALUES.yaml...] [--case ...]

Each case is one `helm template` output and the values files it was rendered with (in order;
later files override earlier ones, as with `helm -f`). Checked for every case:

- the migration Job is a pre-install,pre-upgrade hook with a hook-delete-policy, running
  `plasma migrate`; hooks never carry probes (they run to completion);
- every Deployment container: liveness probe on /health, readiness probe on /ready, on a port
  the container declares; resources requested and limited;
- every pod: non-root, read-only root filesystem, no privilege escalation, all capabilities
  dropped, no service account token;
- no Secret is rendered, and no env var or ConfigMap key named like a secret (SECRET, KEY,
  PASSWORD, TOKEN, DATABASE_URL) carries a literal value: only secretKeyRef;
- the relay runs 2 replicas without an HPA; the alerts worker 1 replica, Recreate; the
  communities worker exactly 1 replica without an HPA, its --model the one of the values
  (communities.model, else the first of embed.models, else none) and among embed.models, the
  models volume mounted exactly when it has a model; one extract and one communities
  Deployment each when enabled;
- every consumer (projection, embed and extract workers): replicas and HPA maxReplicas at most
  the partition count of its topic, taken from the values files (kafka.partitions);
- one projection Deployment per read model of projections/src/models (their NAME constants);
- every pod is selected by a NetworkPolicy when networkPolicy.enabled; the policies selecting
  the communities worker let it reach the database's ports but not the broker's or the
  registry's, those selecting the extract worker all three;
- PrometheusRule: seed 004's thresholds (p95 0.2 s, p99 1 s, 5xx ratio 0.01), projection lag,
  relay outbox depth; ServiceMonitors scrape /metrics on ports their Services have;
- the Grafana dashboard ConfigMap carries grafana_dashboard: "1" and the chart's JSON;
- every metric name in the rules and the dashboard is one the Rust code defines.

Exits 1 listing every failure; prints one summary line otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

SECRET_NAME = re.compile(r"SECRET|KEY|PASSWORD|TOKEN|DATABASE_URL", re.IGNORECASE)
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
# Metric names in PromQL: the families the code defines (their _bucket/_sum/_count series too).
METRIC_REF = re.compile(r"\b((?:plasma|http)_[a-z0-9_]+)\b")
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.checks = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.items.append(f"{where}: {message}")
        return ok


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_values(chart: Path, files: list[str]) -> dict:
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    for name in files:
        if name == "values.yaml":
            continue
        values = deep_merge(values, yaml.safe_load((chart / name).read_text()) or {})
    return values


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind not in POD_KINDS:
        return None
    spec = doc.get("spec", {})
    if kind == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def pod_labels(doc: dict) -> dict:
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("metadata", {}).get("labels", {}) or {}


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def selector_matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def rust_metric_names(repo: Path) -> set[str]:
    names = set()
    const = re.compile(r'pub const [A-Z0-9_]+: &str = "((?:plasma|http)_[a-z0-9_]+)";')
    for path in repo.glob("*/src/**/*.rs"):
        if "target" in path.parts:
            continue
        names.update(const.findall(path.read_text(errors="replace")))
    return names


def rust_read_models(repo: Path) -> set[str]:
    models = set()
    for path in (repo / "projections/src/models").glob("*.rs"):
        match = re.search(r'pub const NAME: &str = "([a-z_]+)";', path.read_text())
        if match:
            models.add(match.group(1))
    return models


def metric_refs(expr: str, known: set[str]) -> set[str]:
    unknown = set()
    for ref in METRIC_REF.findall(expr):
        base = ref
        for suffix in SERIES_SUFFIXES:
            if ref.endswith(suffix) and ref[: -len(suffix)] in known:
                base = ref[: -len(suffix)]
        if base not in known:
            unknown.add(ref)
    return unknown


def check_case(rendered: Path, values: dict, chart: Path, repo: Path, f: Failures, known_metrics: set[str]) -> int:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    case = rendered.stem
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    # No secret material rendered.
    f.check("Secret" not in by_kind, case, "a Secret is rendered; secrets must come from an existing Secret")
    for cm in by_kind.get("ConfigMap", []):
        for key in (cm.get("data") or {}):
            if key.endswith(".json"):
                continue
            f.check(not SECRET_NAME.search(key), f"{case} {name_of(cm)}", f"key {key} looks like a secret")

    # Pods: security context, probes, env.
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f"{case} {name_of(doc)}"
        psc = spec.get("securityContext") or {}
        f.check(spec.get("automountServiceAccountToken") is False, where, "automountServiceAccountToken is not false")
        f.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, "pod seccompProfile is not RuntimeDefault")
        for container in (spec.get("initContainers") or []) + spec.get("containers", []):
            cwhere = f"{where} container {container['name']}"
            sc = container.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            f.check(non_root is True, cwhere, "runAsNonRoot is not true")
            f.check(uid is not None and uid != 0, cwhere, f"runAsUser is {uid}")
            f.check(sc.get("readOnlyRootFilesystem") is True, cwhere, "readOnlyRootFilesystem is not true")
            f.check(sc.get("allowPrivilegeEscalation") is False, cwhere, "allowPrivilegeEscalation is not false")
            f.check(sc.get("privileged") in (None, False), cwhere, "privileged")
            f.check("ALL" in (sc.get("capabilities", {}).get("drop") or []), cwhere, "capabilities do not drop ALL")
            f.check(not (sc.get("capabilities", {}).get("add")), cwhere, "capabilities are added")
            image = container.get("image", "")
            f.check(not image.endswith(":latest") and (":" in image or "@" in image), cwhere, f"image {image!r} is not pinned")
            for env in container.get("env") or []:
                if SECRET_NAME.search(env["name"]):
                    f.check("value" not in env, cwhere, f"env {env['name']} has a literal value")
                    f.check("secretKeyRef" in (env.get("valueFrom") or {}), cwhere, f"env {env['name']} is not from a secretKeyRef")
            res = container.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    f.check(r in (res.get(part) or {}), cwhere, f"resources.{part}.{r} is not set")
            if doc["kind"] == "Deployment":
                ports = {p.get("name") for p in container.get("ports") or []} | {p.get("containerPort") for p in container.get("ports") or []}
                for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")):
                    get = (container.get(probe) or {}).get("httpGet")
                    if probe == "startupProbe" and not container.get(probe):
                        continue
                    if f.check(get is not None, cwhere, f"no {probe} httpGet"):
                        f.check(get.get("path") == path, cwhere, f"{probe} path is {get.get('path')}, expected {path}")
                        f.check(get.get("port") in ports, cwhere, f"{probe} port {get.get('port')} is not a container port")
            else:
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    f.check(probe not in container, cwhere, f"a run-to-completion container has a {probe}")

    # Hooks: the migration Job.
    jobs = {j["metadata"]["name"]: j for j in by_kind.get("Job", [])}
    migrate = [j for j in jobs.values() if j["spec"]["template"]["spec"]["containers"][0].get("args") == ["migrate"]]
    if values.get("migrations", {}).get("enabled", True):
        if f.check(len(migrate) == 1, case, f"expected one `plasma migrate` Job, found {len(migrate)}"):
            ann = migrate[0]["metadata"].get("annotations") or {}
            hooks = set((ann.get("helm.sh/hook") or "").split(","))
            f.check({"pre-install", "pre-upgrade"} <= hooks, case, f"migrate Job hooks are {ann.get('helm.sh/hook')!r}")
            f.check(bool(ann.get("helm.sh/hook-delete-policy")), case, "migrate Job has no hook-delete-policy")
            f.check(migrate[0]["spec"]["template"]["spec"].get("restartPolicy") == "Never", case, "migrate Job restartPolicy")
            weights = {j["metadata"]["name"]: int(j["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for j in jobs.values()}
            mw = weights[migrate[0]["metadata"]["name"]]
            f.check(all(w >= mw for w in weights.values()), case, "a hook Job runs before the migrations")
    for doc in docs:
        ann = doc.get("metadata", {}).get("annotations") or {}
        if doc["kind"] in ("ServiceAccount", "NetworkPolicy") and "helm.sh/hook" in ann:
            # Hook objects the Jobs need must exist before them.
            f.check(int(ann.get("helm.sh/hook-weight", "0")) < 0, f"{case} {name_of(doc)}", "hook weight is not below the Jobs'")

    # Workers: which Deployment runs what.
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    partitions = values["kafka"]["partitions"]
    read_models_rendered = set()
    relay = []
    extract = []
    communities = []
    embed_models = values.get("embed", {}).get("models") or []
    community_model = (values.get("communities", {}).get("model") or (embed_models[0] if embed_models else "none"))
    for name, dep in deployments.items():
        args = dep["spec"]["template"]["spec"]["containers"][0].get("args") or []
        sub = args[0] if args else ""
        where = f"{case} Deployment/{name}"
        if sub == "relay":
            relay.append(dep)
            f.check(dep["spec"].get("replicas") == 2, where, f"relay replicas {dep['spec'].get('replicas')}, expected 2")
            f.check(name not in hpas, where, "the relay has an HPA")
        if sub == "alerts":
            f.check(dep["spec"].get("replicas") == 1, where, "alerts replicas is not 1")
            f.check(dep["spec"].get("strategy", {}).get("type") == "Recreate", where, "alerts strategy is not Recreate")
            f.check(name not in hpas, where, "the alerts worker has an HPA")
        if sub == "extract":
            extract.append(dep)
        if sub == "communities":
            communities.append(dep)
            f.check(dep["spec"].get("replicas") == 1, where, f"communities replicas {dep['spec'].get('replicas')}, expected 1")
            f.check(name not in hpas, where, "the communities worker has an HPA")
            model = args[args.index("--model") + 1] if "--model" in args else None
            f.check(model == community_model, where, f"communities --model {model}, expected {community_model}")
            f.check(model == "none" or model in embed_models, where, f"communities model {model} is not among embed.models {embed_models}")
            f.check("--interval" in args, where, "no --interval")
            volumes = {v["name"] for v in dep["spec"]["template"]["spec"].get("volumes") or []}
            f.check(("models" in volumes) == (model != "none"), where, f"models volume {'missing' if model != 'none' else 'mounted without a model'}")
        if sub in ("relay", "project", "embed", "extract", "communities", "alerts"):
            f.check("--metrics-listen" in args, where, "no --metrics-listen")
        if sub == "serve":
            # SIGTERM: /ready fails and serving goes on for the drain delay, then in-flight
            # requests get the drain timeout; the kubelet must not SIGKILL before both pass.
            env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0].get("env") or []}
            seconds = lambda v: float(v[:-2]) / 1000 if v.endswith("ms") else float(v.rstrip("s"))
            if f.check("PLASMA_DRAIN_DELAY" in env and "PLASMA_DRAIN_TIMEOUT" in env, where, "no drain delay/timeout"):
                drain = seconds(env["PLASMA_DRAIN_DELAY"]) + seconds(env["PLASMA_DRAIN_TIMEOUT"])
                grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
                f.check(grace > drain, where, f"terminationGracePeriodSeconds {grace} does not exceed the drain ({drain}s)")
        context = None
        if sub == "project":
            model = args[args.index("--read-model") + 1]
            read_models_rendered.add(model)
            override = (values.get("projections", {}).get("readModels", {}) or {}).get(model) or {}
            context = override.get("context")
        elif sub == "embed":
            context = values.get("embed", {}).get("context")
        elif sub == "extract":
            context = values.get("extract", {}).get("context")
        if context is not None:
            bound = partitions.get(context)
            if not f.check(bound is not None, where, f"no partition count for context {context}"):
                continue
            if name in hpas:
                top = hpas[name]["spec"]["maxReplicas"]
                f.check(top <= bound, where, f"HPA maxReplicas {top} exceeds the {bound} partitions of the {context} topic")
                f.check(hpas[name]["spec"].get("minReplicas", 1) <= top, where, "HPA minReplicas exceeds maxReplicas")
            else:
                f.check(dep["spec"].get("replicas", 1) <= bound, where, f"replicas exceed the {bound} partitions of the {context} topic")
    f.check(len(relay) == 1, case, f"expected one relay Deployment, found {len(relay)}")
    for what, found in (("extract", extract), ("communities", communities)):
        want = 1 if values.get(what, {}).get("enabled", True) else 0
        f.check(len(found) == want, case, f"expected {want} {what} Deployment, found {len(found)}")
    if values.get("projections", {}).get("enabled", True):
        expected = {m for m, o in (values["projections"]["readModels"] or {}).items() if (o or {}).get("enabled", True)}
        f.check(read_models_rendered == expected, case, f"projection Deployments {sorted(read_models_rendered)} != read models in values {sorted(expected)}")
        in_code = rust_read_models(repo)
        f.check(set(values["projections"]["readModels"]) == in_code, case,
                f"projections.readModels {sorted(values['projections']['readModels'])} != read models in projections/src/models {sorted(in_code)}")
    for name, hpa in hpas.items():
        f.check(name in deployments, f"{case} HorizontalPodAutoscaler/{name}", "targets no rendered Deployment")
        if name in deployments:
            f.check("replicas" not in deployments[name]["spec"], f"{case} Deployment/{name}", "sets replicas while an HPA scales it")

    # NetworkPolicies select every pod.
    if values.get("networkPolicy", {}).get("enabled"):
        policies = by_kind.get("NetworkPolicy", [])
        for doc in docs:
            if pod_spec(doc) is None:
                continue
            labels = pod_labels(doc)
            covered = [p for p in policies if selector_matches(p["spec"]["podSelector"], labels)
                       and "Ingress" in p["spec"].get("policyTypes", []) and "Egress" in p["spec"].get("policyTypes", [])]
            f.check(bool(covered), f"{case} {name_of(doc)}", "no NetworkPolicy restricts its ingress and egress")
        # Which external endpoints the extract and communities workers may reach.
        endpoints = values["networkPolicy"].get("egress") or {}
        ports_of = lambda key: {p.get("port") for rule in endpoints.get(key) or [] for p in rule.get("ports") or []}
        needs = {"extract": ({"database", "kafka", "schemaRegistry"}, set()),
                 "communities": ({"database"}, {"kafka", "schemaRegistry"})}
        for dep in (extract + communities):
            sub = dep["spec"]["template"]["spec"]["containers"][0]["args"][0]
            labels = pod_labels(dep)
            rules = [r for p in policies if selector_matches(p["spec"]["podSelector"], labels)
                     and "Egress" in p["spec"].get("policyTypes", []) for r in p["spec"].get("egress") or []]
            where = f"{case} {name_of(dep)}"
            f.check(all(r.get("ports") for r in rules), where, "an egress rule opens every port")
            allowed = {p.get("port") for r in rules for p in r.get("ports") or []}
            reach, never = needs[sub]
            for key in reach:
                f.check(ports_of(key) <= allowed, where, f"egress to {key} ports {sorted(ports_of(key))} is not allowed")
            for key in never:
                f.check(not (ports_of(key) & allowed), where, f"egress to {key} ports {sorted(ports_of(key) & allowed)} is allowed")

    # PDBs select pods of a rendered Deployment.
    for pdb in by_kind.get("PodDisruptionBudget", []):
        f.check(any(selector_matches(pdb["spec"]["selector"], pod_labels(d)) for d in deployments.values()),
                f"{case} {name_of(pdb)}", "selects no Deployment's pods")

    # Monitoring.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for sm in by_kind.get("ServiceMonitor", []):
        where = f"{case} {name_of(sm)}"
        targets = [s for s in services.values() if selector_matches(sm["spec"]["selector"], s["metadata"].get("labels") or {})]
        if f.check(bool(targets), where, "selects no Service"):
            for ep in sm["spec"]["endpoints"]:
                f.check(ep.get("path") == "/metrics", where, f"endpoint path {ep.get('path')}")
                f.check(all(ep["port"] in {p.get("name") for p in s["spec"]["ports"]} for s in targets), where, f"port {ep['port']} not on its Services")
    rules = by_kind.get("PrometheusRule", [])
    if values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        if f.check(len(rules) == 1, case, "expected one PrometheusRule"):
            alerts = {r["alert"]: r for g in rules[0]["spec"]["groups"] for r in g["rules"] if "alert" in r}
            def expr(name: str) -> str:
                return alerts.get(name, {}).get("expr", "")
            f.check(re.search(r"histogram_quantile\(0\.95, .*http_request_duration_seconds_bucket.*\) > 0\.2$", expr("PlasmaApiLatencyP95High"), re.S) is not None, case, "no p95 > 200 ms rule")
            f.check(re.search(r"histogram_quantile\(0\.99, .*http_request_duration_seconds_bucket.*\) > 1$", expr("PlasmaApiLatencyP99High"), re.S) is not None, case, "no p99 > 1 s rule")
            f.check(re.search(r'http_requests_total\{.*status=~"5\.\.".*\) > 0\.01$', expr("PlasmaApiErrorRateHigh"), re.S) is not None, case, "no 5xx ratio > 1 % rule")
            f.check("plasma_projection_lag_events" in expr("PlasmaProjectionLagHigh"), case, "no projection lag rule")
            f.check("plasma_relay_outbox_depth" in expr("PlasmaRelayOutboxDepthHigh"), case, "no relay outbox depth rule")
            for name, rule in alerts.items():
                unknown = metric_refs(rule["expr"], known_metrics)
                f.check(not unknown, f"{case} PrometheusRule {name}", f"metrics not defined in the code: {sorted(unknown)}")
    dashboards = [c for c in by_kind.get("ConfigMap", []) if "plasma.json" in (c.get("data") or {})]
    if values.get("grafana", {}).get("dashboard", {}).get("enabled"):
        if f.check(len(dashboards) == 1, case, "expected one dashboard ConfigMap"):
            cm = dashboards[0]
            f.check((cm["metadata"].get("labels") or {}).get("grafana_dashboard") == "1", case, "dashboard ConfigMap lacks grafana_dashboard: \"1\"")
            f.check(json.loads(cm["data"]["plasma.json"]) == json.loads((chart / "dashboards/plasma.json").read_text()), case, "dashboard differs from dashboards/plasma.json")
    return len(docs)


def check_dashboard(chart: Path, f: Failures, known_metrics: set[str]) -> None:
    dash = json.loads((chart / "dashboards/plasma.json").read_text())
    exprs = []
    titles = []
    ids = set()
    for panel in dash["panels"]:
        titles.append(panel["title"].lower())
        f.check(panel["id"] not in ids, "dashboard", f"duplicate panel id {panel['id']}")
        ids.add(panel["id"])
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    for title, expr in exprs:
        unknown = metric_refs(expr, known_metrics)
        f.check(not unknown, f"dashboard panel {title!r}", f"metrics not defined in the code: {sorted(unknown)}")
        f.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), f"dashboard panel {title!r}", "unbalanced brackets")
    text = " ".join(titles)
    for topic in ("requests/s by route", "errors/s by route", "p95 latency by route", "p99 latency by route",
                  "events appended", "projection lag", "outbox depth", "publish latency", "throughput"):
        f.check(topic in text, "dashboard", f"no panel about {topic}")
    variables = {v["name"] for v in dash["templating"]["list"]}
    f.check({"datasource", "namespace"} <= variables, "dashboard", f"variables {sorted(variables)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--chart", type=Path, default=None)
    parser.add_argument("--case", action="append", default=[], help="RENDERED.yaml=VALUES[,VALUES...]")
    args = parser.parse_args()
    chart = args.chart or args.repo / "k8s/plasma"
    f = Failures()
    known = rust_metric_names(args.repo)
    f.check(len(known) >= 10, "repo", f"found only {len(known)} metric names in the Rust sources")
    manifests = 0
    for case in args.case:
        rendered, _, files = case.partition("=")
        values = load_values(chart, [x for x in files.split(",") if x])
        manifests += check_case(Path(rendered), values, chart, args.repo, f, known)
    check_dashboard(chart, f, known)
    if f.items:
        print(f"check-chart.py: {len(f.items)} of {f.checks} checks failed:", file=sys.stderr)
        for item in f.items:
            print(f"  {item}", file=sys.stderr)
        return 1
    print(f"check-chart.py: {f.checks} checks passed on {manifests} manifests in {len(args.case)} renderings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
