"""Enforcement that cannot be fooled (issue 7), through the real proxy, PDP and upstream:
target-changing client headers, the verdict cache key, health details."""

import re
import socket

import pytest

from tests.proxy.proxy_helpers import (
    get,
    make_cert,
    read_response,
    start_proxy,
    tls_client_context,
    wait_until,
    write_routes,
)
from tests.proxy.test_proxy_lifecycle import _port_open, run_proxy_expecting_failure

TARGET_CHANGING = {
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-Forwarded-Prefix": "/admin",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Server": "evil.example",
    "X-Forwarded-Uri": "/admin",
    "X-Forwarded-Method": "DELETE",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Scheme": "https",
    "X-Envoy-Original-Path": "/admin",
    "X-Envoy-Internal": "true",
}


def bearer(mint, sub="alice", roles=("user",)):
    return {"Authorization": "Bearer " + mint(sub, list(roles))}


def request_from(source_ip, port, target, headers, host="gw.example"):
    """One GET from a chosen loopback source address (127.0.0.0/8 is all local)."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source_ip, 0)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        with sock.makefile("rb") as sock_file:
            return read_response(sock_file)


def cache_hits(port, mint):
    text = get(port, "/api/v1/meta/metrics", headers=bearer(mint, "root", ["admin"])).body.decode()
    match = re.search(r"^lucid_proxy_verdict_cache_hits_total ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# -- headers that change the method or target at the backend ----------------------------


def test_target_changing_client_headers_never_reach_the_backend(stack, mint):
    sent = {**TARGET_CHANGING, "X_User_Id": "admin", "X_Custom": "1", "Accept": "text/plain", **bearer(mint)}
    seen = get(stack.proxy.port, "/app/x", headers=sent).json()
    assert seen["method"] == "GET" and seen["path"] == "/app/x"
    for name in TARGET_CHANGING:
        assert name.lower() not in seen["headers"], name
    # The echo upstream (gevent pywsgi) reads X_Custom as x-custom: none may arrive.
    assert "x-custom" not in seen["headers"]
    assert seen["headers"]["x-user-id"] == "alice"
    assert seen["headers"]["accept"] == "text/plain"
    # The proxy's own forwarding headers are still there.
    assert seen["headers"]["x-forwarded-proto"] == "http"


def test_a_header_the_connection_header_drops_is_not_judged_either(stack):
    # RFC 9110 7.6.1: a header named in Connection is not forwarded. The PDP used
    # to be asked with it all the same: /scoped was allowed for `X-Scope: own`,
    # and the upstream got the request without X-Scope (for a backend that
    # reads no scope as "all", an allow for a request it never received).
    allowed = get(stack.proxy.port, "/scoped/reports", headers={"X-Scope": "own"})
    assert allowed.status == 200, allowed.body
    assert allowed.json()["headers"]["x-scope"] == "own"
    for connection in ("x-scope", "keep-alive, X-Scope"):
        response = get(stack.proxy.port, "/scoped/reports", headers={"X-Scope": "own", "Connection": connection})
        assert response.status == 401, (connection, response.body)  # judged without X-Scope: anonymous
        assert response.header("content-type") == "application/problem+json"


def test_a_route_may_allow_one_target_changing_header_by_name(stack, mint):
    routes = f"""
clusters:
  app: {{endpoints: ["{stack.upstreams[0].url}"]}}
routes:
  - name: behind-prefix
    match: {{prefix: /app}}
    cluster: app
    client_headers: {{allow: [X-Forwarded-Prefix]}}
  - {{name: rest, match: {{prefix: /}}, cluster: app}}
"""
    proxy = start_proxy(routes=routes, env={"PDP_URL": stack.pdp.url, "PDP_TIMEOUT_MS": "3000"})
    try:
        sent = {"X-Forwarded-Prefix": "/shop", "X-HTTP-Method-Override": "DELETE", **bearer(mint)}
        seen = get(proxy.port, "/app/x", headers=sent).json()["headers"]
        assert seen["x-forwarded-prefix"] == "/shop"
        assert "x-http-method-override" not in seen
        seen = get(proxy.port, "/cached/x", headers=sent).json()["headers"]
        assert "x-forwarded-prefix" not in seen
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    "block,path",
    [
        ("{allow: [x-forwarded-prefix], pass: [x-envoy-internal]}", "routes[0].client_headers.pass"),
        ("{allow: x-forwarded-prefix}", "routes[0].client_headers.allow"),
        ("{allow: [42]}", "routes[0].client_headers.allow[0]"),
        ("{allow: [x-user-id]}", "routes[0].client_headers.allow[0]"),
        ("[x-forwarded-prefix]", "routes[0].client_headers"),
    ],
)
def test_a_bad_client_headers_block_stops_startup_naming_file_and_key(block, path):
    routes = write_routes(
        'clusters:\n  app: {endpoints: ["http://127.0.0.1:9"]}\nroutes:\n'
        f"  - {{match: {{prefix: /}}, cluster: app, client_headers: {block}}}\n"
    )
    result = run_proxy_expecting_failure({}, ("--routes", routes))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert routes in lines[0] and path in lines[0], lines[0]


# -- the verdict cache key ---------------------------------------------------------------


def test_a_cached_allow_that_read_the_client_ip_is_never_served_to_another_ip(stack, mint):
    token = bearer(mint, "ivy")
    port = stack.proxy.port
    before = cache_hits(port, mint)
    assert request_from("127.0.0.1", port, "/perip/x", token).status == 200
    assert request_from("127.0.0.1", port, "/perip/x", token).status == 200
    assert cache_hits(port, mint) > before  # the allow really is cached for 127.0.0.1
    # Same token, same Host, same path, another client IP: the PDP must be asked.
    other = request_from("127.0.0.2", port, "/perip/x", token)
    assert other.status == 403, other.body


def test_a_cached_allow_that_read_the_scheme_is_never_served_over_another(stack, mint, tmp_path):
    cert, key = make_cert(str(tmp_path))
    routes = f"""
clusters:
  app: {{endpoints: ["{stack.upstreams[0].url}"]}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app}}
"""
    proxy = start_proxy(
        routes=routes,
        env={
            "PDP_URL": stack.pdp.url,
            "PDP_TIMEOUT_MS": "3000",
            "SSL_ENABLED": "true",
            "SSL_CERT_PATH": cert,
            "SSL_KEY_PATH": key,
        },
    )
    try:
        wait_until(lambda: _port_open(proxy.https_port))
        token = bearer(mint, "tess")
        data = (
            "GET /tlsonly/x HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n"
            f"Authorization: {token['Authorization']}\r\n\r\n"
        ).encode()
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10) as raw:
                with tls_client_context().wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(data)
                    with tls.makefile("rb") as sock_file:
                        assert read_response(sock_file).status == 200
        # The same question over plain HTTP (same Host, token and path) is judged anew.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as plain:
            plain.sendall(data)
            with plain.makefile("rb") as sock_file:
                assert read_response(sock_file).status == 403
    finally:
        proxy.stop()


def test_cacheable_verdicts_are_still_served_from_the_cache(stack, mint):
    token = bearer(mint, "cora")
    before = cache_hits(stack.proxy.port, mint)
    for _ in range(4):
        assert get(stack.proxy.port, "/cached/y", headers=token).status == 200
    assert cache_hits(stack.proxy.port, mint) - before >= 3
