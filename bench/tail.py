"""`make bench-tail`: where our chain's open-loop latency goes, layer by layer.

Our proxy -> PDP -> Redis, quotas spent on every request (as in make bench),
driven open loop by vegeta at each of BENCH_RATES over 1,000 connections, on
both workloads. For each run it prints p50 and p99 as seen by:

  client        vegeta: from the request being due to its answer
  proxy         lucid_proxy_request_duration_seconds: from the request head
                being read to the answer written (so client - proxy is the
                time before the proxy reads a request: accept, kernel queues,
                the worker's hub being busy)
  proxy->PDP    lucid_proxy_pdp_duration_seconds: one /v1/check round trip,
                waiting for a pooled connection included
  PDP decision  lucid_pdp_decision_seconds: inside the PDP worker (so proxy->PDP -
                PDP decision is gunicorn's accept, the PDP worker's hub, the wire)
  Redis         lucid_pdp_quota_redis_seconds: the Lua spend, from the PDP
then how many /v1/check calls the proxy made and the PDP decided (leases
and waiting for a lease in flight make them far fewer than the requests).

The proxy's and PDP's numbers are read from their /metrics histograms (all
workers), before and after each run, so they are bucket estimates (linear
within a bucket). Settings: BENCH_OPEN_SECONDS (8), BENCH_RATES (1000,2000),
BENCH_HIGH_CONNECTIONS (1000), BENCH_TOKENS (10000).
"""

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import requests

from . import stack
from . import workloads as workloads_mod
from .prom import buckets, quantile
from .run_bench import _env_number, _rates
from .vegeta import find_vegeta, run_vegeta

LAYERS = (
    ("proxy", "lucid_proxy_request_duration_seconds", "proxy"),
    ("proxy->PDP", "lucid_proxy_pdp_duration_seconds", "proxy"),
    ("PDP decision", "lucid_pdp_decision_seconds", "pdp"),
    ("Redis spend", "lucid_pdp_quota_redis_seconds", "pdp"),
)


def main() -> int:
    seconds = _env_number("BENCH_OPEN_SECONDS", 8.0, float)
    connections = _env_number("BENCH_HIGH_CONNECTIONS", 1000)
    tokens = _env_number("BENCH_TOKENS", 10000)
    rates = _rates(os.environ.get("BENCH_RATES", "1000,2000"))
    if not find_vegeta():
        sys.exit("bench-tail: vegeta not found (bash scripts/tools.sh bench builds it)")
    load = os.getloadavg()
    print(f"bench-tail: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    workdir = Path(tempfile.mkdtemp(prefix="lucid-tail-"))
    secret = secrets.token_hex(32)
    with contextlib.ExitStack() as running:
        running.callback(shutil.rmtree, workdir, ignore_errors=True)

        chain = stack.start_our_chain(running, workdir, secret)
        pdp, proxy, admin = chain.pdp, chain.proxy, chain.admin

        def scrape() -> dict:
            return {
                "proxy": buckets(requests.get(f"{proxy.url}/api/v1/meta/metrics", headers=admin, timeout=10).text),
                "pdp": buckets(requests.get(f"{pdp.url}/metrics", timeout=10).text),
            }

        print(f"\nopen loop (vegeta), {seconds:g} s per rate over {connections} connections; p50 / p99 in ms")
        print(
            f"  {'workload':<8} {'rate':>6}  {'success':>8}  {'client':>15}"
            + "".join(f"  {label:>15}" for label, _, _ in LAYERS)
            + f"  {'PDP calls':>8}  {'decisions':>8}"
        )
        for workload in ("hot", "mixed"):
            pairs = workloads_mod.targets(secret, workload, tokens)
            path = workloads_mod.write_vegeta_targets(workdir / f"{workload}.vegeta", proxy.url, pairs)
            for rate in rates:
                before = scrape()
                v = run_vegeta(path, rate, seconds, connections)
                after = scrape()
                cells = []
                for _, metric, source in LAYERS:
                    b, a = before[source].get(metric, {}), after[source].get(metric, {})
                    p50, p99 = quantile(b, a, 0.5), quantile(b, a, 0.99)
                    cells.append("n/a" if p50 is None else f"{p50:.1f} / {p99:.1f}")
                calls = {}
                for label, metric, source in LAYERS[1:3]:
                    b, a = before[source].get(metric, {}), after[source].get(metric, {})
                    calls[label] = a.get(float("inf"), 0) - b.get(float("inf"), 0)
                print(
                    f"  {workload:<8} {rate:>5}/s  {v.success * 100:7.2f}%  "
                    f"{f'{v.p50_ms:.1f} / {v.p99_ms:.1f}':>15}"
                    + "".join(f"  {c:>15}" for c in cells)
                    + f"  {calls['proxy->PDP']:>8,.0f}  {calls['PDP decision']:>8,.0f}  ({v.requests:,} sent)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
