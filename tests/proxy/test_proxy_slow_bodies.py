"""Slow request bodies cannot hold a cluster's upstream connections: real slow clients, real proxy.

The routes fail open and the PDP is down: what is under test is the proxy's body handling.
"""

import socket
import threading
import time

import pytest

from tests.proxy.proxy_helpers import get, read_response, start_echo, start_proxy

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"], max_connections: 2}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""


@pytest.fixture(scope="module")
def upstream():
    server = start_echo("app")
    yield server
    server.stop()


def slow_post(port, length, first, pause_s, results, index, trickle=b""):
    """Sends the head and `first` bytes, then `trickle` one byte per pause_s; records the answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % length + first
            )
            for byte in trickle:
                time.sleep(pause_s)
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break  # the proxy gave up on us: its answer is waiting
            with sock.makefile("rb") as sock_file:
                results[index] = (read_response(sock_file), time.monotonic())
    except OSError as exc:
        results[index] = (exc, time.monotonic())


def test_slow_bodies_time_out_with_408_and_never_starve_the_pool(upstream):
    proxy = start_proxy(routes=ROUTES.format(app=upstream.url), env={"BODY_READ_TIMEOUT_S": "2"})
    try:
        results = {}
        started = time.monotonic()
        # Four clients (twice the pool) each promise 40 bytes and send one per 0.25 s: 10 s if unchecked.
        slow = [
            threading.Thread(target=slow_post, args=(proxy.port, 40, b"", 0.25, results, i, b"y" * 40))
            for i in range(4)
        ]
        for thread in slow:
            thread.start()
        time.sleep(0.5)
        # While they dawdle, other clients are served at once: no upstream connection is held for them.
        for _ in range(3):
            fast = get(proxy.port, "/fast", body=b"hello", method="POST", timeout=3)
            assert fast.status == 200 and fast.json()["body_bytes"] == 5
        for thread in slow:
            thread.join(15)
        for index in range(4):
            response, finished = results[index]
            assert not isinstance(response, Exception), response
            assert response.status == 408
            assert response.header("content-type") == "application/problem+json"
            assert finished - started < 6  # the whole-body deadline, not the 60 s per-read timeout
    finally:
        proxy.stop()


def test_bodies_too_large_to_buffer_stream_within_a_bound_per_cluster(upstream):
    proxy = start_proxy(
        routes=ROUTES.format(app=upstream.url),
        env={"BODY_BUFFER_BYTES": "1024", "STREAMED_BODIES_PER_CLUSTER": "1", "BODY_READ_TIMEOUT_S": "10"},
    )
    try:
        results = {}
        # The first streams: 2 KiB at once (past the buffer), the rest slowly.
        first = threading.Thread(target=slow_post, args=(proxy.port, 2048 + 8, b"z" * 2048, 0.25, results, 0, b"z" * 8))
        first.start()
        time.sleep(0.8)
        second = get(proxy.port, "/upload", body=b"q" * 4096, method="POST", timeout=5)
        assert second.status == 503
        assert second.header("content-type") == "application/problem+json"
        assert second.header("retry-after") == "1"
        # A body that fits the buffer is not streamed and not bounded.
        assert get(proxy.port, "/upload", body=b"s" * 512, method="POST", timeout=5).status == 200
        first.join(15)
        response, _ = results[0]
        assert response.status == 200 and response.json()["body_bytes"] == 2056
        # The slot is free again.
        assert get(proxy.port, "/upload", body=b"q" * 4096, method="POST", timeout=5).status == 200
    finally:
        proxy.stop()
