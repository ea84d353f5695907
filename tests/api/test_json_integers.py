"""JSON has one number type: 5.0 is an integer (as the spec's "integer" says), 5.5 is not.

Found by the schemathesis run: an override of {"limit": 936480329.0} was a 400.
"""

import requests


def test_integral_float_is_an_integer_limit(pdp, mint):
    admin = {"Authorization": "Bearer " + mint("root", ["admin"])}
    url = pdp.url + "/v1/quotas/user:floaty/overrides/api"
    resp = requests.put(url, json={"limit": 5.0, "burst": 7.0}, headers=admin, timeout=5)
    assert resp.status_code == 200, resp.text
    assert resp.json()["overrides"]["descriptors"]["api"] == {"limit": 5, "burst": 7}
    resp = requests.put(url, json={"limit": 5.5}, headers=admin, timeout=5)
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json"
    requests.delete(url, headers=admin, timeout=5)
