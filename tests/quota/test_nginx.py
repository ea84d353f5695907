"""deploy/nginx/lucid-auth.conf with a real nginx in front of the real PDP and a
real upstream: quota denials become real 429s with Retry-After and RateLimit."""

import pytest
import requests

from tests.support.nginx import forward_auth_http, forward_auth_stack, start_nginx
from tests.support.ports import free_port

from .pdp_server import start_pdp, token


@pytest.fixture(scope="module")
def stack():
    with forward_auth_stack(lambda redis_url: start_pdp(redis_url, workers=1)) as nginx:
        yield nginx


def get(stack, path, bearer=None, **headers):
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return requests.get(stack.url + path, headers=headers, timeout=10)


def test_allowed_request_reaches_upstream_with_identity_and_ratelimit(stack):
    reply = get(
        stack, "/q/login", token("nina", roles=["user"]), **{"X-User-Id": "admin", "X-User-Roles": "admin"}
    )  # spoof attempts
    assert reply.status_code == 200
    seen = reply.json()["headers"]
    assert seen["x-user-id"] == "nina" and seen["x-user-roles"] == "user"
    assert reply.headers["RateLimit-Policy"] == '"login";q=6;w=60'
    assert reply.headers["RateLimit"] == '"login";r=1;t=10'


def test_quota_denial_becomes_a_real_429(stack):
    bearer = token("olga")
    assert [get(stack, "/q/login", bearer).status_code for _ in range(2)] == [200, 200]
    denied = get(stack, "/q/login", bearer)
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == "10"
    assert denied.headers["RateLimit"] == '"login";r=0;t=20'
    assert denied.headers["RateLimit-Policy"] == '"login";q=6;w=60'
    assert denied.headers["Content-Type"] == "application/problem+json"
    assert denied.json()["type"].endswith("/quota-exceeded")


def test_anonymous_client_cannot_pick_its_quota_key(stack):
    # The PDP keys anonymous quota on the client IP nginx saw, not on a header.
    codes = [
        get(stack, "/q/login", **{"X-Real-IP": f"198.51.100.{i}", "X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


def test_policy_denial_passes_through_as_403(stack):
    assert get(stack, "/elsewhere", token("pia")).status_code == 403


def test_invalid_token_is_401(stack):
    assert get(stack, "/q/login", "not-a-token").status_code == 401


def test_unreachable_pdp_fails_closed_with_503():
    port, nothing_there = free_port(), free_port()
    nginx = start_nginx(forward_auth_http(port, nothing_there, nothing_there), port)
    try:
        reply = requests.get(nginx.url + "/q/login", timeout=10)
        assert reply.status_code == 503
        assert reply.json()["type"].endswith("/authorization-unavailable")
    finally:
        nginx.stop()
