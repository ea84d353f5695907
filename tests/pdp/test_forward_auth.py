"""The same decision for nginx auth_request, Traefik ForwardAuth and Envoy ext_authz."""

import requests


def test_nginx_style_allow_returns_identity_headers(pdp, mint):
    resp = requests.get(
        pdp.url + "/v1/forward-auth",
        timeout=5,
        headers={
            "X-Original-Method": "GET",
            "X-Original-URI": "/private/doc?x=1",
            "Authorization": "Bearer " + mint("carol", ["user"]),
        },
    )
    assert resp.status_code == 200
    assert resp.headers["X-User-Id"] == "carol"
    assert resp.headers["X-Lucid-Status"] == "200"


def test_nginx_style_deny_uses_the_decided_status(pdp):
    resp = requests.get(
        pdp.url + "/v1/forward-auth", timeout=5, headers={"X-Original-Method": "GET", "X-Original-URI": "/private/doc"}
    )
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["X-Lucid-Status"] == "401"
    assert "X-User-Id" not in resp.headers


def test_traefik_style_headers(pdp_factory, mint):
    pdp = pdp_factory(FORWARD_AUTH_FRONT="traefik")
    resp = requests.get(
        pdp.url + "/v1/forward-auth",
        timeout=5,
        headers={
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Uri": "/admin",
            "X-Forwarded-Host": "gw.example",
            "X-Forwarded-Proto": "https",
            "Authorization": "Bearer " + mint("root", ["admin"]),
        },
    )
    assert resp.status_code == 200 and resp.headers["X-User-Roles"] == "admin"
    resp = requests.get(
        pdp.url + "/v1/forward-auth",
        timeout=5,
        headers={
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Uri": "/admin",
            "Authorization": "Bearer " + mint("bob", ["user"]),
        },
    )
    assert resp.status_code == 403


def test_envoy_ext_authz_uses_method_and_path_suffix(pdp, mint):
    token = "Bearer " + mint("dave", ["admin"])
    resp = requests.post(pdp.url + "/v1/ext-authz/admin", headers={"Authorization": token}, timeout=5)
    assert resp.status_code == 200 and resp.headers["X-User-Id"] == "dave"
    resp = requests.delete(pdp.url + "/v1/ext-authz/private/x", headers={"Authorization": token}, timeout=5)
    assert resp.status_code == 403  # private allows GET/HEAD only


def test_envoy_ext_authz_rejects_encoded_slash_in_raw_path(pdp):
    resp = requests.get(pdp.url + "/v1/ext-authz/public%2F..%2Fadmin", timeout=5)
    assert resp.status_code == 400
    assert resp.headers["X-Lucid-Status"] == "400"


def test_header_the_policy_reads_reaches_it(pdp):
    # The fixture policy allows /tenant/<x-tenant header>: the header must be given to the policy.
    resp = requests.get(
        pdp.url + "/v1/forward-auth",
        timeout=5,
        headers={"X-Original-Method": "GET", "X-Original-URI": "/tenant/acme", "X-Tenant": "acme"},
    )
    assert resp.status_code == 200
    resp = requests.get(
        pdp.url + "/v1/forward-auth",
        timeout=5,
        headers={"X-Original-Method": "GET", "X-Original-URI": "/tenant/acme", "X-Tenant": "other"},
    )
    assert resp.status_code == 401
