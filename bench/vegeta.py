"""Open-loop load with vegeta: a fixed offered rate, so latency has no coordinated omission."""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

_CACHE_BIN = Path.home() / ".cache" / "lucid-gateway" / "tools" / "bin"


@dataclasses.dataclass(frozen=True)
class VegetaResult:
    rate: int
    requests: int
    success: float
    p50_ms: float
    p99_ms: float
    throughput: float
    status_codes: dict
    errors: list

    def describe(self) -> str:
        codes = ", ".join(f"{n:,} x {c}" for c, n in sorted(self.status_codes.items()))
        return (
            f"{self.success * 100:6.2f}% success  p50 {self.p50_ms:8.2f} ms  p99 {self.p99_ms:8.2f} ms"
            f"  ({self.requests:,} sent: {codes})"
        )


def find_vegeta() -> str | None:
    found = shutil.which("vegeta")
    if found:
        return found
    return str(_CACHE_BIN / "vegeta") if (_CACHE_BIN / "vegeta").exists() else None


def run_vegeta(targets: Path, rate: int, seconds: float, connections: int, timeout_s: int = 5) -> VegetaResult:
    """`vegeta attack` at `rate` req/s for `seconds` over up to `connections`
    connections (as many workers, so each can hold one request in flight).

    The targets file must name loopback URLs only (bench/workloads.py writes it).
    Success counts 2xx and 3xx answers; the rest (429, 503, timeouts) fail.
    """
    text = targets.read_text()
    if any(line.startswith("GET ") and not line.startswith("GET http://127.0.0.1:") for line in text.splitlines()):
        raise ValueError("refusing to load a non-loopback URL")
    vegeta = find_vegeta() or "vegeta"
    attack = [
        vegeta,
        "attack",
        f"-targets={targets}",
        "-format=http",
        f"-rate={rate}/s",
        f"-duration={seconds:g}s",
        f"-timeout={timeout_s}s",
        f"-connections={connections}",
        f"-max-connections={connections}",
        f"-workers={connections}",
        f"-max-workers={connections}",
        "-keepalive=true",
    ]
    with subprocess.Popen(attack, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as attacker:
        report = subprocess.run(
            [vegeta, "report", "-type=json"],
            stdin=attacker.stdout,
            capture_output=True,
            text=True,
            timeout=seconds + timeout_s + 60,
        )
        attacker.stdout.close()
        attacker.wait(timeout=30)
    if report.returncode != 0 or not report.stdout.strip():
        raise RuntimeError(f"vegeta failed: {report.stderr.strip()}")
    raw = json.loads(report.stdout)
    lat = raw["latencies"]
    return VegetaResult(
        rate=rate,
        requests=raw["requests"],
        success=raw["success"],
        p50_ms=lat["50th"] / 1e6,
        p99_ms=lat["99th"] / 1e6,
        throughput=raw["throughput"],
        status_codes={int(k): v for k, v in raw["status_codes"].items()},
        errors=raw.get("errors") or [],
    )
