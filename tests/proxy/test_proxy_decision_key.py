"""The key of reused verdicts and leases covers what the decision read and
nothing else: requests differing only in a header the policy does not read
(a tracing header) reuse one decision; a header the policy reads, or the
credential, is always in the key. Real PDP (test fixture policies, whose
/tenant/<t> allow reads X-Tenant), real proxy and upstream."""

import re

import pytest
import requests

from tests.conftest import FIXTURE_POLICIES
from tests.proxy.proxy_helpers import get, start_echo, start_proxy
from tests.support.pdp_process import start_pdp


@pytest.fixture(scope="module")
def chain(redis_server, jwt_secret):
    pdp = start_pdp(
        {
            "JWT_SECRET_KEY": jwt_secret,
            "REDIS_URL": redis_server.redis_url,
            "POLICY_DIR": str(FIXTURE_POLICIES),
            "DECISION_LOG": "off",
        },
        workers=1,
    )
    upstream = start_echo("key")
    proxy = start_proxy(upstream=upstream.url, workers=1, env={"PDP_URL": pdp.url, "ACCESS_LOG": "false"})
    yield pdp, proxy
    for server in (proxy, upstream, pdp):
        server.stop()


def _decisions(pdp) -> float:
    text = requests.get(f"{pdp.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^lucid_pdp_decisions_total\{[^}]*\} (\S+)", text, re.M))


def test_the_pdp_names_the_headers_its_decision_did_not_read(chain, mint):
    pdp, _ = chain
    body = {
        "request": {
            "method": "GET",
            "path": "/tenant/acme",
            "headers": {"x-tenant": "acme", "x-trace": "1", "authorization": f"Bearer {mint()}", "user-agent": "t"},
        }
    }
    answer = requests.post(f"{pdp.url}/v1/check", json=body, timeout=10).json()
    assert answer["allow"] is True
    assert answer["ignores"] == ["user-agent", "x-trace"]


def test_an_unread_header_leaves_the_key_and_a_read_one_stays(chain):
    pdp, proxy = chain
    first = get(proxy.port, "/tenant/acme", {"X-Tenant": "acme", "X-Trace": "0"})
    assert first.status == 200
    before = _decisions(pdp)
    for n in range(1, 20):
        assert get(proxy.port, "/tenant/acme", {"X-Tenant": "acme", "X-Trace": str(n)}).status == 200
    assert _decisions(pdp) == before  # 19 traces, one cached decision
    # The policy reads X-Tenant: another value is another question, and here a deny
    # (401: anonymous, and no other rule allows it).
    assert get(proxy.port, "/tenant/acme", {"X-Tenant": "other", "X-Trace": "x"}).status == 401
    assert _decisions(pdp) == before + 1
