"""The whole sign-in through the real proxy (default routes) in front of the PDP:
create an account, ask for a link, open it, enrol TOTP, sign in with both
factors, call a protected route, refresh, log out, old tokens refused."""

import re

import pytest
import requests

from .stack import away_from_step_edge, behind_the_proxy, code_at, link_token


@pytest.fixture(scope="module")
def gateway():
    with behind_the_proxy() as (stack, proxy_url):
        yield stack, proxy_url


def test_the_whole_sign_in_through_the_gateway(gateway):
    stack, gw = gateway
    api = gw + "/api/v1"
    away_from_step_edge()
    # 1. create an account (open sign-up passes the policy as anonymous)
    created = requests.post(api + "/users", json={"email": "e2e@example.com"}, timeout=20)
    assert created.status_code == 201, created.text
    # 2. ask for a magic link
    assert requests.post(api + "/auth/login", json={"email": "e2e@example.com"}, timeout=20).status_code == 202
    token = link_token(stack.mail.wait_for("e2e@example.com")[-1])
    # 3. open it: the page (GET) then its form (POST)
    page = requests.get(api + "/auth/magic", params={"token": token}, timeout=20)
    assert page.status_code == 200 and 'action="/api/v1/auth/magic"' in page.text
    signed_in = requests.post(api + "/auth/magic", data={"token": token}, timeout=20)
    assert signed_in.status_code == 200, signed_in.text
    access = re.search(r'id="access_token">([^<]+)<', signed_in.text).group(1)
    auth = {"Authorization": f"Bearer {access}"}
    # 4. enrol TOTP
    enrol = requests.post(api + "/users/me/totp", headers=auth, timeout=20)
    assert enrol.status_code == 201, enrol.text
    secret = enrol.json()["secret"]
    confirmed = requests.post(
        api + "/users/me/totp/confirm", json={"code": code_at(secret, -1)}, headers=auth, timeout=20
    )
    assert confirmed.status_code == 200, confirmed.text
    # 5. sign in with both factors
    requests.post(api + "/auth/login", json={"email": "e2e@example.com"}, timeout=20)
    token = link_token(stack.mail.wait_for("e2e@example.com", 2)[-1])
    challenge = requests.post(api + "/auth/verify", json={"token": token}, timeout=20).json()
    assert challenge["mfa_required"] is True
    tokens = requests.post(
        api + "/auth/verify", json={"mfa_token": challenge["mfa_token"], "code": code_at(secret, 0)}, timeout=20
    ).json()
    assert tokens["mfa"] is True
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    # 6. a protected route: the upstream sees the identity the PDP vouched for
    seen = requests.get(api + "/sessions", headers=auth, timeout=20)
    assert seen.status_code == 200, seen.text
    assert seen.json()["headers"]["x-user-id"] == tokens["user_id"]
    assert seen.json()["headers"]["x-user-mfa"] == "true"
    me = requests.get(api + "/users/me", headers=auth, timeout=20)
    assert me.status_code == 200 and me.json()["totp_enabled"] is True
    # 7. refresh
    pair = requests.post(api + "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=20)
    assert pair.status_code == 200, pair.text
    new_auth = {"Authorization": f"Bearer {pair.json()['access_token']}"}
    # 8. log out
    out = requests.post(api + "/auth/logout", headers=new_auth, timeout=20)
    assert out.status_code == 200, out.text
    # 9. the old tokens are refused, at the gateway and at refresh
    assert requests.get(api + "/sessions", headers=new_auth, timeout=20).status_code == 401
    assert (
        requests.post(
            api + "/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]}, timeout=20
        ).status_code
        == 401
    )


def test_the_gateway_still_guards_the_auth_routes(gateway):
    stack, gw = gateway
    api = gw + "/api/v1"
    # users/me, status and TOTP enrolment need a token before the PDP's auth service is even asked.
    for method, path in (
        ("GET", "/users/me"),
        ("GET", "/auth/status"),
        ("POST", "/users/me/totp"),
        ("POST", "/auth/logout"),
    ):
        response = requests.request(method, api + path, timeout=20)
        assert response.status_code == 401, (method, path, response.text)
    # Role changes need role admin at the gateway.
    from pdp.authn.tokens import mint_access_token

    from .stack import SECRET

    user = mint_access_token(SECRET, "HS256", sub="u_x", roles=["user"], plan="free", mfa=True, lifetime_s=60)[0]
    refused = requests.put(
        api + "/users/u_x/roles", json={"roles": ["admin"]}, headers={"Authorization": f"Bearer {user}"}, timeout=20
    )
    assert refused.status_code == 403
