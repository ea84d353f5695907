"""Limits: 413, 431, slowloris, the connection cap, and a 1 GiB body with flat memory."""

import socket
import time
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import get, raw_request, read_response, start_echo, start_proxy
from tests.support.ports import free_port
from tests.support.processes import Server, children, python_argv

JSON_UPSTREAM = str(Path(__file__).parent / "json_upstream.py")

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""
GIB = 1 << 30


@pytest.fixture(scope="module")
def upstream():
    server = start_echo("app")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limited(upstream):
    proxy = start_proxy(
        routes=ROUTES.format(app=upstream.url),
        env={
            "MAX_HEADER_BYTES": "4096",
            "MAX_BODY_BYTES": "1000",
            "HEADER_READ_TIMEOUT_S": "1",
            "MAX_CONNECTIONS": "4",
        },
    )
    yield proxy
    proxy.stop()


def test_body_over_the_limit_is_413_before_upstream(limited):
    response = get(limited.port, "/x", method="POST", body=b"a" * 1001)
    assert response.status == 413
    assert response.header("content-type") == "application/problem+json"
    assert get(limited.port, "/x", method="POST", body=b"a" * 1000).json()["body_bytes"] == 1000


def test_chunked_body_over_the_limit_is_413(limited):
    chunk = b"a" * 600
    data = (
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
        + b"0\r\n\r\n"
    )
    response = raw_request(limited.port, data)
    assert response.status == 413
    assert response.header("connection") == "close"


def test_header_bytes_over_the_limit_is_431(limited):
    response = get(limited.port, "/x", headers={"X-Big": "b" * 5000})
    assert response.status == 431
    assert response.header("content-type") == "application/problem+json"
    assert get(limited.port, "/x", headers={"X-Big": "b" * 3000}).status == 200


def test_slow_header_sender_is_cut_off(limited):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n")
        response = None
        try:
            for _ in range(20):  # one header byte every 0.2 s, never finishing
                sock.sendall(b"X")
                time.sleep(0.2)
        except OSError:
            pass
        response = read_response(sock.makefile("rb"))
    assert response.status == 408
    assert time.monotonic() - started < 3.5


def test_connection_cap_refuses_the_extra_connection(limited):
    held = [socket.create_connection(("127.0.0.1", limited.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        refused = get(limited.port, "/x")
        assert refused.status == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert get(limited.port, "/x").status == 200


def worker_rss_kb(master_pid):
    """Current and peak RSS (kB) of the proxy's worker process."""
    worker = children(master_pid)[0]
    fields = {}
    with open(f"/proc/{worker}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def test_one_gib_streams_both_ways_with_flat_memory(upstream):
    proxy = start_proxy(routes=ROUTES.format(app=upstream.url), env={"MAX_BODY_BYTES": str(2 * GIB)})
    try:
        assert get(proxy.port, "/warm").status == 200
        rss_before, _ = worker_rss_kb(proxy.proc.pid)
        # Upload: generated on the fly, 1 MiB at a time.
        piece = b"z" * (1 << 20)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as sock:
            sock.sendall(
                f"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n".encode()
            )
            for _ in range(GIB // len(piece)):
                sock.sendall(piece)
            uploaded = read_response(sock.makefile("rb")).json()
        assert uploaded["body_bytes"] == GIB
        # Download: counted as it arrives, never kept.
        received = 0
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as sock:
            sock.sendall(f"GET /download?stream_bytes={GIB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            sock_file = sock.makefile("rb")
            assert sock_file.readline().split()[1] == b"200"
            while sock_file.readline() not in (b"\r\n", b""):
                pass
            while True:
                size = int(sock_file.readline().split(b";")[0], 16)
                if size == 0:
                    break
                remaining = size
                while remaining:
                    remaining -= len(sock_file.read(min(remaining, 1 << 20)))
                received += size
                sock_file.readline()
        assert received == GIB
        rss_after, rss_peak = worker_rss_kb(proxy.proc.pid)
        print(f"proxy worker RSS: before {rss_before} kB, after {rss_after} kB, peak {rss_peak} kB")
        assert rss_peak - rss_before < 32 * 1024, (rss_before, rss_peak)
    finally:
        proxy.stop()


def test_an_upgrade_the_upstream_refuses_streams_its_answer_with_flat_memory():
    # On a route that takes WebSocket upgrades any client may add Upgrade
    # headers to any GET. When the upstream answered something
    # other than 101 (a plain download), the proxy read that whole body into
    # memory before sending any of it: 96 MiB here, a worker's memory for a few.
    size = 96 << 20
    port = free_port()
    json_upstream = Server(python_argv(JSON_UPSTREAM, str(port)), port)
    websocket_routes = ROUTES.replace("fail_mode: open}}", "fail_mode: open, websocket: true}}")
    proxy = start_proxy(routes=websocket_routes.format(app=json_upstream.url))
    try:
        assert get(proxy.port, "/user").status == 200
        rss_before, _ = worker_rss_kb(proxy.proc.pid)
        received = 0
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as sock:
            sock.sendall(
                f"GET /big?n={size} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            sock_file = sock.makefile("rb")
            assert sock_file.readline().split()[1] == b"200"
            while sock_file.readline() not in (b"\r\n", b""):
                pass
            while True:
                piece = sock_file.read1(1 << 20)
                if not piece:
                    break
                received += len(piece)
        assert received > size - 100  # the document is about n bytes
        _, rss_peak = worker_rss_kb(proxy.proc.pid)
        assert rss_peak - rss_before < 32 * 1024, (rss_before, rss_peak)
    finally:
        proxy.stop()
        json_upstream.stop()


def test_a_large_refused_upload_still_gets_its_413(limited):
    """The proxy stops reading an oversized body; closing with unread data would
    reset the connection and lose the 413, so it drains for a moment first."""
    import threading

    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        size = 8 << 20
        sock.sendall(f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())

        def upload():
            try:
                sock.sendall(b"u" * size)
            except OSError:
                pass

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        response = read_response(sock.makefile("rb"))
        sender.join(10)
    assert response.status == 413
