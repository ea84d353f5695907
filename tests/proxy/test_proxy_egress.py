"""SOCKS5 egress per cluster, through a real SOCKS5 server (Debian's microsocks) on loopback.

socks5h hands the host name to the SOCKS server (so .onion names can work
through Tor); auth failures and the SOCKS server being down fail closed with
502/503 problem+json, never a direct connection. Tor itself is not run here:
it cannot reach its network from these machines (docs/proxy.md says what
that leaves untested).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import ECHO, get, start_echo, start_proxy, write_routes
from tests.support.certs import CertAuthority
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, python_argv
from tests.support.tools import require_tool

SECRET = "s3cret-socks-pw"


def start_microsocks(user=None, password=None) -> Server:
    port = free_port()
    argv = [require_tool("microsocks"), "-i", "127.0.0.1", "-p", str(port)]
    if user:
        argv += ["-u", user, "-P", password]
    return Server(argv, port)


@pytest.fixture
def own_socks():
    """own_socks() -> a microsocks for this test alone, stopped after it even if it fails."""
    started = []

    def _start():
        server = start_microsocks()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def upstream():
    server = start_echo("behind-socks")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def socks():
    server = start_microsocks()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def socks_auth():
    server = start_microsocks("lucid", SECRET)
    yield server
    server.stop()


def routes(endpoint, cluster_extra="", route_extra=""):
    return f"""
