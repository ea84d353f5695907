"""POST /v1/check/batch against the real gunicorn-served PDP (shipped policies,
real redis-server): the same decisions as /v1/check, in order, each item on its
own (a malformed one is its own problem), and quota spent exactly once per
item even though a batch's items are decided concurrently."""

import json

import pytest
import redis
import requests

from pdp.authn.revocation import denylist_key
from tests.quota.pdp_server import check_body, start_pdp, token
from tests.support.processes import ROOT
from tests.support.redis_server import start_redis
from tests.support.waiting import wait_until

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def batch_pdp():
    redis_server = start_redis()
    pdp = start_pdp(
        redis_server.redis_url,
        PDP_WORKERS="1",
        POLICY_DIR=str(ROOT / "policies"),
        REDIS_TIMEOUT_MS="500",
        RATE_LIMIT_REQUESTS_PER_MINUTE="60",
        RATE_LIMIT_BURST_SIZE="3",
        DECISION_LOG="on",
        LOG_LEVEL="info",
    )
    pdp.redis = redis_server
    yield pdp
    pdp.stop()
    redis_server.stop()


def batch(pdp, items, **kwargs):
    return requests.post(pdp.url + "/v1/check/batch", json={"checks": items}, timeout=10, **kwargs)


def decisions(pdp, items):
    reply = batch(pdp, items)
    assert reply.status_code == 200, reply.text
    answers = reply.json()["decisions"]
    assert len(answers) == len(items)
    return answers


def test_items_are_decided_as_alone_and_answered_in_order(batch_pdp):
    bearer = token("bea")
    items = [
        check_body("/api/v1/users/me"),  # anonymous on a protected route
        check_body("/api/v1/users/me", bearer),
        check_body("/api/v1/users/zed", bearer),  # another user's record: admins or zed only
    ]
    answers = decisions(batch_pdp, items)
    assert [(a["allow"], a["status"]) for a in answers] == [(False, 401), (True, 200), (False, 403)]
    alone = requests.post(batch_pdp.url + "/v1/check", json=items[1], timeout=10).json()
    assert set(answers[1]) == set(alone)
    assert answers[1]["headers"] == alone["headers"]
    assert answers[1]["policy_revision"] == alone["policy_revision"]
    assert len({a["decision_id"] for a in answers}) == 3


def test_a_malformed_item_is_its_own_problem_and_the_others_are_decided(batch_pdp):
    bearer = token("mal")
    good = check_body("/api/v1/users/me", bearer)
    answers = decisions(batch_pdp, [good, {"request": []}, "not an object", {**good, "lease": {"want": 0}}, good])
    assert answers[0]["allow"] is True and answers[4]["allow"] is True
    for bad in answers[1:4]:
        assert set(bad) == {"problem"}
        assert bad["problem"]["status"] == 400 and bad["problem"]["title"] == "Bad Request"
        assert bad["problem"]["detail"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b"{}", b'{"checks": {}}', b'{"checks": []}', json.dumps({"checks": [{}] * 65}).encode()],
)
def test_a_body_that_is_not_a_batch_is_a_400_problem(batch_pdp, body):
    reply = requests.post(batch_pdp.url + "/v1/check/batch", data=body, timeout=10)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["status"] == 400


def test_a_batch_larger_than_its_bound_is_413(batch_pdp):
    # 64 items of at most PDP_MAX_BODY_BYTES (64 KiB) each.
    huge = json.dumps({"checks": [check_body("/x")], "pad": "x" * (64 * 65536 + 1)}).encode()
    reply = requests.post(batch_pdp.url + "/v1/check/batch", data=huge, timeout=30)
    assert reply.status_code == 413
    assert reply.headers["content-type"] == PROBLEM


def test_quota_is_spent_once_per_item_when_a_batch_is_decided_concurrently(batch_pdp):
    # Burst 3: eight concurrent decisions of one user admit exactly three.
    bearer = token("quota-batch")
    answers = decisions(batch_pdp, [check_body("/api/v1/users/me", bearer)] * 8)
    assert sorted(a["status"] for a in answers) == [200] * 3 + [429] * 5


def test_a_revoked_token_in_a_batch_is_refused(batch_pdp):
    bearer = token("rev-batch", jti="batch-jti-1")
    live = token("live-batch", jti="batch-jti-2")
    # A bare SET of the key: what the online check reads.
    redis.Redis.from_url(batch_pdp.redis.redis_url).set(denylist_key("", "batch-jti-1"), b"1", ex=600)
    answers = decisions(batch_pdp, [check_body("/api/v1/sessions", bearer), check_body("/api/v1/sessions", live)])
    assert (answers[0]["allow"], answers[0]["status"], answers[0]["reason"]) == (
        False,
        401,
        "invalid_token: token revoked",
    )
    assert answers[1]["allow"] is True


def test_each_item_keeps_its_request_id_and_a_bad_one_is_replaced(batch_pdp):
    bearer = token("rid")
    items = [
        {**check_body("/api/v1/sessions", bearer), "request_id": "batch-item-7"},
        {**check_body("/api/v1/wallets", bearer), "request_id": "bad id\nforged"},
    ]
    decisions(batch_pdp, items)

    def logged():
        lines = [json.loads(line) for line in batch_pdp.output().splitlines() if '"decision_id"' in line]
        return [line for line in lines if line.get("path") in ("/api/v1/sessions", "/api/v1/wallets")] or None

    records = wait_until(lambda: (r := logged()) and len({x["path"] for x in r}) == 2 and r, timeout=10)
    by_path = {r["path"]: r for r in records}
    assert by_path["/api/v1/sessions"]["request_id"] == "batch-item-7"
    assert "\n" not in by_path["/api/v1/wallets"]["request_id"]
    assert by_path["/api/v1/wallets"]["request_id"] != "bad id\nforged"
