"""Run wrk against one loopback URL and read its numbers back through a Lua reporter
(bench/report.lua): exact percentiles, socket errors and answers by status."""

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

_REPORTER = Path(__file__).with_name("report.lua")


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    socket_errors: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    by_status: dict = dataclasses.field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        """2xx/3xx answers per second: a 429 or 503 is not throughput."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def find_wrk() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    url: str,
    seconds: float,
    connections: int,
    threads: int = 2,
    headers: dict | None = None,
    timeout_s: int = 2,
    count_status: bool = False,
    targets: Path | None = None,
) -> WrkResult:
    """Runs wrk for `seconds`; raises RuntimeError with wrk's output if it fails.

    Only loopback URLs are accepted: the benchmark never sends traffic elsewhere.
    With count_status, answers are also counted by status code (by_status).
    With targets (bench/workloads.py's wrk file), requests cycle over its
    paths and tokens instead of `url`'s path and `headers`.
    """
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"refusing to load a non-loopback URL: {url}")
    argv = [
        find_wrk() or "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{int(timeout_s)}s",
        "-s",
        str(_REPORTER),
    ]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    env = {
        **os.environ,
        "WRK_COUNT_STATUS": "1" if count_status else "0",
        "WRK_TARGETS": str(targets) if targets else "",
    }
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line[len("WRK_JSON ") :])
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
                non_2xx=raw["status"],
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
                by_status={int(k): v for k, v in raw.get("by_status", {}).items()},
            )
    raise RuntimeError(f"wrk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
