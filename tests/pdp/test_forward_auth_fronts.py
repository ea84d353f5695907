"""FORWARD_AUTH_FRONT and TRUSTED_PROXIES: forward-auth reads only its gateway's headers, through the real PDP."""

import http.client
import json
import time

import pytest
import requests

from pdp.config import ConfigError, load_settings
from tests.conftest import SHIPPED_POLICIES

PROBLEM = "application/problem+json"
# What Traefik sends for a POST /api/v1/trust/policies, plus what the client added to it.
TRAEFIK_POST = {
    "X-Forwarded-Method": "POST",
    "X-Forwarded-Uri": "/api/v1/trust/policies",
    "X-Forwarded-Host": "gw.example",
    "X-Forwarded-Proto": "https",
}
CLIENT_SPOOF = {"X-Original-Method": "GET", "X-Original-URI": "/api/v1/chain/info"}


@pytest.fixture
def traefik_pdp(pdp_factory):
    return pdp_factory(POLICY_DIR=str(SHIPPED_POLICIES), FORWARD_AUTH_FRONT="traefik", RATE_LIMIT_ENABLED="false")


def forward(pdp, headers, method="GET"):
    return requests.request(method, pdp.url + "/v1/forward-auth", headers=headers, timeout=5)


def assert_refused(resp, naming):
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert resp.headers["X-Lucid-Status"] == "400"
    assert naming in resp.json()["detail"]
    assert not any(h.lower().startswith("x-user-") for h in resp.headers)


def test_traefik_front_refuses_a_client_sent_x_original_target(traefik_pdp, mint):
    user = {"Authorization": "Bearer " + mint("bob", ["user"])}
    # Without the client's additions: the real request is judged, and a user may not create policies.
    assert forward(traefik_pdp, {**TRAEFIK_POST, **user}).status_code == 403
    # The exploit: the same request with X-Original-* pointing at a public GET was a 200.
    assert_refused(forward(traefik_pdp, {**TRAEFIK_POST, **CLIENT_SPOOF, **user}), "X-Original-Method")
    assert_refused(
        forward(traefik_pdp, {**TRAEFIK_POST, "X-Original-URI": "/api/v1/chain/info", **user}), "X-Original-URI"
    )
    # What the client pretended to ask is public: the refusal is about the headers, not the target.
    public = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/chain/info"}
    assert forward(traefik_pdp, public).status_code == 200


def test_anonymous_metrics_cannot_be_reached_through_a_spoofed_target(traefik_pdp):
    metrics = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/meta/metrics"}
    assert forward(traefik_pdp, metrics).status_code == 401
    assert_refused(forward(traefik_pdp, {**metrics, **CLIENT_SPOOF}), "X-Original")


def test_traefik_front_needs_its_own_headers(traefik_pdp):
    assert_refused(forward(traefik_pdp, {"X-Forwarded-Method": "GET"}), "X-Forwarded-Uri")


