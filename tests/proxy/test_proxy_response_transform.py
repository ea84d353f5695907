"""Response transformation per route, through the real proxy to a real upstream:
header add/remove/rename, Server and X-Powered-By dropped by default, JSON
field redaction up to a size bound (streamed untouched above it)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import get, start_proxy, write_routes
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, python_argv

JSON_UPSTREAM = str(Path(__file__).parent / "json_upstream.py")

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - name: plain
    match: {{prefix: /plain}}
    cluster: app
    strip_prefix: /plain
    fail_mode: open
  - name: keep
    match: {{prefix: /keep}}
    cluster: app
    strip_prefix: /keep
    fail_mode: open
    response_headers: {{keep: [server]}}
  - name: shaped
    match: {{prefix: /shaped}}
    cluster: app
    strip_prefix: /shaped
    fail_mode: open
    response_headers:
      add: {{x-frame-options: DENY}}
      remove: [x-internal-id]
      rename: {{x-powered-by: x-was-powered-by}}
      keep: [x-powered-by]
  - name: redacted
    match: {{prefix: /redacted}}
    cluster: app
    strip_prefix: /redacted
    fail_mode: open
    response_body: {{redact_json: [password, token, SECRET], max_bytes: 4096}}
  - name: secrets
    match: {{prefix: /secrets}}
    cluster: app
    strip_prefix: /secrets
    fail_mode: open
    response_body: {{redact_secrets: true}}
"""


@pytest.fixture(scope="module")
def proxy():
    port = free_port()
    upstream = Server(python_argv(JSON_UPSTREAM, str(port)), port)
    proxy = start_proxy(routes=ROUTES.format(app=f"http://127.0.0.1:{port}"))
    yield proxy
    proxy.stop()
    upstream.stop()


def test_server_and_x_powered_by_are_dropped_by_default(proxy):
    response = get(proxy.port, "/plain/user")
    assert response.status == 200
    assert response.header("server") is None and response.header("x-powered-by") is None
    assert response.header("x-internal-id") == "node-3"
    assert response.json()["password"] == "hunter2"  # no redaction without response_body


def test_a_route_may_keep_server(proxy):
    response = get(proxy.port, "/keep/user")
    assert response.header("server") == "Apache/2.4.1 (Unix)"
    assert response.header("x-powered-by") is None


def test_add_remove_rename(proxy):
    response = get(proxy.port, "/shaped/user")
    assert response.header("x-frame-options") == "DENY"
    assert response.header("x-internal-id") is None
    assert response.header("x-powered-by") is None
    assert response.header("x-was-powered-by") == "PHP/8.1"


@pytest.mark.parametrize("path", ["/redacted/user", "/redacted/user-chunked"])
def test_named_json_fields_are_redacted_at_any_depth(proxy, path):
    response = get(proxy.port, path)
    assert response.status == 200
    doc = response.json()
    assert doc["password"] == "[redacted]"
    assert doc["profile"]["Token"] == "[redacted]"
    assert [k["secret"] for k in doc["profile"]["keys"]] == ["[redacted]", "[redacted]"]
    assert doc["name"] == "alice" and doc["profile"]["city"] == "Oslo"
    assert int(response.header("content-length")) == len(response.body)
    assert b"hunter2" not in response.body and b"tok-123" not in response.body


def test_redact_secrets_uses_the_shared_secret_name_list(proxy):
    # servicekit/secret_params.py: the list the access log and the PDP's input use too.
    doc = get(proxy.port, "/secrets/user").json()
    assert doc["password"] == "[redacted]" and doc["profile"]["Token"] == "[redacted]"
    assert [k["secret"] for k in doc["profile"]["keys"]] == ["[redacted]", "[redacted]"]
    assert doc["name"] == "alice" and doc["profile"]["city"] == "Oslo"


@pytest.mark.parametrize("path", ["/redacted/big?n=20000", "/redacted/big-chunked?n=20000"])
def test_bodies_above_the_bound_stream_untouched(proxy, path):
    response = get(proxy.port, path)
    assert response.status == 200
    assert len(response.body) > 19000
    assert response.json()["password"] == "hunter2"


def test_bodies_at_the_bound_are_still_redacted(proxy):
    response = get(proxy.port, "/redacted/big?n=4000")
    assert response.json()["password"] == "[redacted]"


def test_non_json_is_not_touched(proxy):
    assert get(proxy.port, "/redacted/text").body == b'{"password": "hunter2"}'


def test_json_that_does_not_parse_is_refused_not_leaked(proxy):
    response = get(proxy.port, "/redacted/broken")
    assert response.status == 502
    assert response.header("content-type") == "application/problem+json"
    assert b"hunter2" not in response.body


def test_redacted_routes_ask_the_upstream_for_an_uncompressed_body(proxy):
    response = get(proxy.port, "/redacted/headers", headers={"Accept-Encoding": "gzip"})
    assert "accept-encoding" not in response.json()["headers"]
    # A gzip answer anyway cannot be read: it passes untouched (documented).
    assert get(proxy.port, "/redacted/gzip").header("content-encoding") == "gzip"


def _check(text):
    path = write_routes(text)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "--check", "--routes", path],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    return done, path


BASE = 'clusters:\n  app: {endpoints: ["http://127.0.0.1:9"]}\nroutes:\n  - {match: {prefix: /}, cluster: app, %s}\n'


@pytest.mark.parametrize(
    "extra,needle",
    [
        ("response_headers: {rename: [x]}", "routes[0].response_headers.rename: expected a mapping"),
        ("response_headers: {drop: [server]}", "routes[0].response_headers.drop: unknown key"),
        ("response_headers: {add: {'bad name': v}}", "routes[0].response_headers.add: expected an HTTP header name"),
        ("response_headers: {keep: server}", "routes[0].response_headers.keep: expected a list"),
        ("response_body: {redact_json: []}", "routes[0].response_body.redact_json: expected a non-empty list"),
        ("response_body: {max_bytes: 10}", "routes[0].response_body.redact_json: expected a non-empty list"),
        ("response_body: {redact_secrets: 'yes'}", "routes[0].response_body.redact_secrets: expected true or false"),
        ("response_body: {redact_json: [a], max_bytes: '1k'}", "routes[0].response_body.max_bytes"),
        ("response_body: {redact: [a]}", "routes[0].response_body.redact: unknown key"),
        ("respones_headers: {}", "routes[0].respones_headers: unknown key"),
    ],
)
def test_a_bad_response_block_stops_startup_with_one_line(extra, needle):
    done, path = _check(BASE % extra)
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and path in lines[0], done.stderr
