"""A bounded open-loop HTTP load generator (gevent), run as its own process.

Requests leave on a fixed schedule whatever the answers (no coordinated
omission): one greenlet per request, at most --max-inflight at once (a
request that would exceed it is recorded as status -1, "not sent"). Every
request ends within --timeout. One line per request on --out:
`stream t_sent_s status latency_ms` (status 0: connection error or timeout),
after a first line `t0 EPOCH` (wall clock of t_sent_s = 0).

Usage: python -m bench.openloop --url URL --duration S --out FILE
       --stream NAME:RATE[:TOKEN] [--stream ...] [--stream-url NAME=URL ...] [--ca FILE]

--stream-url sends one stream to its own URL (another path, or https://; `{n}`
in it becomes the request's number in its stream, so each request differs);
--ca verifies https:// URLs against that CA file.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import urllib3  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stream", action="append", required=True)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--max-inflight", type=int, default=400)
    ap.add_argument("--stream-url", action="append", default=[])
    ap.add_argument("--ca", default=None)
    args = ap.parse_args(argv)
    urls = dict(spec.split("=", 1) for spec in args.stream_url)
    if not (0 < args.duration <= 7200):
        print("openloop: --duration must be in (0, 7200]", file=sys.stderr)
        return 2
    tls = {"ca_certs": args.ca, "assert_hostname": False} if args.ca else {}
    http = urllib3.PoolManager(
        maxsize=args.max_inflight, block=False, retries=False, timeout=urllib3.Timeout(total=args.timeout), **tls
    )
    pool = gevent.pool.Pool(args.max_inflight)
    lines = []
    t0 = time.monotonic()
    wall0 = time.time()
    print(f"t0 {wall0:.4f}", flush=True)  # the caller times its fault from here

    def one(name, token, sent, n):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        start = time.monotonic()
        try:
            resp = http.request(
                "GET", urls.get(name, args.url).replace("{n}", str(n)), headers=headers, preload_content=True
            )
            status = resp.status
        except Exception:
            status = 0
        lines.append(f"{name} {sent:.4f} {status} {(time.monotonic() - start) * 1000:.2f}")

    def stream(name, rate, token):
        interval = 1.0 / rate
        n = 0
        while True:
            due = t0 + n * interval
            if due - t0 >= args.duration:
                return
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            sent = time.monotonic() - t0
            if pool.full():
                lines.append(f"{name} {sent:.4f} -1 0")
            else:
                pool.spawn(one, name, token, sent, n)
            n += 1

    streams = []
    for spec in args.stream:
        name, rate, *rest = spec.split(":", 2)
        streams.append(gevent.spawn(stream, name, float(rate), rest[0] if rest else ""))
    gevent.joinall(streams)
    pool.join(timeout=args.timeout + 1)
    with open(args.out, "w") as fh:
        fh.write(f"t0 {wall0:.4f}\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
