"""The PDP's side of quota leases over HTTP: /v1/check with lease.want, and
/v1/lease/return (exact, once). Real PDP on the shipped policies, real Redis."""

import pytest
import requests

from bench import workloads
from tests.support.processes import ROOT


@pytest.fixture(scope="module")
def lease_pdp(redis_server, jwt_secret):
    from tests.support.pdp_process import start_pdp

    server = start_pdp(
        {
            "JWT_SECRET_KEY": jwt_secret,
            "REDIS_URL": redis_server.redis_url,
            "POLICY_DIR": str(ROOT / "policies"),
            "DECISION_LOG": "off",
        },
        workers=1,
    )
    yield server
    server.stop()


def _check(pdp, token, want=None):
    body = {
        "request": {
            "method": "GET",
            "path": "/api/v1/sessions",
            "host": "gw",
            "scheme": "http",
            "client_ip": "127.0.0.1",
            "headers": {"authorization": f"Bearer {token}"},
        }
    }
    if want is not None:
        body["lease"] = {"want": want}
    return requests.post(f"{pdp.url}/v1/check", json=body, timeout=10)


def _remaining(answer) -> int:
    return int(answer.json()["response_headers"]["ratelimit"].split(";r=")[1].split(";")[0])


def test_a_lease_is_granted_capped_and_returned_exactly_once(lease_pdp, jwt_secret):
    token = workloads.mint(jwt_secret, "lease-api-1", plan="free")
    first = _check(lease_pdp, token, want=1000)
    lease = first.json()["lease"]
    # The shipped per-minute bucket (100/min, burst 200) caps it at 5% of 100: 5 units, 4 after this one.
    assert lease["units"] == 4 and lease["ttl_s"] == 1.0
    # The headers say what remains as if this request alone had spent.
    plain = _check(lease_pdp, token)
    assert "lease" not in plain.json()
    assert _remaining(plain) == _remaining(first) - 1 - 4
    back = requests.post(f"{lease_pdp.url}/v1/lease/return", json={"lease": lease["id"], "unused": 4}, timeout=10)
    assert back.json() == {"returned": 4}
    again = requests.post(f"{lease_pdp.url}/v1/lease/return", json={"lease": lease["id"], "unused": 4}, timeout=10)
    assert again.json() == {"returned": 0}
    assert _remaining(_check(lease_pdp, token)) == _remaining(plain) - 1 + 4


def test_more_units_than_reserved_are_never_refunded(lease_pdp, jwt_secret):
    token = workloads.mint(jwt_secret, "lease-api-2", plan="free")
    lease = _check(lease_pdp, token, want=3).json()["lease"]
    assert lease["units"] == 2
    back = requests.post(f"{lease_pdp.url}/v1/lease/return", json={"lease": lease["id"], "unused": 500}, timeout=10)
    assert back.json() == {"returned": 2}


@pytest.mark.parametrize(
    "body", [{"lease": 5}, {"lease": None}, {"lease": {"want": 0}}, {"lease": {"want": "9"}}, {"lease": {"want": True}}]
)
def test_a_malformed_lease_request_is_a_400(lease_pdp, jwt_secret, body):
    full = {"request": {"method": "GET", "path": "/api/v1/sessions"}, **body}
    answer = requests.post(f"{lease_pdp.url}/v1/check", json=full, timeout=10)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"lease": 7, "unused": 1},
        {"lease": "x" * 65, "unused": 1},
        {"lease": "ab", "unused": -1},
        {"lease": "ab", "unused": "1"},
    ],
)
def test_a_malformed_return_is_a_400(lease_pdp, body):
    answer = requests.post(f"{lease_pdp.url}/v1/lease/return", json=body, timeout=10)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_an_unknown_lease_returns_nothing(lease_pdp):
    answer = requests.post(f"{lease_pdp.url}/v1/lease/return", json={"lease": "0" * 32, "unused": 3}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"returned": 0}
