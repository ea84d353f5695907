"""`make bench-pdp`: decisions/s and latency of the PDP, every engine, beside OPA.

Starts its own redis-server, OPA server and PDPs on free loopback ports, runs
wrk against each, prints a table, and stops everything. Two workloads: one
token on one route (the memo's best case), and a high-cardinality one, 10,000
distinct signed tokens over 7 routes cycled so that one body comes back only
every 70,000 requests (the memo, 10,000 entries per worker, rarely hits). A
benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import wrk  # noqa: E402
from tests.support.pdp_process import start_pdp as start_pdp_process  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import Server  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
WORKERS = int(os.environ.get("PDP_WORKERS", "2"))
SHIPPED = ROOT / "policies"
ROUTE = os.environ.get("BENCH_PATH", "/api/v1/users/me")


def opa_binary() -> str:
    path = shutil.which("opa") or str(Path.home() / ".cache/lucid-gateway/tools/bin/opa")
    if not os.path.exists(path):
        sys.exit("bench-pdp: opa not found; run `make bootstrap` first")
    return path


def start_opa() -> Server:
    port = free_port()
    return Server([opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"], port)


def start_pdp(env: dict) -> Server:
    return start_pdp_process(
        {"DECISION_LOG": "off", "LOG_LEVEL": "warning", "POLICY_RELOAD_INTERVAL_S": "0", **env}, workers=WORKERS
    )


def check_body(token: str | None, path: str = ROUTE, extra_headers: int = 0) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    headers.update({"user-agent": "wrk", "accept": "*/*", "x-request-id": "bench"})
    headers.update({f"x-extra-{i}": f"value-{i}" for i in range(extra_headers)})
    return {
        "request": {
            "method": "GET",
            "path": path,
            "headers": headers,
            "host": "gateway.local",
            "scheme": "https",
            "client_ip": "127.0.0.1",
        }
    }


def mint(secret: str, sub: str = "bench-user") -> str:
    """An access token from the shared minting helper (typ at+jwt, RFC 9068)."""
    from pdp.authn.tokens import mint_access_token

    # enterprise: no daily quota and 10M a month, so every decision is an allow that spends quota
    token, _ = mint_access_token(secret, "HS256", sub=sub, roles=["user"], plan="enterprise", mfa=True, lifetime_s=3600)
    return token


TOKENS = int(os.environ.get("BENCH_TOKENS", "10000"))
# 7 routes (coprime with 10,000): an enterprise user with MFA is allowed on each.
MIXED_ROUTES = [
    ("GET", "/api/v1/users/me"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/wallets"),
    ("GET", "/api/v1/chain/info"),
    ("GET", "/api/v1/trust/policies"),
    ("POST", "/api/v1/wallets/w-1/transactions"),
    ("GET", "/api/v1/manifests/m-1"),
]
_CHECK_TEMPLATE = (
    '{"request":{"method":"{method}","path":"{path}","headers":{"authorization":"Bearer {item}",'
    '"user-agent":"wrk"},"host":"gateway.local","scheme":"https","client_ip":"127.0.0.1"}}'
)
_OPA_TEMPLATE = (
    '{"input":{"request":{"method":"{method}","path":"{path}","parsed_path":{parsed},'
    '"client_ip":"127.0.0.1"},"subject":{"authenticated":true,"sub":"{item}","roles":["user"],'
    '"plan":"enterprise","mfa":true}}}'
)


def _routes() -> list[tuple[str, str, str]]:
    return [(m, p, json.dumps([s for s in p.split("/") if s])) for m, p in MIXED_ROUTES]


def measure_mixed(name: str, url: str, template: str, items: list[str]) -> tuple:
    """wrk over the cycled workload; also how many of the first 7 bodies were allowed."""
    allowed = 0
    for (method, path, parsed), item in zip(_routes(), items):
        body = template.replace("{method}", method).replace("{path}", path).replace("{parsed}", parsed)
        answer = requests.post(
            url, data=body.replace("{item}", item), timeout=5, headers={"content-type": "application/json"}
        ).json()
        allowed += bool(answer.get("allow", answer.get("result", {}).get("allow")))
    result = wrk.run_script(name, url, SECONDS, CONNECTIONS, wrk.cycled_lua(_routes(), template, items))
    return result, allowed == len(MIXED_ROUTES)


def memo_hit_ratio(pdp_url: str) -> str:
    text = requests.get(pdp_url + "/metrics", timeout=5).text
    counts = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^lucid_pdp_memo_lookups_total\{result="(hit|miss)"\} ([0-9.e+]+)$', text, re.M)
    }
    total = sum(counts.values())
    return f"memo hits {counts.get('hit', 0) / total:.0%}" if total else "no memo"


def policy_input(body: dict) -> dict:
    """What the PDP would hand the policy for this check (for OPA's REST API)."""
    from pdp.policy_input import build_request

    req = build_request(body["request"])
    return {
        "request": req,
        "subject": {
            "authenticated": True,
            "sub": "bench-user",
            "roles": ["user"],
            "plan": "enterprise",
            "mfa": True,
            "iss": None,
        },
        "now_ns": time.time_ns(),
    }


def measure(name, url, body, connections=CONNECTIONS, seconds=SECONDS):
    first = requests.post(url, json=body, timeout=5)
    first.raise_for_status()
    answer = first.json()
    allowed = answer.get("allow", answer.get("result", {}).get("allow"))
    result = wrk.run(name, url, seconds, connections, method="POST", body=body)
    last = requests.post(url, json=body, timeout=5).json()
    still = last.get("allow", last.get("result", {}).get("allow"))
    return result, allowed and still


def growth_policy(folder: Path, entries: int) -> Path:
    """A policy doing one keyed lookup in `entries` grants: data.gateway.grants[path][role]."""
    pkg = folder / "gateway"
    pkg.mkdir(parents=True)
    (pkg / "decision.rego").write_text(
        "package gateway\n\n"
        'default decision := {"allow": false, "status": 403, "reason": "forbidden"}\n\n'
        'decision := {"allow": true, "status": 200, "reason": "ok"} if {\n'
        "\tsome role in input.subject.roles\n"
        "\tdata.gateway.grants[input.request.path][role]\n"
        "}\n"
    )
    grants = {f"/api/v1/resource/{i}": {"user": True} for i in range(entries - 1)}
    grants[ROUTE] = {"user": True}
    (pkg / "data.json").write_text(json.dumps({"grants": grants}))
    return folder


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("bench-pdp: wrk not found (apt-get install wrk)")
    policies = SHIPPED if (SHIPPED / "gateway").exists() else ROOT / "tests/fixtures/policies"
    secret = secrets.token_hex(32)
    token = mint(secret)
    redis = start_redis()
    opa = start_opa()
    servers = [redis, opa]
    # Quota is spent on every decision (as deployed by default), with limits out of reach.
    base_env = {
        "JWT_SECRET_KEY": secret,
        "REDIS_URL": redis.redis_url,
        "POLICY_DIR": str(policies),
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "10000000",
        "RATE_LIMIT_BURST_SIZE": "10000000",
    }
    engines = [
        ("pdp wasm", {}),
        ("pdp wasm, memo off", {"PDP_MEMO_SIZE": "0"}),
        # The opa engine never memoizes (OPA's data may change behind the PDP's back).
        ("pdp opa engine (never memoized)", {"PDP_ENGINE": "opa", "OPA_URL": opa.url}),
    ]
    single, mixed = {}, {}
    try:
        print(
            f"# bench-pdp: {WORKERS} PDP workers, wrk {CONNECTIONS} connections, {SECONDS}s per point, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, policies {policies.relative_to(ROOT)}, "
            f"quota spent on every decision"
        )
        print(f"\n## one token, GET {ROUTE} (the memo's best case)")
        print(wrk.HEADER)
        body = check_body(token)
        for name, env in engines:
            server = start_pdp({**base_env, **env})
            r, allowed = measure(name, server.url + "/v1/check", body)
            print(r.row(), "" if allowed else "(deny!)", memo_hit_ratio(server.url), flush=True)
            single[name] = r
            server.stop()
        # OPA alone, evaluating the same policy (pushed by the opa engine above) on the same input.
        opa_body = {"input": policy_input(body)}
        r, allowed = measure("opa REST /v1/data/gateway/decision", opa.url + "/v1/data/gateway/decision", opa_body)
        print(r.row(), "" if allowed else "(deny!)", flush=True)
        single["opa"] = r

        print(f"\n## high cardinality: {TOKENS:,} distinct tokens x {len(MIXED_ROUTES)} routes, cycled")
        print(wrk.HEADER)
        tokens = [mint(secret, f"user-{k:05d}") for k in range(TOKENS)]
        # By default every uncached token's revocation check is a Redis round trip beside
        # the quota spend; JWT_REVOCATION_VIEW_ANSWERS lets the local view answer instead.
        view = [("pdp wasm, view answers revocations", {"JWT_REVOCATION_VIEW_ANSWERS": "true"})]
        for name, env in engines[:1] + view + engines[1:]:
            server = start_pdp({**base_env, **env})
            r, allowed = measure_mixed(name, server.url + "/v1/check", _CHECK_TEMPLATE, tokens)
            print(r.row(), "" if allowed else "(deny!)", memo_hit_ratio(server.url), flush=True)
            mixed[name] = r
            server.stop()
        subs = [f"user-{k:05d}" for k in range(TOKENS)]
        r, allowed = measure_mixed(
            "opa REST /v1/data/gateway/decision", opa.url + "/v1/data/gateway/decision", _OPA_TEMPLATE, subs
        )
        print(r.row(), "" if allowed else "(deny!)", flush=True)
        mixed["opa"] = r
        print(
            f"\nratio pdp wasm / OPA REST: one token {single['pdp wasm'].rps / single['opa'].rps:.2f}x, "
            f"high cardinality {mixed['pdp wasm'].rps / mixed['opa'].rps:.2f}x decisions/s "
            "(the PDP also verifies the JWT, spends quota in Redis and speaks HTTP+JSON to its caller)"
        )
        in_process(base_env, engines, token, tokens)
        growth(base_env, opa, token)
    finally:
        for s in reversed(servers):
            s.stop()


def _decision_p50_ms(env: dict, body: dict, n: int = 2000) -> float:
    """p50 of Decider.decide() in this process: the PDP's own cost per decision,
    without HTTP and scheduling noise (real engine, real Redis, real OPA)."""
    return _decisions_p50_ms(env, [body["request"]], n)


def _decisions_p50_ms(env: dict, requests_: list[dict], n: int) -> float:
    """p50 of Decider.decide() over requests_ cycled (nan if any is denied)."""
    from pdp.app import build_services
    from pdp.config import load_settings

    services = build_services(load_settings({**env, "DECISION_LOG": "off"}))
    for request in requests_[:200]:
        if not services.decider.decide(request).allow:
            return float("nan")
    samples = []
    for i in range(n):
        request = requests_[i % len(requests_)]
        started = time.perf_counter()
        services.decider.decide(request)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2] * 1000


