"""make bench-tracing: the cost of tracing, off (the default) and on (OTLP export).

The same chain three times (proxy -> PDP -> upstream nginx, loopback, verdict
cache off so every request is decided by the PDP): OTEL_EXPORTER_OTLP_ENDPOINT
unset; set, with every span exported to a real OTLP/HTTP receiver
(tests/tracing/otlp_receiver.py, in this process); and set with
OTEL_TRACES_SAMPLER=parentbased_traceidratio at 1% (OTel's usual way to keep
the cost down). Prints req/s, p50 and p99 for each, and the spans received.
BENCH_SECONDS (10) and BENCH_CONNECTIONS (16) tune it.
"""

import os
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stack, wrk  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402
from tests.tracing.otlp_receiver import OtlpReceiver  # noqa: E402


def main() -> int:
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "16"))
    path = "/api/v1/sessions"
    secret = secrets.token_hex(32)
    receiver = OtlpReceiver()
    running = []
    results = []
    try:
        redis = start_redis()
        running.append(redis)
        token = stack.mint_token(secret, plan="enterprise")
        upstream = stack.start_upstream(Path(tempfile.mkdtemp(prefix="lucid-bench-tracing-")))
        running.append(upstream)
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        for name, extra in (
            ("tracing off", {}),
            ("tracing on, every span exported", otel),
            (
                "tracing on, 1% sampled",
                {**otel, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
            ),
        ):
            pdp = stack.start_pdp({**stack.pdp_env(redis.redis_url, secret, free_port()), **extra})
            proxy = stack.start_proxy(
                upstream.url, pdp.url, {"VERDICT_CACHE_SIZE": "0", "PDP_TIMEOUT_MS": "2000", **extra}
            )
            try:
                before = len(receiver.spans)
                wrk.run("warm-up", proxy.url + path, 2, connections, headers={"Authorization": f"Bearer {token}"})
                result = wrk.run(
                    name, proxy.url + path, seconds, connections, headers={"Authorization": f"Bearer {token}"}
                )
            finally:
                proxy.stop()
                pdp.stop()
            results.append((result, len(receiver.spans) - before))
    finally:
        for server in reversed(running):
            server.stop()
        receiver.stop()
    print(f"proxy -> PDP -> nginx on 127.0.0.1, {connections} connections, {seconds} s, verdict cache off")
    print(wrk.HEADER + f" {'spans recv':>11}")
    for result, spans in results:
        print(result.row() + f" {spans:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
