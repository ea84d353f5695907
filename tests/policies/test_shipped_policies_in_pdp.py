"""The shipped policies served by the real PDP (gunicorn, JWT, Redis) over HTTP."""

from __future__ import annotations

import requests

from tests.conftest import SHIPPED_POLICIES


def check(pdp, method: str, path: str, token: str | None = None) -> dict:
    headers = {"authorization": "Bearer " + token} if token else {}
    body = {"request": {"method": method, "path": path, "headers": headers, "client_ip": "127.0.0.1"}}
    resp = requests.post(pdp.url + "/v1/check", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_pdp_serves_the_shipped_policies(pdp_factory, mint):
    pdp = pdp_factory(POLICY_DIR=str(SHIPPED_POLICIES))

    d = check(pdp, "GET", "/api/v1/meta/health")
    assert (d["allow"], d["status"], d["cache_ttl_s"]) == (True, 200, 5)

    d = check(pdp, "GET", "/api/v1/users/me?fields=name")
    assert (d["status"], d["reason"]) == (401, "authentication_required")
    assert d["response_headers"] == {"www-authenticate": "Bearer"}

    alice = mint("alice", ["user"], plan="pro")
    d = check(pdp, "GET", "/api/v1/users/me", alice)
    assert d["allow"] is True
    assert d["headers"] == {"x-user-id": "alice", "x-user-roles": "user", "x-user-plan": "pro", "x-user-mfa": "false"}

    assert check(pdp, "GET", "/api/v1/users/alice", alice)["allow"] is True
    assert check(pdp, "GET", "/api/v1/users/bob", alice)["status"] == 403
    # Judged on the normalized path: /users/alice/../bob is /users/bob.
    assert check(pdp, "GET", "/api/v1/users/alice/../bob", alice)["status"] == 403

    d = check(pdp, "POST", "/api/v1/wallets/w-1/transactions", alice)
    assert (d["status"], d["reason"]) == (403, "mfa_required")
    d = check(pdp, "POST", "/api/v1/wallets/w-1/transactions", mint("alice", ["user"], mfa=True))
    assert d["allow"] is True and d["headers"]["x-user-mfa"] == "true"

    d = check(pdp, "DELETE", "/api/v1/users/me", alice)
    assert (d["status"], d["response_headers"]) == (405, {"allow": "GET, HEAD, PUT"})
    assert check(pdp, "GET", "/api/v1/nothing", alice)["status"] == 404
    assert check(pdp, "POST", "/api/v1/trust/policies", mint("root", ["admin"]))["allow"] is True
