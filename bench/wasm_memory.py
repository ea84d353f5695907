"""`make bench-wasm-memory`: the wasm engine's memory over many evaluations.

Compiles policies/ once, as a PDP worker does, then evaluates the decision
BENCH_EVALUATIONS times (default 1,000,000), each with another caller and
client IP (so nothing is memoized, and every input is new), and prints the
process's RSS and the instances' Wasm memory ten times along the way. A flat
RSS means the heap is reset between evaluations. Asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pdp.engines.wasm import WasmEngine  # noqa: E402
from pdp.policy.analysis import input_needs  # noqa: E402
from pdp.policy.bundle import load_bundle  # noqa: E402

EVALUATIONS = int(os.environ.get("BENCH_EVALUATIONS", "1000000"))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    bundle = load_bundle(ROOT / "policies")
    engine = WasmEngine()
    compiled = engine.compile(bundle)
    needs = input_needs(bundle.modules, bundle.data)
    print(f"# {EVALUATIONS:,} evaluations of policies/ {bundle.revision} on the wasm engine, no memo")
    print(f"{'evaluations':>12} {'RSS MiB':>9} {'wasm memory KiB':>16} {'instances':>10} {'us/eval':>8}")
    step = max(EVALUATIONS // 10, 1)
    started = time.perf_counter()
    last = started
    for i in range(EVALUATIONS + 1):
        doc = {
            "request": {
                "method": "GET",
                "parsed_path": ["api", "v1", "users", "me"],
                "client_ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            },
            "subject": {"authenticated": True, "sub": f"user-{i}", "roles": ["user"], "plan": "pro", "mfa": False},
        }
        engine.evaluate(compiled, needs.trim(doc))
        if i % step == 0:
            now = time.perf_counter()
            instance = compiled.pool.take()
            memory = instance._memory.data_len(instance._store) / 1024
            compiled.pool.give_back(instance)
            per = (now - last) / step * 1e6 if i else float("nan")
            print(f"{i:>12,} {rss_mib():>9.1f} {memory:>16.0f} {compiled.pool.created:>10} {per:>8.1f}", flush=True)
            last = now
    print(f"({time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
