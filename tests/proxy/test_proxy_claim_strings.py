"""Through the real proxy and PDP: a signed claim that could forge a header is a 401, never a
backend request with a split header, and never a 503 (a CR/LF in sub used to be one)."""

import pytest

from tests.proxy.proxy_helpers import get

HOSTILE = [
    {"roles": ["user,admin"]},
    {"roles": ['user", "x-user-roles":"admin']},
    {"roles": ["user", 'user", "x-user-mfa":"true']},
    {"sub": 'victim", "name":"x'},
    {"sub": "victim\r\nx-user-roles: admin"},
    {"sub": "victim\nx"},
    {"plan": "free\r\nx-user-plan: enterprise"},
]


@pytest.mark.parametrize("claims", HOSTILE, ids=lambda c: repr(c)[:40])
def test_a_claim_that_could_forge_a_header_is_a_401_problem(stack, mint, claims):
    claims = dict(claims)
    token = mint(claims.pop("sub", "alice"), claims.pop("roles", ["user"]), **claims)
    response = get(stack.proxy.port, "/app/items", headers={"Authorization": "Bearer " + token})
    assert response.status == 401
    assert response.header("content-type") == "application/problem+json"
    assert response.json()["detail"].startswith("invalid_token")


def test_ordinary_claims_still_reach_the_backend(stack, mint):
    token = mint("auth0|5f7c8ec7", ["svc:reader.v2", "user"])
    response = get(stack.proxy.port, "/app/items", headers={"Authorization": "Bearer " + token})
    assert response.status == 200
    assert response.json()["headers"]["x-user-id"] == "auth0|5f7c8ec7"
