"""Processes and TLS: graceful drain, startup errors, TLS minimum, SIGHUP reload, redirect."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509

from tests.proxy.proxy_helpers import (
    get,
    make_cert,
    raw_request,
    read_response,
    start_echo,
    start_proxy,
    tls_client_context,
    wait_until,
    write_routes,
)
from tests.support.processes import ROOT, children

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - {{name: meta, match: {{prefix: /api/v1/meta}}, meta: true, fail_mode: open}}
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""


@pytest.fixture(scope="module")
def upstream():
    server = start_echo("app")
    yield server
    server.stop()


def test_sigterm_drains_in_flight_requests_and_exits_0(upstream):
    proxy = start_proxy(routes=ROUTES.format(app=upstream.url), workers=2, env={"GRACE_PERIOD_S": "10"})
    with ThreadPoolExecutor(24) as pool:
        in_flight = [pool.submit(get, proxy.port, f"/slow?delay_s=1.5&i={i}", None, "GET", None, 15) for i in range(24)]
        time.sleep(0.5)
        proxy.signal(signal.SIGTERM)
        time.sleep(0.3)
        # Draining: no longer accepting, while the 24 requests are still in flight.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        assert not any(future.done() for future in in_flight)
        statuses = [future.result().status for future in in_flight]
    assert statuses == [200] * 24
    assert proxy.proc.wait(15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()


def run_proxy_expecting_failure(env, args=()):
    full_env = {"PATH": "/usr/bin:/bin", "LISTEN_HOST": "127.0.0.1", **env}
    return subprocess.run(
        [sys.executable, "-m", "proxy", "--check", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"HTTP_PORT": "http"}, "HTTP_PORT"),
        ({"SSL_MIN_VERSION": "1.1"}, "SSL_MIN_VERSION"),
        ({"PDP_TIMEOUT_MS": "-5"}, "PDP_TIMEOUT_MS"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,not-a-net"}, "TRUSTED_PROXIES"),
        ({"SSL_ENABLED": "true"}, "SSL_CERT_PATH"),
        ({"SESSION_MANAGEMENT_URL": "ftp://x"}, "SESSION_MANAGEMENT_URL"),
        ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES"),
        ({"MAX_TUNNELS": "0"}, "MAX_TUNNELS"),
        ({"DECISION_HEADER_NAMES": "x-user-id,bad name"}, "DECISION_HEADER_NAMES"),
        ({"DECISION_HEADER_NAMES": "x-user-id,transfer-encoding"}, "DECISION_HEADER_NAMES"),
    ],
)
def test_a_bad_setting_stops_startup_with_one_line_naming_it(env, needle):
    result = run_proxy_expecting_failure(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_a_bad_routes_file_stops_startup_with_one_line():
    path = write_routes("clusters: {}\nroutes:\n  - {match: {prefix: /}, cluster: nowhere}\n")
    result = run_proxy_expecting_failure({}, ("--routes", path))
    assert result.returncode == 2
    assert "unknown cluster 'nowhere'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def peer_serial(port, context):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der).serial_number, tls.version()


@pytest.fixture
def tls_proxy(upstream, tmp_path):
    def _start(**env):
        cert, key = make_cert(str(tmp_path), serial=1001)
        proxy = start_proxy(
            routes=ROUTES.format(app=upstream.url),
            env={"SSL_ENABLED": "true", "SSL_CERT_PATH": cert, "SSL_KEY_PATH": key, **env},
        )
        wait_until(lambda: _port_open(proxy.https_port))
        started.append(proxy)
        return proxy, tmp_path

    started = []
    yield _start
    for proxy in started:
        proxy.stop()


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def https_get(port, target, context):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            return read_response(tls.makefile("rb"))


def test_tls_13_is_served_and_tls_12_refused_by_default(tls_proxy):
    proxy, _ = tls_proxy()
    response = https_get(proxy.https_port, "/x", tls_client_context())
    assert response.status == 200
    assert response.json()["headers"]["x-forwarded-proto"] == "https"
    assert peer_serial(proxy.https_port, tls_client_context())[1] == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        https_get(proxy.https_port, "/x", tls_client_context(max_version=ssl.TLSVersion.TLSv1_2))
    assert get(proxy.port, "/x").status == 200  # plain HTTP stays served beside it


def test_tls_12_is_accepted_when_configured(tls_proxy):
    proxy, _ = tls_proxy(SSL_MIN_VERSION="1.2")
    context = tls_client_context(max_version=ssl.TLSVersion.TLSv1_2)
    assert https_get(proxy.https_port, "/x", context).status == 200
    assert peer_serial(proxy.https_port, context)[1] == "TLSv1.2"


def test_sighup_reloads_the_certificate(tls_proxy):
    proxy, directory = tls_proxy()
    assert peer_serial(proxy.https_port, tls_client_context())[0] == 1001
    make_cert(str(directory), serial=2002)
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: peer_serial(proxy.https_port, tls_client_context())[0] == 2002, timeout=10)
    assert https_get(proxy.https_port, "/x", tls_client_context()).status == 200


def test_http_redirects_to_https_except_meta(tls_proxy):
    proxy, _ = tls_proxy(HTTP_REDIRECT_TO_HTTPS="true", PUBLIC_HOST="gw.example:8443")
    response = get(proxy.port, "/app/x?y=1")
    assert response.status == 308
    assert response.header("location") == "https://gw.example:8443/app/x?y=1"
    assert get(proxy.port, "/api/v1/meta/version").status == 200


def test_the_redirect_goes_to_the_public_host_whatever_the_client_says(tls_proxy):
    proxy, _ = tls_proxy(HTTP_REDIRECT_TO_HTTPS="true", PUBLIC_HOST="gw.example")
    forged = raw_request(proxy.port, b"GET /app/./x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert forged.status == 308
    assert forged.header("location") == "https://gw.example/app/x"


def test_redirect_without_a_public_host_stops_startup(tmp_path):
    cert, key = make_cert(str(tmp_path))
    result = run_proxy_expecting_failure(
        {"SSL_ENABLED": "true", "SSL_CERT_PATH": cert, "SSL_KEY_PATH": key, "HTTP_REDIRECT_TO_HTTPS": "true"}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PUBLIC_HOST" in lines[0], result.stderr


def test_a_tls_handshake_that_never_comes_is_dropped(tls_proxy):
    proxy, _ = tls_proxy(HEADER_READ_TIMEOUT_S="1")
    with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then silence
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 3


def test_a_crashed_worker_is_replaced(upstream):
    import os

    proxy = start_proxy(routes=ROUTES.format(app=upstream.url), workers=2)
    try:

        def workers():
            return children(proxy.proc.pid)

        first = wait_until(lambda: len(workers()) == 2 and workers())
        os.kill(first[0], signal.SIGKILL)
        replaced = wait_until(lambda: len(workers()) == 2 and first[0] not in workers() and workers(), timeout=10)
        assert first[1] in replaced
        wait_until(lambda: all(get(proxy.port, "/x").status == 200 for _ in range(6)), timeout=10)
    finally:
        assert proxy.stop() == 0


def test_connections_queued_when_the_drain_starts_are_answered_not_reset(upstream):
    """Connections the kernel has queued on the worker's listener when SIGTERM
    comes are accepted and answered (one request each, connection: close):
    closing an SO_REUSEPORT listener resets its queue, which lost a request
    in every few graceful restarts. The worker is stopped while they queue."""
    proxy = start_proxy(routes=ROUTES.format(app=upstream.url), workers=1, env={"GRACE_PERIOD_S": "10"})
    (worker,) = children(proxy.proc.pid)
    os.kill(worker, signal.SIGSTOP)
    queued = []
    try:
        for i in range(16):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(f"GET /queued?i={i} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
            queued.append(sock)
        proxy.signal(signal.SIGTERM)  # the master relays it to the stopped worker
        wait_until(lambda: int(signal.SIGTERM) in _pending_signals(worker), timeout=5)
    finally:
        os.kill(worker, signal.SIGCONT)
    answers = []
    for sock in queued:
        with sock, sock.makefile("rb") as f:
            try:
                response = read_response(f)
                answers.append((response.status, response.header("connection")))
            except OSError as exc:  # a reset: the request was lost
                answers.append((type(exc).__name__, None))
    assert answers == [(200, "close")] * 16
    assert proxy.proc.wait(15) == 0


def _pending_signals(pid: int) -> set:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    return set()


def test_idle_keep_alive_connections_are_closed_and_the_drain_ends(upstream):
    """Idle keep-alive connections at SIGTERM: each gets its moment for a request
    on its way, then is shut; a request sent in that moment is answered
    (Connection: close). The drain ends long before GRACE_PERIOD_S."""
    proxy = start_proxy(routes=ROUTES.format(app=upstream.url), workers=1, env={"GRACE_PERIOD_S": "10"})
    idle = []
    for i in range(6):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        f = sock.makefile("rb")
        sock.sendall(f"GET /idle?i={i} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
        assert read_response(f).status == 200
        idle.append((sock, f))
    started = time.monotonic()
    proxy.signal(signal.SIGTERM)
    time.sleep(0.3)
    late, late_file = idle[0]
    late.sendall(b"GET /late HTTP/1.1\r\nHost: app\r\n\r\n")  # inside the idle connections' moment
    response = read_response(late_file)
    assert (response.status, response.header("connection")) == (200, "close")
    for _sock, f in idle[1:]:
        assert f.read() == b""  # shut by the proxy: EOF, no answer owed
    assert proxy.proc.wait(10) == 0
    assert time.monotonic() - started < 5
    for sock, f in idle:
        f.close()
        sock.close()
