"""Routing, rewriting, header rules, CORS and the HTTP/1.1 parser, through the real proxy.

These routes fail open and the PDP is down, so every request reaches the real
upstreams: what is under test here is the proxy's own work, not the policy.
"""

from pathlib import Path

import pytest

from tests.proxy.proxy_helpers import get, raw_request, start_echo, start_proxy
from tests.proxy.test_proxy_normalize import load_corpus

ROUTES = """
clusters:
  a: {{endpoints: ["{a}"]}}
  b: {{endpoints: ["{b}"]}}
routes:
  - {{name: exact, match: {{exact: /exact/only}}, cluster: a, fail_mode: open}}
  - {{name: glob, match: {{glob: "/files/*/raw"}}, cluster: a, fail_mode: open}}
  - {{name: strip, match: {{prefix: /svc}}, cluster: a, strip_prefix: /svc, fail_mode: open}}
  - {{name: rewrite, match: {{prefix: /old}}, cluster: a, rewrite: {{prefix: /new/v2}}, fail_mode: open}}
  - {{name: strip-glob, match: {{glob: "/pub**"}}, cluster: a, strip_prefix: /pub, fail_mode: open}}
  - name: headers
    match: {{prefix: /hdr}}
    cluster: a
    fail_mode: open
    request_headers: {{add: {{x-added: "yes"}}, remove: [x-secret]}}
    response_headers: {{add: {{x-resp: "1"}}, remove: [x-upstream]}}
  - name: cors
    match: {{prefix: /cors}}
    cluster: a
    fail_mode: open
    cors: {{allow_origins: ["https://app.example"], allow_credentials: true}}
  - {{name: readonly, match: {{prefix: /readonly, methods: [GET, HEAD]}}, cluster: a, fail_mode: open}}
  - {{name: traced, match: {{prefix: /traced, methods: [GET, TRACE]}}, cluster: a, fail_mode: open}}
  - {{name: closed, match: {{prefix: /closed}}, cluster: a}}
  - {{name: rest, match: {{prefix: /, methods: [GET]}}, cluster: b, fail_mode: open}}
"""


@pytest.fixture(scope="module")
def stack():
    a, b = start_echo("a"), start_echo("b")
    proxy = start_proxy(routes=ROUTES.format(a=a.url, b=b.url), env={"HEADER_READ_TIMEOUT_S": "2"})
    yield proxy
    for server in (proxy, a, b):
        server.stop()


def test_exact_route_matches_only_the_exact_path(stack):
    assert get(stack.port, "/exact/only").json()["service"] == "a"
    assert get(stack.port, "/exact/only/more").json()["service"] == "b"


def test_glob_matches_one_segment_per_star(stack):
    assert get(stack.port, "/files/abc/raw").json()["service"] == "a"
    assert get(stack.port, "/files/a/b/raw").json()["service"] == "b"


def test_prefix_matches_whole_segments_only(stack):
    assert get(stack.port, "/svcx/thing").json()["service"] == "b"


def test_strip_prefix_and_rewrite(stack):
    assert get(stack.port, "/svc/items/1?q=2").json()["path"] == "/items/1?q=2"
    assert get(stack.port, "/svc").json()["path"] == "/"
    assert get(stack.port, "/old/items").json()["path"] == "/new/v2/items"


def test_strip_prefix_cuts_whole_segments_only(stack):
    # `/pub**` also matches /pubadmin/x; cutting the characters "/pub" sent the
    # upstream /admin/x, a path the PDP never judged (it judged /pubadmin/x).
    assert get(stack.port, "/pub/items").json()["path"] == "/items"
    assert get(stack.port, "/pub").json()["path"] == "/"
    assert get(stack.port, "/pubadmin/x").json()["path"] == "/pubadmin/x"
    assert get(stack.port, "/pub_/x?q=1").json()["path"] == "/pub_/x?q=1"


def test_method_not_allowed_and_no_route(stack):
    response = get(stack.port, "/readonly/x", method="POST", body=b"{}")
    assert response.status == 405
    assert response.header("content-type") == "application/problem+json"
    assert response.json()["status"] == 405
    assert get(stack.port, "/readonly/x", method="HEAD").status == 200