def test_nginx_front_is_the_default_and_refuses_traefik_headers(pdp, mint):
    user = {"Authorization": "Bearer " + mint("bob", ["user"])}
    nginx = {"X-Original-Method": "GET", "X-Original-URI": "/private/doc"}
    assert forward(pdp, {**nginx, **user}).status_code == 200
    assert_refused(forward(pdp, {**nginx, "X-Forwarded-Method": "GET", **user}), "X-Forwarded-Method")
    assert_refused(forward(pdp, {**nginx, "X-Forwarded-Uri": "/public/x", **user}), "X-Forwarded-Uri")
    # No guessing: without its headers nothing is judged (it used to be GET /).
    assert_refused(forward(pdp, {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/x"}), "X-Forwarded")
    assert_refused(forward(pdp, {}), "X-Original-Method")


def test_bad_forwarded_proto_is_refused(pdp):
    resp = forward(
        pdp, {"X-Original-Method": "GET", "X-Original-URI": "/public/x", "X-Forwarded-Proto": 'https", "a":"b'}
    )
    assert_refused(resp, "X-Forwarded-Proto")


def test_envoy_front_turns_forward_auth_off_and_ext_authz_refuses_target_headers(pdp_factory, mint):
    pdp = pdp_factory(FORWARD_AUTH_FRONT="envoy")
    resp = forward(pdp, {"X-Original-Method": "GET", "X-Original-URI": "/public/x"})
    assert resp.status_code == 404 and resp.headers["content-type"] == PROBLEM
    token = {"Authorization": "Bearer " + mint("dave", ["user"])}
    assert requests.get(pdp.url + "/v1/ext-authz/private/x", headers=token, timeout=5).status_code == 200
    for spoof in ({"X-Original-Method": "GET"}, {"X-Forwarded-Uri": "/public/x"}, {"X-Forwarded-Method": "GET"}):
        resp = requests.delete(pdp.url + "/v1/ext-authz/private/x", headers={**token, **spoof}, timeout=5)
        assert_refused(resp, next(iter(spoof)))


def test_forward_auth_front_setting_is_checked():
    with pytest.raises(ConfigError) as err:
        load_settings({"JWT_SECRET_KEY": "x" * 40, "FORWARD_AUTH_FRONT": "haproxy"})
    assert str(err.value).startswith("FORWARD_AUTH_FRONT:")
    with pytest.raises(ConfigError) as err:
        load_settings({"JWT_SECRET_KEY": "x" * 40, "TRUSTED_PROXIES": "10.0.0.0/8, nginx"})
    assert str(err.value).startswith("TRUSTED_PROXIES:")


# --- client IP -----------------------------------------------------------------------------------


def ask_from(pdp, source_ip, headers):
    """GET /v1/forward-auth from a chosen loopback address; returns (status, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", pdp.port, timeout=5, source_address=(source_ip, 0))
    try:
        conn.request(
            "GET", "/v1/forward-auth", headers={"X-Original-Method": "GET", "X-Original-URI": "/public/x", **headers}
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def logged_client_ip(pdp, decision_id):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in pdp.output().splitlines():
            if line.startswith('{"decision_id":"' + decision_id):
                return json.loads(line)["input"]["request"]["client_ip"]
        time.sleep(0.05)
    raise AssertionError(f"decision {decision_id} not logged")


def client_ip_seen(pdp, source_ip, headers):
    status, answer = ask_from(pdp, source_ip, headers)
    assert status == 200, (status, answer)
    return logged_client_ip(pdp, answer["x-lucid-decision-id"])


SPOOF_IP = {"X-Real-IP": "198.51.100.7", "X-Forwarded-For": "198.51.100.8"}


def test_forwarded_addresses_are_ignored_without_trusted_proxies(pdp):
    assert client_ip_seen(pdp, "127.0.0.1", SPOOF_IP) == "127.0.0.1"
    assert client_ip_seen(pdp, "127.0.0.1", {"X-Forwarded-For": "198.51.100.8"}) == "127.0.0.1"


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(pdp_factory):
    pdp = pdp_factory(TRUSTED_PROXIES="127.0.0.2/32")
    assert client_ip_seen(pdp, "127.0.0.2", SPOOF_IP) == "198.51.100.7"  # X-Real-IP first
    # X-Forwarded-For: the right-most hop that is not a trusted proxy.
    chain = {"X-Forwarded-For": "203.0.113.1, 198.51.100.9, 127.0.0.2"}
    assert client_ip_seen(pdp, "127.0.0.2", chain) == "198.51.100.9"
    assert client_ip_seen(pdp, "127.0.0.2", {"X-Forwarded-For": "bogus, 198.51.100.9"}) == "198.51.100.9"
    assert client_ip_seen(pdp, "127.0.0.2", {"X-Real-IP": "2001:DB8::0:1"}) == "2001:db8::1"
    # Any other peer is the client itself, whatever it says.
    assert client_ip_seen(pdp, "127.0.0.1", SPOOF_IP) == "127.0.0.1"


def test_a_garbage_x_real_ip_from_a_trusted_proxy_is_400_and_ignored_from_others(pdp_factory):
    pdp = pdp_factory(TRUSTED_PROXIES="127.0.0.2/32")
    for value in (
        '", "burst":777777, "name":"x',
        "198.51.100.7\tx",
        "not-an-ip",
        "1.2.3.4.5",
        "fe80::1%eth0",
        "1" * 4096,
    ):
        status, answer = ask_from(pdp, "127.0.0.2", {"X-Real-IP": value})
        assert status == 400 and answer["content-type"] == PROBLEM, (value, status)
        assert client_ip_seen(pdp, "127.0.0.1", {"X-Real-IP": value}) == "127.0.0.1"


def test_a_lower_case_forwarded_method_is_refused_not_judged_as_upper_case(traefik_pdp):
    # A `get` judged as GET would reach the backend as `get`: methods are case-sensitive.
    assert (
        forward(traefik_pdp, {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/chain/info"}).status_code == 200
    )
    resp = forward(traefik_pdp, {"X-Forwarded-Method": "get", "X-Forwarded-Uri": "/api/v1/chain/info"})
    assert resp.status_code == 400 and resp.headers["content-type"] == PROBLEM
    assert "upper-case" in resp.json()["detail"]


@pytest.mark.parametrize(
    "target", ["/api/v1//chain/info", "/api/v1/./chain/info", "/api/v1/x/../chain/info", "/api/v1/x/%2E%2e/chain/info"]
)
def test_traefik_front_refuses_a_target_the_upstream_would_read_otherwise(traefik_pdp, target):
    """Traefik sends the upstream the client's own target, the policy judges it
    normalized: a target whose segments normalizing changes is a 400, not a
    decision about a path the upstream does not get."""
    public = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": target}
    assert_refused(forward(traefik_pdp, public), "ambiguous_path")
    # The same path, spelled as the upstream gets it, is judged (public: 200); so
    # are escapes that change no segment (%63 is "c").
    assert forward(traefik_pdp, {**public, "X-Forwarded-Uri": "/api/v1/chain/info"}).status_code == 200
    assert forward(traefik_pdp, {**public, "X-Forwarded-Uri": "/api/v1/%63hain/info"}).status_code == 200
