"""/v1/check's client_ip is an address or a 400 problem, never a 500: through the real PDP."""

import json

import pytest
import requests

HOSTILE = [
    '", "burst":777777, "name":"x',
    '1.2.3.4"',
    "1.2.3.4\t",
    "\t",
    "1.2.3.4\r\n",
    "\u2028",
    "\ud800",
    "not-an-ip",
    "1.2.3.4.5",
    "256.1.1.1",
    "fe80::1%eth0",
    '::1%"x',
    "1" * 60000,
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.4,5.6.7.8",
] + [f"1.2.3.4{chr(c)}" for c in range(0x20)]


def check(pdp, client_ip):
    body = {"request": {"method": "GET", "path": "/public/x", "headers": {}, "client_ip": client_ip}}
    # ensure_ascii keeps a lone surrogate as the \ud800 escape, as a client would send it.
    return requests.post(
        pdp.url + "/v1/check", data=json.dumps(body), timeout=10, headers={"Content-Type": "application/json"}
    )


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:24]))
def test_a_client_ip_that_is_not_an_address_is_a_400_problem(pdp, value):
    resp = check(pdp, value)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert "client_ip" in resp.json()["detail"]


@pytest.mark.parametrize("value", ["203.0.113.7", "2001:db8::1", "::ffff:192.0.2.1", ""])
def test_addresses_pass(pdp, value):
    resp = check(pdp, value)
    assert resp.status_code == 200 and resp.json()["allow"] is True


def test_the_pdp_is_still_answering_after_the_hostile_ones(pdp):
    for value in HOSTILE[:5]:
        check(pdp, value)
    assert check(pdp, "127.0.0.1").json()["allow"] is True
