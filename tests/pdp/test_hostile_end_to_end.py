"""Issue 7's findings against the real processes: a hostile string in a claim, a
header or client_ip never forges anything, and never gives a 500.

The PDP (gunicorn, wasm engine, Redis quotas) serves the shipped policies;
the proxy forwards to a real echo upstream that shows what reached it. On
regopy 1.5.2 each of these forged a header or a quota, or answered 500/503.
Tokens with such claims may also be refused outright (401) by the
authenticator; either way, nothing forged reaches a backend.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.conftest import SHIPPED_POLICIES, start_pdp
from tests.proxy.proxy_helpers import get, start_echo, start_proxy


@pytest.fixture(scope="module")
def chain(redis_server, jwt_secret):
    pdp = start_pdp(
        {"JWT_SECRET_KEY": jwt_secret, "REDIS_URL": redis_server.redis_url, "POLICY_DIR": str(SHIPPED_POLICIES)},
        workers=1,
    )
    upstreams = {name: start_echo(name) for name in ("auth", "sessions", "chain", "tron")}
    proxy = start_proxy(
        env={
            "PDP_URL": pdp.url,
            "PDP_TIMEOUT_MS": "3000",
            "AUTH_SERVICE_URL": upstreams["auth"].url,
            "SESSION_MANAGEMENT_URL": upstreams["sessions"].url,
            "BLOCKCHAIN_CORE_URL": upstreams["chain"].url,
            "TRON_PAYMENT_URL": upstreams["tron"].url,
        }
    )
    proxy.pdp = pdp
    yield proxy
    for server in (proxy, *upstreams.values(), pdp):
        server.stop()


def check(pdp, path, token=None, method="GET", client_ip="10.0.0.1"):
    headers = {"authorization": "Bearer " + token} if token else {}
    resp = requests.post(
        pdp.url + "/v1/check",
        timeout=10,
        json={"request": {"method": method, "path": path, "headers": headers, "client_ip": client_ip}},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def refused_or(decision, **exact_headers):
    """The token was refused (401), or the decision carries each claim exactly as signed."""
    if decision["status"] == 401:
        assert decision["headers"] == {}
        return
    assert decision["allow"] is True, decision
    assert set(decision["headers"]) == {"x-user-id", "x-user-roles", "x-user-plan", "x-user-mfa"}
    for name, value in exact_headers.items():
        assert decision["headers"][name.replace("_", "-")] == value


def test_a_quote_in_a_role_does_not_make_an_admin(chain, mint):
    role = 'user", "x-user-roles":"admin'
    token = mint("alice", [role])
    refused_or(check(chain.pdp, "/api/v1/users/me", token), x_user_roles=role, x_user_id="alice")
    assert check(chain.pdp, "/api/v1/trust/policies", token, method="POST")["allow"] is False
    seen = get(chain.port, "/api/v1/users/me", headers={"Authorization": "Bearer " + token})
    if seen.status == 200:
        assert seen.json()["headers"]["x-user-roles"] == role
    else:
        assert seen.status == 401


def test_a_quote_in_the_sub_does_not_impersonate(chain, mint):
    sub = 'victim", "name":"x'
    token = mint(sub, ["user"])
    refused_or(check(chain.pdp, "/api/v1/users/me", token), x_user_id=sub)
    seen = get(chain.port, "/api/v1/users/me", headers={"Authorization": "Bearer " + token})
    assert seen.status in (200, 401)
    if seen.status == 200:
        assert seen.json()["headers"]["x-user-id"] == sub


def test_a_quote_in_a_role_does_not_forge_mfa(chain, mint):
    token = mint("alice", ['user", "x-user-mfa":"true'], mfa=False)
    d = check(chain.pdp, "/api/v1/users/me", token)
    refused_or(d, x_user_mfa="false")
    d = check(chain.pdp, "/api/v1/wallets/w1/transactions", token, method="POST")
    assert d["allow"] is False and d["status"] in (401, 403)
    seen = get(
        chain.port,
        "/api/v1/wallets/w1/transactions",
        method="POST",
        body=b"{}",
        headers={"Authorization": "Bearer " + token},
    )
    assert seen.status in (401, 403)


def test_a_forged_real_ip_does_not_rewrite_the_quota(chain):
    """Through forward-auth: X-Real-IP `", "burst":777777, "name":"x` once set the burst."""
    resp = requests.get(
        chain.pdp.url + "/v1/forward-auth",
        timeout=10,
        headers={
            "X-Original-Method": "POST",
            "X-Original-URI": "/api/v1/auth/login",
            "X-Real-IP": '", "burst":777777, "name":"x',
        },
    )
    assert resp.status_code < 500, resp.text
    # regopy answered RateLimit: "auth_login_per_ip";r=777776: the forged burst.
    burst = json.loads((SHIPPED_POLICIES / "gateway" / "data.json").read_text())["brute_force_limit"]["burst"]
    remaining = re.search(r";r=(\d+)", resp.headers.get("RateLimit", ""))
    if resp.status_code == 200:
        assert remaining and int(remaining.group(1)) < burst, dict(resp.headers)
    assert not any("777777" in v or "77777" in v or '"x"' in v for v in resp.headers.values()), dict(resp.headers)


@pytest.mark.parametrize("client_ip", ['"', "\t", "\x01", "a\\b", '1.2.3.4", "x":"y', "\u2028", "\x7f"])
def test_odd_client_ips_are_decided_not_a_500(chain, client_ip):
    """Not an address: a 400 problem (client_ip must be an IP), or, where one is
    taken as it is, a decision (a quota key with a control character is refused
    by the quota layer, 403 invalid_quota_descriptor); never a 5xx."""
    for method, path in (("POST", "/api/v1/auth/login"), ("GET", "/api/v1/chain/info")):
        resp = requests.post(
            chain.pdp.url + "/v1/check",
            timeout=10,
            json={"request": {"method": method, "path": path, "headers": {}, "client_ip": client_ip}},
        )
        if resp.status_code == 400:
            assert resp.headers["content-type"] == "application/problem+json"
            continue
        assert resp.status_code == 200, resp.text
        d = resp.json()
        assert d["status"] in (200, 403, 429), d
        assert d["allow"] or d["reason"] in ("invalid_quota_descriptor", "rate_limited"), d


def test_a_lone_surrogate_is_a_400_problem(chain):
    resp = requests.post(
        chain.pdp.url + "/v1/check",
        timeout=10,
        headers={"content-type": "application/json"},
        data=b'{"request": {"method": "GET", "path": "/api/v1/chain/info", "client_ip": "\\ud800"}}',
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"


def _bad_header_count(pdp) -> float:
    text = requests.get(pdp.url + "/metrics", timeout=10).text
    m = re.search(r'^lucid_pdp_errors_total\{kind="policy_bad_headers"\} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_crlf_sub_is_denied_and_counted_and_never_reaches_a_backend(chain, mint):
    token = mint("eve\r\nx-user-roles: admin", ["user"])
    before = _bad_header_count(chain.pdp)
    d = check(chain.pdp, "/api/v1/users/me", token)
    assert d["allow"] is False and d["headers"] == {}
    if d["status"] != 401:  # the authenticator did not refuse it first
        assert (d["status"], d["reason"]) == (503, "policy_bad_headers")
        assert _bad_header_count(chain.pdp) == before + 1
    seen = get(chain.port, "/api/v1/users/me", headers={"Authorization": "Bearer " + token})
    assert seen.status in (401, 503)
    assert "eve" not in seen.body.decode("utf-8", "replace")


def test_a_lone_surrogate_in_a_claim_is_refused_not_a_500(chain, mint):
    """A signed claim can carry what the body check cannot see: the engine refuses
    it as input (deny, 400 invalid_input) unless the authenticator refused it first (401)."""
    d = check(chain.pdp, "/api/v1/users/me", mint("a\ud800b", ["user"]))
    assert d["allow"] is False and d["headers"] == {}
    assert (d["status"], d["reason"]) == (400, "invalid_input") or d["status"] == 401, d
