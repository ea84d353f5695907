"""`make bench-policies`: the shipped policy's cost per decision on the wasm engine.

Compiles policies/ once the way the PDP does (WasmEngine, input trimmed to
the fields the policy reads), then evaluates data.gateway.decision in a loop on
a few representative inputs, with no memoization. A benchmark, not a test: it
asserts nothing about speed. BENCH_ITERATIONS sets the loop length.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pdp.engines.wasm import WasmEngine  # noqa: E402
from pdp.policy.analysis import input_needs  # noqa: E402
from pdp.policy.bundle import load_bundle  # noqa: E402

ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "2000"))


def request(method: str, path: str) -> dict:
    return {
        "method": method,
        "path": path,
        "parsed_path": [s for s in path.split("/") if s],
        "query": {},
        "headers": {"x-request-id": "bench"},
        "host": "gateway.example",
        "scheme": "https",
        "client_ip": "203.0.113.7",
    }


def subject(sub: str, roles: list, plan: str, mfa: bool) -> dict:
    return {
        "authenticated": True,
        "sub": sub,
        "roles": roles,
        "plan": plan,
        "mfa": mfa,
        "iss": "https://issuer.example",
        "claims": {"sub": sub, "jti": "j-1", "exp": 1767229200},
    }


INPUTS = {
    "anonymous GET /meta/health (no quota)": {
        "request": request("GET", "/api/v1/meta/health"),
        "subject": {"authenticated": False, "roles": []},
    },
    "user GET /users/{own id} (3 quotas)": {
        "request": request("GET", "/api/v1/users/alice"),
        "subject": subject("alice", ["user"], "pro", False),
    },
    "user+MFA POST /wallets/{id}/transactions": {
        "request": request("POST", "/api/v1/wallets/w-1/transactions"),
        "subject": subject("alice", ["user", "operator"], "free", True),
    },
    "anonymous POST /auth/login (2 quotas)": {
        "request": request("POST", "/api/v1/auth/login"),
        "subject": {"authenticated": False, "roles": []},
    },
    "anonymous GET /users/me (401)": {
        "request": request("GET", "/api/v1/users/me"),
        "subject": {"authenticated": False, "roles": []},
    },
}


def main() -> None:
    bundle = load_bundle(ROOT / "policies")
    engine = WasmEngine()
    started = time.perf_counter()
    compiled = engine.compile(bundle)
    print(f"policies/ {bundle.revision}: compiled in {(time.perf_counter() - started) * 1000:.1f} ms")
    needs = input_needs(bundle.modules)
    print(f"input fields read: {needs.tree}; reads a clock: {needs.reads_clock}")
    print(f"{'input':45s} {'p50 us':>8s} {'p90 us':>8s} {'p99 us':>8s} {'min us':>8s}  decision")
    for name, doc in INPUTS.items():
        trimmed = needs.trim({**doc, "now_ns": time.time_ns()})
        times = []
        for _ in range(ITERATIONS):
            t0 = time.perf_counter()
            decision = engine.evaluate(compiled, trimmed)
            times.append(time.perf_counter() - t0)
        times.sort()
        q = statistics.quantiles(times, n=100)
        print(
            f"{name:45s} {q[49] * 1e6:8.0f} {q[89] * 1e6:8.0f} {q[98] * 1e6:8.0f} {times[0] * 1e6:8.0f}"
            f"  {decision['status']} {decision['reason']}, {len(decision['quotas'])} quotas"
        )
    print(f"({ITERATIONS} evaluations per input, one process, no memoization; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
