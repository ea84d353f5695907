"""deploy/nginx/lucid-auth.conf with a real nginx and the real PDP: the backend
gets only a path the policy judged, for every target of the proxy's hostile corpus.

nginx sends the backend the client's own target (proxy_pass without a URI)
and the PDP the same raw target in X-Original-URI, while the policy judges its
normalized form. So the PDP refuses (400) a target that normalizing would
turn into other segments (`//`, `/./`, `/%2e%2e/`): before, `/admin/%2e%2e/public`
was judged as /public and reached the backend as sent."""

import socket
import uuid

import pytest

from tests.support.hostile_paths import assert_upstream_got_only_what_was_judged, load_corpus, raw_get
from tests.support.nginx import forward_auth_http, start_nginx
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def nginx(logging_pdp, echo_upstream):
    port = free_port()
    server = start_nginx(forward_auth_http(port, logging_pdp.port, echo_upstream.port), port, "lucid-nginx-paths-")
    yield server
    server.stop()


def _admin(mint) -> str:
    # An admin, so that the policy allows every path of the API it knows.
    return "Bearer " + mint(f"adm{uuid.uuid4().hex[:12]}", roles=("admin",), mfa=True)


@pytest.mark.parametrize("target,expected", load_corpus())
def test_hostile_paths_reach_the_backend_only_as_judged(nginx, logging_pdp, mint, target, expected):
    status, body = raw_get(nginx.port, target, _admin(mint))
    assert_upstream_got_only_what_was_judged(status, body, logging_pdp.output(), target, expected)


@pytest.mark.parametrize("target", ["/api/v1//users/me", "/api/v1/chain/%2e%2e/users/me", "/api/v1/./users/me"])
def test_a_target_the_backend_would_read_otherwise_is_a_400_problem(nginx, mint, target):
    status, body = raw_get(nginx.port, target, _admin(mint))
    assert status == 400, (target, status, body[:200])
    assert b"bad-request" in body


def test_a_plain_target_still_passes(nginx, mint):
    status, body = raw_get(nginx.port, "/api/v1/users/me?x=1", _admin(mint))
    assert status == 200 and b"bench-upstream" in body


def _request(port: int, method: str, target: str, authorization: str) -> tuple[int, bytes, bytes]:
    """(status, head in lower case, body) of one request sent as is."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {authorization}\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.lower() + b"\r\n", body


def test_the_policys_404_and_405_keep_their_status(nginx, mint):
    """nginx's auth_request turns every status but 2xx/401/403 into a 500; the
    snippet maps the decided one back. The shipped policy's 404 (no route) and
    405 (with Allow) were 500s."""
    status, head, body = _request(nginx.port, "GET", "/no/such/route", _admin(mint))
    assert status == 404, body[:300]
    assert b"content-type: application/problem+json\r\n" in head and b"not-found" in body
    status, head, body = _request(nginx.port, "DELETE", "/api/v1/users/me", _admin(mint))
    assert status == 405, body[:300]
    assert b"content-type: application/problem+json\r\n" in head
    allow = head.split(b"\r\nallow: ", 1)[1].split(b"\r\n", 1)[0]
    assert b"GET" in allow.upper(), head


def test_401_and_403_are_problems_with_the_pdps_challenge(nginx, mint):
    """nginx answered the subrequest's 401 and 403 with its HTML error page."""
    status, head, body = _request(nginx.port, "GET", "/api/v1/users/me", "Bearer not-a-token")
    assert status == 401, body[:300]
    assert b"content-type: application/problem+json\r\n" in head and b"<html" not in body
    assert head.count(b"\r\nwww-authenticate: bearer") == 1, head
    user = "Bearer " + mint(f"u{uuid.uuid4().hex[:12]}", roles=("user",), mfa=True)
    status, head, body = _request(nginx.port, "GET", "/api/v1/meta/metrics", user)
    assert status == 403, body[:300]
    assert b"content-type: application/problem+json\r\n" in head and b"<html" not in body
