"""An upstream at an IPv6 literal (http://[::1]:PORT) gets a well-formed Host: `[::1]:PORT`.

nginx, the upstream here, answers 400 to `Host: ::1:PORT`; a health check
sending that marks every such endpoint unhealthy, and the route answers 503.
"""

import socket
import time

import pytest

from tests.proxy.proxy_helpers import raw_request, start_proxy
from tests.support.nginx import start_nginx
from tests.support.ports import free_port

_CONF = """  server {{
    listen 127.0.0.1:{port};
    listen [::1]:{port};
    location /health {{ return 200 "ok"; }}
    location / {{ default_type text/plain; return 200 "host=$http_host"; }}
  }}"""
ROUTES = """
clusters:
  v6:
    endpoints: ["http://[::1]:{port}"]
    health_check: {{path: /health, interval_s: 0.1, timeout_ms: 500, unhealthy_threshold: 1}}
routes:
  - {{name: v6, match: {{prefix: /}}, cluster: v6, fail_mode: open}}
"""


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack():
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    nginx = start_nginx(_CONF.format(port=port), port, "lucid-nginx-v6-")
    proxy = start_proxy(routes=ROUTES.format(port=port))
    yield proxy, port
    proxy.stop()
    nginx.stop()


def test_health_checks_keep_an_ipv6_endpoint_in(stack):
    proxy, _ = stack
    time.sleep(1.0)  # ten health checks: one failure would have taken the endpoint out
    response = raw_request(proxy.port, b"GET /x HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
    assert response.status == 200, response.body
    assert response.body == b"host=gw.example"


def test_an_http10_request_without_host_reaches_it_with_a_bracketed_host(stack):
    proxy, port = stack
    response = raw_request(proxy.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert response.status == 200, response.body
    assert response.body == f"host=[::1]:{port}".encode()


def test_the_pdp_client_names_an_ipv6_pdp_in_brackets_too():
    from proxy.pdp import PdpClient
    from proxy.upstream import authority

    assert authority("::1", 8082) == "[::1]:8082" and authority("pdp.internal", 80) == "pdp.internal:80"
    assert PdpClient("http://[::1]:8082", 1.0, 1)._host == "[::1]:8082"
