"""The revocation lookup folded into the quota spend (pdp/quota/spend.lua).

A decision that spends quota and must ask Redis whether its token is revoked
does both in one Lua call: one EVALSHA, the EXISTS inside it, and nothing
spent for a revoked token. A decision that spends nothing still asks. Real
redis-server (its INFO commandstats counts the calls) and the real PDP
under gunicorn.
"""

import re
import signal
import threading

import pytest
import redis
import requests

from pdp.authn.revocation import RedisDenylist, denylist_key

from .pdp_server import check_body, start_pdp, token

ONLINE_EVERY_TIME = {"JWT_REVOCATION_CACHE_S": "0", "QUOTA_ANALYTICS": "false", "REDIS_TIMEOUT_MS": "500"}


def calls(client, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def decide(pdp, path: str, bearer: str) -> dict:
    reply = requests.post(pdp.url + "/v1/check", json=check_body(path, bearer), timeout=10)
    assert reply.status_code == 200
    return reply.json()


def local_fallbacks(pdp) -> float:
    text = requests.get(pdp.url + "/metrics", timeout=10).text
    match = re.search(r'^lucid_pdp_quota_fallback_total\{mode="local"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def subject_keys(client, sub: str) -> list:
    return sorted(client.scan_iter(match=f"*user:{sub}*"))


def test_a_spending_decision_looks_its_revocation_up_inside_the_spend(own_redis):
    pdp = start_pdp(own_redis.redis_url, workers=1, **ONLINE_EVERY_TIME)
    client = redis.Redis.from_url(own_redis.redis_url)
    try:
        bearer = token("folded", jti="folded-1")
        assert decide(pdp, "/q/bench", bearer)["allow"]  # warm: scripts loaded
        evalsha, exists = calls(client, "evalsha"), calls(client, "exists")
        answers = [decide(pdp, "/q/bench", bearer) for _ in range(20)]
        assert all(a["allow"] for a in answers)
        # One script call per decision (it was two: the lookup, then the spend),
        # and the lookup did happen in each of them.
        assert calls(client, "evalsha") - evalsha == 20
        assert calls(client, "exists") - exists == 20
    finally:
        pdp.stop()


def test_a_revoked_token_is_401_and_its_spend_spends_nothing(own_redis):
    pdp = start_pdp(own_redis.redis_url, workers=1, **ONLINE_EVERY_TIME)
    client = redis.Redis.from_url(own_redis.redis_url)
    try:
        bearer = token("revoked-by-hand", jti="stolen-1")
        # Written by hand (no stream entry): only the online lookup can know.
        client.set(denylist_key("", "stolen-1"), b"1", ex=600)
        for path in ("/q/bench", "/q/plan", "/q/login"):
            answer = decide(pdp, path, bearer)
            assert (answer["allow"], answer["status"]) == (False, 401), (path, answer)
            assert "revoked" in answer["reason"]
        assert subject_keys(client, "revoked-by-hand") == []  # no counter, no index: nothing spent
        # The same user's other token spends as usual (the check is the token's, not the user's).
        assert decide(pdp, "/q/bench", token("revoked-by-hand", jti="fresh-1"))["allow"]
        assert subject_keys(client, "revoked-by-hand") != []
    finally:
        pdp.stop()


@pytest.mark.parametrize("path", ["/q/none", "/elsewhere"])
def test_a_decision_that_spends_nothing_still_looks_revocation_up(own_redis, path):
    """/q/none is allowed with no quota, /elsewhere denied by the policy (403):
    neither spends, and a revoked token is a 401 in both."""
    pdp = start_pdp(own_redis.redis_url, workers=1, **ONLINE_EVERY_TIME)
    client = redis.Redis.from_url(own_redis.redis_url)
    try:
        live, stolen = token("nospend", jti="live-2"), token("nospend", jti="stolen-2")
        client.set(denylist_key("", "stolen-2"), b"1", ex=600)
        expected = (True, 200) if path == "/q/none" else (False, 403)
        answer = decide(pdp, path, live)
        assert (answer["allow"], answer["status"]) == expected
        answer = decide(pdp, path, stolen)
        assert (answer["allow"], answer["status"]) == (False, 401)
        assert "revoked" in answer["reason"]
    finally:
        pdp.stop()


def test_a_plan_override_does_not_skip_the_lookup(own_redis):
    """An admin's plan override makes the spend answer "evaluate again" before it
    spends; the lookup comes first, so a revoked token is still a 401."""
    pdp = start_pdp(own_redis.redis_url, workers=1, **ONLINE_EVERY_TIME)
    client = redis.Redis.from_url(own_redis.redis_url)
    admin = requests.Session()
    admin.headers["Authorization"] = "Bearer " + token("root", roles=["admin"])
    try:
        reply = admin.put(pdp.url + "/v1/quotas/user:overridden/plan", json={"plan": "pro"}, timeout=10)
        assert reply.status_code in (200, 204), reply.text
        live, stolen = token("overridden", jti="live-3"), token("overridden", jti="stolen-3")
        first = decide(pdp, "/q/plan", live)
        assert first["allow"] and first["response_headers"]["ratelimit-policy"].endswith(";q=5;w=86400")
        client.set(denylist_key("", "stolen-3"), b"1", ex=600)
        answer = decide(pdp, "/q/plan", stolen)
        assert (answer["allow"], answer["status"]) == (False, 401)
        assert decide(pdp, "/q/plan", live)["response_headers"]["ratelimit"].startswith('"plan_daily";r=3;')
    finally:
        pdp.stop()


def test_a_stalled_redis_falls_back_to_the_view(own_redis):
    """The folded call times out: the lookup is done again the denylist's way, its
    offline view answering, so a valid token is served from the local quota; a
    token revoked through the API (the view knows it) is refused, unspent."""
    pdp = start_pdp(
        own_redis.redis_url,
        workers=1,
        JWT_REVOCATION_CACHE_S="0",
        JWT_REVOCATION_SYNC_S="0.1",
        QUOTA_ANALYTICS="false",
    )
    client = redis.Redis.from_url(own_redis.redis_url)
    try:
        live, stolen = token("stalled", jti="live-4"), token("stalled-thief", jti="stolen-4")
        assert decide(pdp, "/q/bench", live)["allow"]
        RedisDenylist(client).revoke("", "stolen-4", 600)  # key, index and stream: the view learns it
        threading.Event().wait(0.5)  # a few syncs of the worker's view
        own_redis.signal(signal.SIGSTOP)
        try:
            served, refused = decide(pdp, "/q/bench", live), decide(pdp, "/q/bench", stolen)
        finally:
            own_redis.signal(signal.SIGCONT)
        assert (served["allow"], served["status"]) == (True, 200)
        assert (refused["allow"], refused["status"]) == (False, 401)
        # Only the served one was spent locally: the revoked one was refused first.
        assert local_fallbacks(pdp) == 1
        assert subject_keys(client, "stalled-thief") == []
    finally:
        pdp.stop()


def test_without_a_view_a_stall_fails_closed_before_any_local_spend(own_redis):
    """JWT_REVOCATION_OUTAGE_S=0: no local view, so when the folded call times out
    the lookup is tried again on its own, fails, and the answer is a 503 (fail
    closed) with nothing spent in the local quota for it."""
    pdp = start_pdp(
        own_redis.redis_url, workers=1, JWT_REVOCATION_CACHE_S="0", JWT_REVOCATION_OUTAGE_S="0", QUOTA_ANALYTICS="false"
    )
    try:
        bearer = token("no-view", jti="live-5")
        assert decide(pdp, "/q/bench", bearer)["allow"]
        own_redis.signal(signal.SIGSTOP)
        try:
            answer = decide(pdp, "/q/bench", bearer)
        finally:
            own_redis.signal(signal.SIGCONT)
        assert (answer["allow"], answer["status"], answer["reason"]) == (False, 503, "auth_unavailable")
        assert local_fallbacks(pdp) == 0
    finally:
        pdp.stop()
