"""`make soak`: the whole gateway under 1,000 keep-alive connections for SOAK_S seconds.

The gateway of bench/faults.py (Redis, PDP with quotas spent in Redis on
every request, two upstreams, proxy). bench/soakload.py holds SOAK_CONNECTIONS
(1000) connections and paces SOAK_RATE (200) requests/s over them. Every
SOAK_SAMPLE_S the harness records RSS and open fds of every process (proxy and
PDP masters and workers, Redis, upstreams) and Redis used_memory; the load
reports latency percentiles per bucket (60 s; 10 s when SOAK_S < 600, 5 s under 300).

"Grows without bound" (the verdict): over the second half of the run (the
first half is warm-up: caches, pools, allocator arenas), the least-squares
increase of a series exceeds both its floor (RSS 16 MB, fds 32, Redis memory
8 MB, p99 50 ms) and 10% of its mean (100% for p99), and its last quarter's
mean is above its third quarter's (still rising at the end). Any such series
fails the soak. Plots: bench/out/soak-*.png; numbers: bench/out/soak.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.processes import ROOT

from .faults import Gateway
from .stack import children

FLOORS = {"rss_mb": (16.0, 0.10), "fds": (32.0, 0.10), "redis_mb": (8.0, 0.10), "p99_ms": (50.0, 1.0)}


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def processes(gw: Gateway) -> dict[str, int]:
    """name -> pid, workers included (looked up again each sample: they may be replaced)."""
    named = {"redis": gw.redis.proc.pid, "upstream-1": gw.upstreams[0].proc.pid, "upstream-2": gw.upstreams[1].proc.pid}
    for label, server in (("proxy", gw.proxy), ("pdp", gw.pdp)):
        named[f"{label}-master"] = server.proc.pid
        for i, pid in enumerate(sorted(children(server.proc.pid)), 1):
            named[f"{label}-worker-{i}"] = pid
    return named


def growth(points: list[tuple[float, float]]):
    """(least-squares increase over the second half, mean, rising at the end)."""
    half = points[len(points) // 2 :]
    if len(half) < 4:
        return 0.0, (half[0][1] if half else 0.0), False
    n = len(half)
    mt = sum(t for t, _ in half) / n
    mv = sum(v for _, v in half) / n
    var = sum((t - mt) ** 2 for t, _ in half)
    slope = sum((t - mt) * (v - mv) for t, v in half) / var if var else 0.0
    increase = slope * (half[-1][0] - half[0][0])
    q = n // 2
    rising = sum(v for _, v in half[q:]) / (n - q) > sum(v for _, v in half[:q]) / q
    return increase, mv, rising


def verdicts(series: dict[str, list[tuple[float, float]]]) -> list[dict]:
    out = []
    for name, points in sorted(series.items()):
        kind = name.split(":")[0]
        floor, rel = FLOORS[kind]
        increase, mean, rising = growth(points)
        unbounded = increase > floor and increase > rel * mean and rising
        out.append(
            {
                "series": name,
                "increase_second_half": round(increase, 2),
                "mean_second_half": round(mean, 2),
                "unbounded": unbounded,
            }
        )
    return out


def plot(series, latency, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = [("rss_mb", "RSS (MB)"), ("fds", "open file descriptors"), ("redis_mb", "Redis used_memory (MB)")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (kind, title) in zip(axes.flat, panels):
        for name, points in sorted(series.items()):
            if name.startswith(kind + ":"):
                ax.plot([t / 60 for t, _ in points], [v for _, v in points], label=name.split(":", 1)[1])
        ax.set_title(title)
        ax.set_xlabel("minutes")
        ax.legend(fontsize=7)
    ax = axes.flat[3]
    for q in ("p50", "p90", "p99"):
        ax.plot([b["t"] / 60 for b in latency], [b[q] for b in latency], marker=".", label=q)
    ax.set_title("latency per bucket (ms)")
    ax.set_xlabel("minutes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written


def run_soak(
    duration_s: float,
    connections: int = 1000,
    rate: float = 200.0,
    sample_s: float = 2.0,
    out: Path | None = None,
    log=print,
) -> dict:
    out = out or ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    bucket = 60.0 if duration_s >= 600 else (10.0 if duration_s >= 300 else 5.0)
    workdir = Path(tempfile.mkdtemp(prefix="lucid-soak-"))
    series: dict[str, list[tuple[float, float]]] = {}
    latency: list[dict] = []
    gw = Gateway(workdir, accounts=False)  # the soak is the decision chain; sign-in is not in it
    stop = threading.Event()
    try:
        t0 = time.monotonic()

        def sample():
            client = gw.redis_client()
            while not stop.wait(sample_s):
                t = time.monotonic() - t0
                if t > duration_s:  # the load is closing its connections: not the steady state
                    continue
                for name, pid in processes(gw).items():
                    rss, fds = _rss_mb(pid), _fds(pid)
                    if rss is not None:
                        series.setdefault(f"rss_mb:{name}", []).append((t, rss))
                    if fds is not None:
                        series.setdefault(f"fds:{name}", []).append((t, float(fds)))
                try:
                    used = client.info("memory")["used_memory"] / 1e6
                    series.setdefault("redis_mb:redis", []).append((t, used))
                except Exception:
                    pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.soakload",
                "--url",
                gw.url,
                "--connections",
                str(connections),
                "--rate",
                str(rate),
                "--duration",
                str(duration_s),
                "--interval",
                str(bucket),
                "--token",
                gw.token,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            for line in load.stdout:
                b = json.loads(line)
                latency.append(b)
                log(
                    f"soak: t={b['t']:.0f}s requests={b['requests']} 2xx={b['2xx']} 5xx={b['5xx']} "
                    f"err={b['err']} p50={b['p50']} p99={b['p99']} ms"
                )
            load.wait(timeout=30)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait(5)
        stop.set()
        sampler.join(5)
    finally:
        stop.set()
        gw.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lat_series = {"p99_ms:chain": [(b["t"], b["p99"]) for b in latency if b["p99"] is not None]}
    checks = verdicts({**series, **lat_series})
    report = {
        "duration_s": duration_s,
        "connections": connections,
        "rate": rate,
        "latency": latency,
        "checks": checks,
        "series": {k: v for k, v in series.items()},
    }
    (out / "soak.json").write_text(json.dumps(report))
    report["plots"] = [str(p) for p in plot(series, latency, out)]
    return report


def format_report(report) -> str:
    lines = [
        f"soak: {report['duration_s']:.0f} s, {report['connections']} connections, {report['rate']:.0f} req/s",
        f"{'series':32} {'mean (2nd half)':>16} {'increase (2nd half)':>20}  verdict",
    ]
    for c in report["checks"]:
        lines.append(
            f"{c['series']:32} {c['mean_second_half']:>16} {c['increase_second_half']:>20}  "
            f"{'GROWS' if c['unbounded'] else 'bounded'}"
        )
    totals = {k: sum(b[k] for b in report["latency"]) for k in ("requests", "2xx", "4xx", "5xx", "err")}
    lines.append("requests: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    lines.append("plots: " + ", ".join(report["plots"]))
    return "\n".join(lines)


def main() -> int:
    try:
        duration = float(os.environ.get("SOAK_S", "3600"))
        connections = int(os.environ.get("SOAK_CONNECTIONS", "1000"))
        rate = float(os.environ.get("SOAK_RATE", "200"))
    except ValueError as exc:
        print(f"soak: SOAK_S/SOAK_CONNECTIONS/SOAK_RATE must be numbers: {exc}", file=sys.stderr)
        return 2
    if not 10 <= duration <= 86400:
        print("soak: SOAK_S must be from 10 to 86400", file=sys.stderr)
        return 2
    report = run_soak(duration, connections, rate, log=lambda m: print(m, file=sys.stderr))
    print(format_report(report))
    return 1 if any(c["unbounded"] for c in report["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
