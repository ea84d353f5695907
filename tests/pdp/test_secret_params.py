"""Secret query parameters never reach a policy or a log: one list (servicekit/secret_params.py) for the
PDP's input and decision log and the proxy's access log, checked on the real processes."""

import json

import requests

from servicekit.secret_params import is_secret_param, redact_query
from tests.proxy.proxy_helpers import wait_until

SECRET_QUERY = (
    "refresh_token=SECRET-R&X-Amz-Signature=SECRET-A&x-goog-signature=SECRET-G&Sig=SECRET-S"
    "&client_secret=SECRET-C&my_token=SECRET-M&refresh%5Ftoken=SECRET-E&Password=SECRET-P"
    "&X-Amz-Credential=SECRET-K&page=2&sort=name"
)
SECRETS = [f"SECRET-{c}" for c in "RAGSCMEPK"]


def decision_line(pdp, decision_id):
    def find():
        return [
            json.loads(line) for line in pdp.output().splitlines() if line.startswith('{"decision_id":"' + decision_id)
        ]

    return wait_until(find, timeout=5)[0]


def test_secret_query_parameters_never_reach_the_policy_or_the_decision_log(pdp, mint):
    body = {
        "request": {
            "method": "GET",
            "path": "/private/doc?" + SECRET_QUERY,
            "client_ip": "127.0.0.1",
            "headers": {
                "authorization": "Bearer " + mint("alice"),
                "referer": "https://app.example/cb?code=SECRET-O&state=s1#access_token=SECRET-F",
            },
        }
    }
    decision = requests.post(pdp.url + "/v1/check", json=body, timeout=5).json()
    assert decision["allow"] is True
    logged = decision_line(pdp, decision["decision_id"])
    assert logged["input"]["request"]["query"] == {"page": ["2"], "sort": ["name"]}
    assert (
        logged["input"]["request"]["headers"]["referer"]
        == "https://app.example/cb?code=REDACTED&state=s1#access_token=REDACTED"
    )
    for secret in SECRETS + ["SECRET-O", "SECRET-F"]:
        assert secret not in pdp.output()


def test_forward_auth_targets_are_stripped_the_same_way(pdp):
    resp = requests.get(
        pdp.url + "/v1/forward-auth",
        timeout=5,
        headers={"X-Original-Method": "GET", "X-Original-URI": "/public/cb?" + SECRET_QUERY},
    )
    assert resp.status_code == 200
    logged = decision_line(pdp, resp.headers["X-Lucid-Decision-Id"])
    assert logged["input"]["request"]["query"] == {"page": ["2"], "sort": ["name"]}
    assert not any(secret in pdp.output() for secret in SECRETS)


def test_the_list():
    for name in (
        "refresh_token",
        "ACCESS_TOKEN",
        "id_token",
        "code",
        "password",
        "secret",
        "api_key",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "X-Goog-Signature",
        "sig",
        "signature",
        "sid",
        "clientSecret",
        "x_session_token",
    ):
        assert is_secret_param(name), name
    for name in ("page", "sort", "q", "state", "redirect_uri", "id", "keyword"):
        assert not is_secret_param(name), name
    assert redact_query("a=1&Sig=x&b&token=&c=3") == "a=1&Sig=REDACTED&b&token=REDACTED&c=3"
