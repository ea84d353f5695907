"""Holds N keep-alive connections to one URL and paces a total request rate over them.

Each connection is a greenlet with its own HTTP/1.1 connection, sending one
request every N/RATE seconds (a closed connection is opened again). Every
--interval seconds one JSON line on stdout: requests, 2xx, 4xx, 5xx,
errors and latency percentiles (ms) of that interval. Bounded: --duration.

Usage: python -m bench.soakload --url URL --connections N --rate R --duration S --token T
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402


def percentile(sorted_ms, q):
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))], 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--token", default="")
    args = ap.parse_args(argv)
    if not (0 < args.duration <= 86400) or not (1 <= args.connections <= 10000):
        print("soakload: --duration in (0, 86400], --connections in [1, 10000]", file=sys.stderr)
        return 2
    target = urlsplit(args.url)
    path = target.path or "/"
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    period = args.connections / args.rate
    t0 = time.monotonic()
    end = t0 + args.duration
    current = {"lat": [], "2xx": 0, "4xx": 0, "5xx": 0, "err": 0, "open": 0}

    def connection():
        conn = None
        gevent.sleep(random.random() * period)  # spread the first requests
        while time.monotonic() < end:
            due = time.monotonic() + period
            if conn is None:
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
                current["open"] += 1
            start = time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = None
            current["lat"].append((time.monotonic() - start) * 1000)
            key = "err" if status == 0 else f"{status // 100}xx"
            current[key] = current.get(key, 0) + 1
            gevent.sleep(max(0.0, due - time.monotonic()))
        if conn is not None:
            conn.close()

    workers = [gevent.spawn(connection) for _ in range(args.connections)]
    next_report = t0 + args.interval
    while time.monotonic() < end:
        gevent.sleep(max(0.0, min(next_report, end) - time.monotonic()))
        lat = sorted(current["lat"])
        print(
            json.dumps(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "requests": len(lat),
                    "2xx": current["2xx"],
                    "4xx": current["4xx"],
                    "5xx": current["5xx"],
                    "err": current["err"],
                    "p50": percentile(lat, 0.5),
                    "p90": percentile(lat, 0.9),
                    "p99": percentile(lat, 0.99),
                }
            ),
            flush=True,
        )
        current.update({"lat": [], "2xx": 0, "4xx": 0, "5xx": 0, "err": 0})
        next_report += args.interval
    gevent.joinall(workers, timeout=6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