def test_trace_is_refused_unless_the_route_names_it(stack):
    # TRACE echoes the request back to the client, headers the proxy added included
    # (identity, cookies): a route without `methods` used to forward it.
    for target in ("/exact/only", "/svc/x", "/files/abc/raw"):
        response = get(stack.port, target, method="TRACE")
        assert response.status == 405, (target, response.body)
        assert response.header("content-type") == "application/problem+json"
        assert "TRACE" in response.json()["detail"]
    assert get(stack.port, "/nowhere", method="TRACE").status == 405  # `rest` lists GET only
    seen = get(stack.port, "/traced/x", method="TRACE")
    assert seen.status == 200, seen.body
    assert seen.json()["method"] == "TRACE"


@pytest.mark.parametrize("target", ["/exact/only", "/svc/x", "127.0.0.1:443", "[::1]:443", "*"])
def test_connect_is_never_forwarded(stack, target):
    # A route without `methods` forwarded CONNECT /exact/only; an authority-form
    # target was a 400 about the path. Either way now: 501, and the connection closes.
    response = raw_request(stack.port, f"CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert response.status == 501, response.body
    assert response.header("content-type") == "application/problem+json"
    assert response.header("connection") == "close"
    assert "CONNECT" in response.json()["detail"]


def test_route_header_rules(stack):
    response = get(stack.port, "/hdr/x", headers={"X-Secret": "s3cret", "X-Other": "kept"})
    assert response.status == 200, response.body
    seen = response.json()["headers"]
    assert seen["x-added"] == "yes"
    assert "x-secret" not in seen
    assert seen["x-other"] == "kept"
    assert response.header("x-resp") == "1"
    assert response.header("x-upstream") is None


def test_cors_preflight_and_actual_request(stack):
    preflight = get(
        stack.port,
        "/cors/x",
        method="OPTIONS",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status == 204
    assert preflight.header("access-control-allow-origin") == "https://app.example"
    assert "PUT" in preflight.header("access-control-allow-methods")
    assert preflight.header("access-control-allow-credentials") == "true"
    actual = get(stack.port, "/cors/x", headers={"Origin": "https://app.example"})
    assert actual.header("access-control-allow-origin") == "https://app.example"
    stranger = get(stack.port, "/cors/x", headers={"Origin": "https://evil.example"})
    assert stranger.header("access-control-allow-origin") is None


def test_cors_preflight_sends_each_cors_header_once(stack):
    # Browsers refuse a preflight whose Access-Control-Allow-Origin has more
    # than one value, and two such headers are read as one with two values.
    preflight = get(
        stack.port,
        "/cors/x",
        method="OPTIONS",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
    )
    names = [name for name, _ in preflight.headers]
    for name in ("access-control-allow-origin", "access-control-allow-credentials", "vary"):
        assert names.count(name) == 1, preflight.headers


def test_fail_closed_route_answers_503_when_pdp_is_down(stack):
    response = get(stack.port, "/closed/x")
    assert response.status == 503
    assert response.json()["type"].endswith("/pdp-unavailable")


def test_request_id_kept_when_valid_else_generated(stack):
    kept = get(stack.port, "/exact/only", headers={"X-Request-ID": "abc-12345678"})
    assert kept.header("x-request-id") == "abc-12345678"
    assert kept.json()["headers"]["x-request-id"] == "abc-12345678"
    replaced = get(stack.port, "/exact/only", headers={"X-Request-ID": "bad id\twith junk"})
    assert replaced.header("x-request-id") != "bad id\twith junk"
    assert len(replaced.header("x-request-id")) == 32


def test_client_identity_headers_never_reach_upstream(stack):
    spoofed = {
        "X-User-Id": "admin",
        "X-User-Roles": "admin",
        "X-User-Plan": "enterprise",
        "X-User-Mfa": "true",
        "X-User-Anything": "x",
    }
    seen = get(stack.port, "/exact/only", headers=spoofed).json()["headers"]
    assert not [name for name in seen if name.startswith("x-user-")]


def test_spoofed_forwarded_for_is_replaced_by_the_peer(stack):
    seen = get(
        stack.port,
        "/exact/only",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Real-IP": "203.0.113.9"},
    ).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"


@pytest.mark.parametrize("target,expected", load_corpus())
def test_hostile_target_corpus_through_the_proxy(stack, target, expected):
    """The upstream sees exactly the normalized target, or the proxy answers 400."""
    response = raw_request(stack.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    if expected == "400":
        assert response.status == 400, response.body
        assert response.header("content-type") == "application/problem+json"
    else:
        assert response.status == 200, response.body
        assert response.json()["path"] == expected


def refused_target(stack, target: str) -> str:
    """The detail of the 400 problem+json the proxy answers to a GET of target, sent as is."""
    response = raw_request(stack.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert response.status == 400, response.body
    assert response.header("content-type") == "application/problem+json"
    return response.json()["detail"]


@pytest.mark.parametrize("target", ["/open/%25%32%65%25%32%65/admin", "/open/%25%32%46admin", "/open/%25%35%43x"])
def test_a_double_encoded_escape_spelled_with_escaped_digits_is_400(stack, target):
    # %252e%252e was refused, but %25%32%65 (its digits escaped too) normalized to
    # that very %252e and reached the upstream: `..` to a backend that decodes twice,
    # under a path judged as /open/... .
    assert refused_target(stack, target) == "double-encoded escape"


@pytest.mark.parametrize("target", ["/open/%C0%AE%C0%AE/admin", "/open/%ED%A0%80", "/open/%C3"])
def test_an_escape_that_is_not_utf8_is_400(stack, target):
    # %C0%AE (an overlong ".") reached the upstream as sent: `..` to a lenient UTF-8
    # decoder, under a path judged as /open/... .
    assert refused_target(stack, target) == "escaped bytes that are not valid UTF-8"
    seen = get(stack.port, "/open/caf%c3%a9").json()  # valid UTF-8 still passes
    assert seen["path"] == "/open/caf%C3%A9"


SMUGGLING = [
    (b"POST /exact/only HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /exact/only HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /exact/only HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
    (b"POST /exact/only HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /exact/only HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET /exact/only HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    (b"GET /exact/only HTTP/1.1\nHost: x\n\n", 400),
    (b"GET /exact/only HTTP/1.1\r\n\r\n", 400),
    (b"GET /exact/only HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET /exact/only HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET  /exact/only HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /exact/only\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"POST /exact/only HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
]


@pytest.mark.parametrize("data,status", SMUGGLING)
def test_ambiguous_framing_is_refused(stack, data, status):
    response = raw_request(stack.port, data)
    assert response.status == status
    assert response.header("content-type") == "application/problem+json"


def test_small_chunked_body_is_buffered_and_sent_with_its_length(stack):
    # Up to BODY_BUFFER_BYTES the body is read before an upstream connection is taken.
    data = (
        b"POST /svc/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    seen = raw_request(stack.port, data).json()
    assert seen["body_bytes"] == 11
    assert seen["headers"].get("content-length") == "11"


def test_large_chunked_body_is_streamed_to_upstream_chunked(stack):
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(6))
    data = (
        b"POST /svc/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    seen = raw_request(stack.port, data).json()
    assert seen["body_bytes"] == 6 * 65536
    assert seen["headers"].get("content-length") is None


def test_keep_alive_serves_several_requests_on_one_connection(stack):
    import socket

    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock_file = sock.makefile("rb")
        from tests.proxy.proxy_helpers import read_response

        for i in range(3):
            sock.sendall(f"GET /exact/only?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(sock_file).json()["path"] == f"/exact/only?i={i}"


def test_http_10_client_without_host_is_served_and_closed(stack):
    response = raw_request(stack.port, b"GET /exact/only HTTP/1.0\r\n\r\n")
    assert response.status == 200
    assert response.json()["headers"]["host"].startswith("127.0.0.1:")
    assert response.header("connection") == "close"


def test_unparseable_requests_are_logged_too(stack):
    import json

    raw_request(stack.port, b"GET /exact/only HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
    from tests.proxy.proxy_helpers import wait_until

    wait_until(
        lambda: any(
            json.loads(line).get("error") == "more than one Host header"
            for line in stack.output().splitlines()
            if line.startswith("{")
        ),
        timeout=5,
    )


HOSTILE_REQUESTS = Path(__file__).parent / "data" / "hostile_requests.tsv"


def load_hostile_requests():
    """(request bytes, status) per line of data/hostile_requests.tsv (Python bytes escapes)."""
    cases = []
    for line in HOSTILE_REQUESTS.read_text(encoding="ascii").splitlines():
        if not line or line.startswith("#"):
            continue
        escaped, status = line.rsplit("\t", 1)
        cases.append(
            pytest.param(
                escaped.encode("ascii").decode("unicode_escape").encode("latin-1"), int(status), id=escaped[:60]
            )
        )
    return cases


@pytest.mark.parametrize("data,status", load_hostile_requests())
def test_hostile_request_corpus_through_the_proxy(stack, data, status):
    """Every case gets an answer (never a dropped connection): forwarded, or refused as problem+json."""
    response = raw_request(stack.port, data)
    assert response.status == status, response.body
    if status >= 400:
        assert response.header("content-type") == "application/problem+json"
    else:
        assert response.json()["service"] == "a"
