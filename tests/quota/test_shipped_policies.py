"""The shipped policies' quotas (policies/gateway/quotas.rego) spent by the real PDP."""

import pytest
import requests

from tests.support.processes import ROOT
from tests.support.redis_server import start_redis

from .pdp_server import check_body, start_pdp, token

SHIPPED = ROOT / "policies"


@pytest.fixture(scope="module")
def shipped_pdp():
    if not (SHIPPED / "gateway" / "quotas.rego").exists():
        pytest.skip("shipped quota policy not present")
    redis_server = start_redis()
    pdp = start_pdp(
        redis_server.redis_url,
        PDP_WORKERS="1",
        POLICY_DIR=str(SHIPPED),
        REDIS_TIMEOUT_MS="500",
        RATE_LIMIT_REQUESTS_PER_MINUTE="60",
        RATE_LIMIT_BURST_SIZE="3",
    )
    yield pdp
    pdp.stop()
    redis_server.stop()


def check(pdp, path, bearer=None, method="GET"):
    body = check_body(path, bearer)
    body["request"]["method"] = method
    reply = requests.post(pdp.url + "/v1/check", json=body, timeout=10)
    assert reply.status_code == 200
    return reply.json()


def test_environment_burst_limits_a_user(shipped_pdp):
    bearer = token("quinn")
    answers = [check(shipped_pdp, "/api/v1/users/me", bearer) for _ in range(4)]
    assert [a["status"] for a in answers] == [200, 200, 200, 429]
    assert answers[0]["response_headers"]["ratelimit-policy"] == '"user_per_minute";q=60;w=60'
    assert answers[-1]["response_headers"]["retry-after"] == "1"


def test_plan_override_changes_the_shipped_plan_quotas(shipped_pdp):
    admin = {"Authorization": "Bearer " + token("root", roles=["admin"])}
    check(shipped_pdp, "/api/v1/users/me", token("rita"))

    def limits():
        doc = requests.get(shipped_pdp.url + "/v1/quotas/user:rita", headers=admin, timeout=10).json()
        return {q["name"]: q["limit"] for q in doc["quotas"]}

    assert limits()["plan_daily"] == 1000  # free
    reply = requests.put(shipped_pdp.url + "/v1/quotas/user:rita/plan", headers=admin, json={"plan": "pro"}, timeout=10)
    assert reply.status_code == 200
    check(shipped_pdp, "/api/v1/users/me", token("rita"))
    # The counters are per (name, key): the pro limits apply to the same counters.
    assert limits()["plan_daily"] == 20000 and limits()["plan_monthly"] == 500000
