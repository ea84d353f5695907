"""request.client_principal (the mTLS identity a TLS front end verified) is part of
the /v1/check contract: a string, or a 400."""

import requests


def test_a_non_string_principal_is_a_400(pdp):
    resp = requests.post(
        pdp.url + "/v1/check",
        timeout=5,
        json={"request": {"method": "GET", "path": "/public/x", "client_principal": {"uri": "spiffe://x"}}},
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert "client_principal" in resp.json()["detail"]


def test_a_string_principal_is_accepted(pdp):
    resp = requests.post(
        pdp.url + "/v1/check",
        timeout=5,
        json={
            "request": {"method": "GET", "path": "/public/x", "client_principal": "spiffe://cluster.local/ns/a/sa/b"}
        },
    )
    assert resp.status_code == 200 and resp.json()["allow"] is True