def in_process(base_env: dict, engines: list, token: str, tokens: list[str]) -> None:
    """The same two workloads as p50 of Decider.decide: robust when other work shares the cores."""
    one = [check_body(token)["request"]]
    mixed = []
    for k, item in enumerate(tokens):
        method, path = MIXED_ROUTES[k % len(MIXED_ROUTES)]
        body = check_body(item, path=path)["request"]
        mixed.append({**body, "method": method})
    n = min(len(mixed) * 2, 20000)
    # Quota off: its Redis calls are batched over a short window (pdp/redis_script.py),
    # which a loop of one caller would only wait on; the wrk rows above include it.
    print("\n# in process: p50 ms of one decision (Decider.decide: JWT, trimmed input, engine; quota off)")
    print(f"{'engine':<34} {'one token':>10} {'high cardinality':>17}")
    for name, env in engines:
        env = {**base_env, **env, "RATE_LIMIT_ENABLED": "false"}
        row = (_decisions_p50_ms(env, one, 2000), _decisions_p50_ms(env, mixed, n))
        print(f"{name:<34} {row[0]:>10.3f} {row[1]:>17.3f}", flush=True)


def growth(base_env, opa, token) -> None:
    """p50 per decision as data and headers grow, both engines, memo on and off."""
    print("\n# cost growth: p50 ms of one decision inside the PDP (Decider.decide, 2,000 in a row)")
    print("# data: entries in data.gateway.grants, looked up by path; headers: request headers sent")
    print(f"{'case':<30} {'wasm':>10} {'wasm memo off':>14} {'opa engine':>11}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-growth-"))
    engines = ({}, {"PDP_MEMO_SIZE": "0"}, {"PDP_ENGINE": "opa", "OPA_URL": opa.url})
    rows = {}
    try:
        for entries in (10, 1000, 10000):
            folder = growth_policy(tmp / f"d{entries}", entries)
            row = [
                _decision_p50_ms({**base_env, "POLICY_DIR": str(folder), **env}, check_body(token)) for env in engines
            ]
            rows[entries] = row
            print(f"{entries:>6} data entries{'':<16} {row[0]:>10.3f} {row[1]:>14.3f} {row[2]:>11.3f}", flush=True)
        for headers in (5, 100):
            body = check_body(token, extra_headers=headers - 3)
            row = [_decision_p50_ms({**base_env, "POLICY_DIR": str(tmp / "d10"), **env}, body) for env in engines]
            print(f"{headers:>6} request headers{'':<13} {row[0]:>10.3f} {row[1]:>14.3f} {row[2]:>11.3f}", flush=True)
        small, big = rows[10], rows[10000]
        print(
            f"\np50 ratio 10,000 vs 10 entries: wasm {big[0] / small[0]:.2f}x, "
            f"wasm memo off {big[1] / small[1]:.2f}x, opa engine {big[2] / small[2]:.2f}x"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
