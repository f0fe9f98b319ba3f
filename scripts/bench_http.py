"""Drives the real `plasma` server over loopback and prints a Markdown table of figures.

Run through scripts/bench-http.sh, which builds the binary and provides PostgreSQL.
"""
import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

SECRET = "bench-secret-0123456789-0123456789-abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(self, method, path, body=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None


def mention(i, rng, start):
    opener = rng.choice(["Just tried the new Acme rocket skates and honestly", "Customer service at Acme today was",
                         "Comparing Acme with Globex for our team rollout,", "Week three with my Acme anvil:"])
    middle = rng.choice(["it is fantastic, fast, and a joy to use every single morning",
                         "it was terrible, slow and broken, and nobody answered my emails",
                         "it is fine I guess, nothing special, works as described",
                         "I love the design but hate the price compared to what Globex charges"])
    return {
        "source": rng.choice(["twitter", "reddit", "news", "blog"]),
        "external_id": f"m-{i:09d}",
        "author": f"@user{rng.randrange(50000)}",
        "text": f"{opener} {middle}. Curious what everyone else thinks #{i} {rng.getrandbits(64):016x}",
        "url": f"https://social.example/posts/{i}",
        "published_at": (start + timedelta(seconds=rng.randrange(30 * 86400))).isoformat().replace("+00:00", "Z"),
        "language": "en",
    }


def oha(url, token, rate, seconds):
    out = subprocess.run(
        ["oha", "--no-tui", "--output-format", "json", "-q", str(rate), "-z", f"{seconds}s", "-c", "32",
         "-H", f"Authorization: Bearer {token}", url],
        check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    statuses = report.get("statusCodeDistribution", {})
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    total = sum(statuses.values())
    p = report["latencyPercentiles"]
    return {"rps": report["summary"]["requestsPerSec"], "p50": p["p50"] * 1000, "p99": p["p99"] * 1000,
            "ok": ok, "total": total}


def run_backend(name, args, env_extra, serve_args):
    port = free_port()
    env = dict(os.environ, PLASMA_JWT_SECRET=SECRET, PLASMA_RATE_LIMIT_PER_SECOND="0", PLASMA_LOG="warn", **env_extra)
    server = subprocess.Popen([args.plasma, "serve", "--listen", f"127.0.0.1:{port}", *serve_args], env=env,
                              stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"{name}: server did not come up")
            time.sleep(0.2)
        token = subprocess.run([args.plasma, "token", "--tenant", "bench", "--role", "admin", "--ttl", "2h"],
                               env=env, check=True, capture_output=True, text=True).stdout.strip().split()[-1]
        client = Client(port, token)
        brand = client.request("POST", "/v1/brands", {"name": "Acme", "keywords": ["acme"],
                                                      "competitors": ["Globex", "Initech"]})
        brand_id = brand.get("brand_id") or brand.get("aggregate_id") or brand.get("id")
        rng = random.Random(7)
        start = datetime(2026, 10, 1, tzinfo=timezone.utc)
        bodies = []
        for b in range(args.mentions // 10000):
            bodies.append(json.dumps({"mentions": [mention(b * 10000 + i, rng, start) for i in range(10000)]}).encode())

        def post(body):
            return Client(port, token).request("POST", f"/v1/brands/{brand_id}/mentions", body)

        began = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            receipts = list(pool.map(post, bodies))
        bulk_seconds = time.perf_counter() - began
        ingested = sum(r["ingested"] for r in receipts)
        last = max(r["last_position"] for r in receipts)

        singles = []
        for i in range(args.singles):
            body = {"mentions": [mention(10_000_000 + i, rng, start)]}
            t = time.perf_counter()
            receipt = client.request("POST", f"/v1/brands/{brand_id}/mentions", body)
            singles.append((time.perf_counter() - t) * 1000)
            last = max(last, receipt["last_position"])
        singles.sort()

        # Queries see everything before they are measured: wait (503 + Retry-After) until the
        # read models have applied the last write.
        deadline = time.time() + 300
        while True:
            try:
                client.request("GET", f"/v1/brands/{brand_id}/stats?min_position={last}")
                break
            except RuntimeError as err:
                if " 503 " not in str(err) or time.time() > deadline:
                    raise
                client = Client(port, token)
        base = f"http://127.0.0.1:{port}"
        stats = oha(f"{base}/v1/brands/{brand_id}/stats?from=2026-10-01&to=2026-10-31", token, args.rate, args.seconds)
        mentions = oha(f"{base}/v1/brands/{brand_id}/mentions?limit=50&sentiment=negative", token, args.rate,
                       args.seconds)
        return {
            "bulk": (ingested, bulk_seconds),
            "single": (singles[len(singles) // 2], singles[int(len(singles) * 0.99) - 1]),
            "stats": stats,
            "mentions": mentions,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--plasma", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--pg-admin-url", required=True)
    parser.add_argument("--mentions", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--singles", type=int, default=500)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()

    database = f"plasma_http_{int(time.time())}"
    subprocess.run(["psql", args.pg_admin_url, "-qc", f"CREATE DATABASE {database}"], check=True)
    pg_url = args.pg_admin_url.rsplit("/", 1)[0] + "/" + database
    results = {
        "SQLite": run_backend("SQLite", args, {}, ["--data-dir", os.path.join(args.work, "sqlite")]),
        "PostgreSQL": run_backend("PostgreSQL", args, {"PLASMA_DATABASE_URL": pg_url}, []),
    }
    print(f"{os.cpu_count()} cores; bulk: {args.mentions} mentions in requests of 10,000 from {args.clients} "
          f"clients; single: {args.singles} sequential one-mention requests; queries: oha -q {args.rate} "
          f"-z {args.seconds}s -c 32\n")
    print("| measurement | SQLite | PostgreSQL |")
    print("|---|---:|---:|")
    row = lambda label, f: print(f"| {label} | {f(results['SQLite'])} | {f(results['PostgreSQL'])} |")
    row("bulk ingest through HTTP, mentions/s", lambda r: f"{r['bulk'][0] / r['bulk'][1]:,.0f}")
    row("single ingest latency p50 / p99 (ms)", lambda r: f"{r['single'][0]:.1f} / {r['single'][1]:.1f}")
    for key, label in [("stats", "GET brand stats (30 days)"), ("mentions", "GET mentions (50, negative)")]:
        row(f"{label}: achieved req/s", lambda r, k=key: f"{r[k]['rps']:,.0f} ({r[k]['ok']}/{r[k]['total']} 2xx)")
        row(f"{label}: p50 / p99 (ms)", lambda r, k=key: f"{r[k]['p50']:.2f} / {r[k]['p99']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