clusters:
  app:
    endpoints: ["{endpoint}"]
{cluster_extra}
routes:
  - {{name: meta, match: {{prefix: /api/v1/meta}}, meta: true, fail_mode: open}}
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open{route_extra}}}
"""


@pytest.fixture
def proxy_for():
    started = []

    def _start(text, env=None):
        proxy = start_proxy(routes=text, env=env)
        started.append(proxy)
        return proxy

    yield _start
    for proxy in started:
        proxy.stop()


def test_requests_go_through_the_socks_server_by_name(proxy_for, socks, upstream):
    # "localhost" is resolved by the SOCKS server (socks5h), not by the proxy.
    proxy = proxy_for(routes(f"http://localhost:{upstream.port}", f"    egress: socks5h://127.0.0.1:{socks.port}"))
    for _ in range(3):  # keep-alive pooled connections through the tunnel
        response = get(proxy.port, "/through?x=1")
        assert response.status == 200, response.body
        assert response.json()["service"] == "behind-socks"


def test_an_onion_name_is_handed_to_the_socks_server(proxy_for, socks, upstream):
    # microsocks cannot resolve .onion (Tor would): its refusal proves the
    # name went to the SOCKS server instead of the proxy's own resolver.
    proxy = proxy_for(routes("http://expyuzz4wqqyqhjn.onion:80", f"    egress: socks5h://127.0.0.1:{socks.port}"))
    response = get(proxy.port, "/x")
    assert response.status == 502
    assert response.header("content-type") == "application/problem+json"
    assert "SOCKS CONNECT to expyuzz4wqqyqhjn.onion:80 refused" in response.json()["detail"]


def test_socks_username_and_password(proxy_for, socks_auth, upstream):
    good = proxy_for(
        routes(f"http://127.0.0.1:{upstream.port}", f"    egress: socks5h://lucid:{SECRET}@127.0.0.1:{socks_auth.port}")
    )
    assert get(good.port, "/x").status == 200


def test_socks_auth_failure_fails_closed_without_leaking_the_password(proxy_for, socks_auth, upstream):
    wrong = proxy_for(
        routes(
            f"http://127.0.0.1:{upstream.port}",
            f"    egress: socks5h://lucid:wrong-{SECRET}@127.0.0.1:{socks_auth.port}",
        )
    )
    response = get(wrong.port, "/x")
    assert response.status == 502
    assert "SOCKS authentication failed" in response.json()["detail"]
    none = proxy_for(routes(f"http://127.0.0.1:{upstream.port}", f"    egress: socks5h://127.0.0.1:{socks_auth.port}"))
    response = get(none.port, "/x")
    assert response.status == 502 and "behind-socks" not in response.body.decode()
    assert SECRET not in wrong.output() and "lucid:***@" in wrong.output()


def test_socks_server_down_fails_closed_then_the_breaker_opens(proxy_for, upstream, own_socks):
    socks = own_socks()
    proxy = proxy_for(
        routes(
            f"http://127.0.0.1:{upstream.port}",
            f"    egress: socks5h://127.0.0.1:{socks.port}\n"
            "    retry: {attempts: 0}\n"
            "    ejection: {consecutive_errors: 100}\n"
            "    breaker: {failure_threshold: 2, open_s: 30}",
        )
    )
    assert get(proxy.port, "/x").status == 200
    socks.stop()
    first, second, third = (get(proxy.port, f"/x?i={i}") for i in range(3))
    assert first.status == second.status == 502, (first.body, second.body)
    assert "SOCKS server 127.0.0.1" in first.json()["detail"] and "unreachable" in first.json()["detail"]
    assert third.status == 503 and third.json()["type"].endswith("/circuit-open")
    for response in (first, second, third):
        assert "behind-socks" not in response.body.decode()  # never went direct


def test_health_checks_go_through_the_socks_server(proxy_for, upstream, own_socks):
    socks = own_socks()
    proxy = proxy_for(
        routes(
            f"http://127.0.0.1:{upstream.port}",
            f"    egress: socks5h://127.0.0.1:{socks.port}\n"
            "    health_check: {path: /health, interval_s: 0.1, timeout_ms: 500, unhealthy_threshold: 2}",
        )
    )

    def healthy():
        doc = json.loads(get(proxy.port, "/api/v1/meta/health/details").body)
        return doc["checks"]["clusters"]["app"]["endpoints"][0]["healthy"]

    time.sleep(0.5)
    assert healthy() is True
    socks.stop()
    deadline = time.monotonic() + 10
    while healthy() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert healthy() is False
    response = get(proxy.port, "/x")
    assert response.status == 503 and response.json()["type"].endswith("/no-upstream")


def test_https_upstream_through_socks(proxy_for, socks, tmp_path):
    ca = CertAuthority(tmp_path / "ca", "socks test CA")
    cert, key = ca.issue("localhost", dns=("localhost",))
    port = free_port()
    tls_upstream = Server(
        python_argv(ECHO, str(port), "tls-behind-socks"), port, env={"ECHO_TLS_CERT": cert, "ECHO_TLS_KEY": key}
    )
    try:
        proxy = proxy_for(
            routes(
                f"https://localhost:{port}",
                f"    egress: socks5h://127.0.0.1:{socks.port}\n    tls: {{ca_file: {ca.cert_path}}}",
            )
        )
        response = get(proxy.port, "/x")
        assert response.status == 200, response.body
        assert response.json()["service"] == "tls-behind-socks"
    finally:
        tls_upstream.stop()


def test_tor_socks_url_serves_egress_tor_and_onion_endpoints(proxy_for, socks, upstream):
    env = {"TOR_SOCKS_URL": f"socks5h://127.0.0.1:{socks.port}"}
    proxy = proxy_for(routes(f"http://localhost:{upstream.port}", "    egress: tor"), env=env)
    assert get(proxy.port, "/x").status == 200
    onion = proxy_for(routes("http://expyuzz4wqqyqhjn.onion"), env=env)
    assert "SOCKS CONNECT to expyuzz4wqqyqhjn.onion:80" in get(onion.port, "/x").json()["detail"]


def _check(text, env=None):
    path = write_routes(text)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "--check", "--routes", path],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    return done, path


@pytest.mark.parametrize(
    "endpoint,extra,needle",
    [
        (
            "http://a:1",
            "    egress: http://127.0.0.1:9050",
            "clusters.app.egress: expected a socks5h:// or socks5:// URL",
        ),
        ("http://a:1", "    egress: [1]", "clusters.app.egress: expected a socks5h:// or socks5:// URL"),
        ("http://a:1", "    egress: socks5h://127.0.0.1", "clusters.app.egress: expected socks5h://host:port"),
        ("http://a:1", "    egress: tor", "clusters.app.egress: 'tor' needs TOR_SOCKS_URL"),
        ("http://x.onion:1", "", "clusters.app.endpoints: a .onion endpoint needs egress"),
        ("http://x.onion:1", "    egress: socks5://127.0.0.1:9050", "need socks5h://"),
    ],
)
def test_a_bad_egress_stops_startup_with_one_line(endpoint, extra, needle):
    done, path = _check(routes(endpoint, extra))
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and path in lines[0], done.stderr


def test_a_bad_tor_socks_url_is_one_line_without_its_password():
    done, _ = _check(routes("http://a:1"), env={"TOR_SOCKS_URL": f"http://u:{SECRET}@127.0.0.1:9050"})
    assert done.returncode == 2
    assert "TOR_SOCKS_URL" in done.stderr and SECRET not in done.stderr


def test_socks5_without_h_resolves_locally(proxy_for, socks, upstream):
    proxy = proxy_for(routes(f"http://localhost:{upstream.port}", f"    egress: socks5://127.0.0.1:{socks.port}"))
    assert get(proxy.port, "/x").status == 200


def test_websocket_tunnel_goes_through_the_socks_server(proxy_for, own_socks):
    import base64
    import os
    import socket

    from tests.proxy.proxy_helpers import read_response

    ws_port = free_port()
    ws = Server(python_argv(str(Path(__file__).parent / "ws_server.py"), str(ws_port)), ws_port)
    socks = own_socks()
    try:
        proxy = proxy_for(
            routes(
                f"http://localhost:{ws_port}",
                f"    egress: socks5h://127.0.0.1:{socks.port}",
                route_extra=", websocket: true",
            )
        )
        key = base64.b64encode(os.urandom(16)).decode()
        upgrade = (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(upgrade)
            sock_file = sock.makefile("rb")
            assert read_response(sock_file).status == 101
            sock.sendall(b"\x81\x05hello")
            assert sock_file.read(7) == b"\x81\x05hello"
        socks.stop()  # the SOCKS server gone: the next upgrade fails closed
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(upgrade)
            assert read_response(sock.makefile("rb")).status == 502
    finally:
        ws.stop()
