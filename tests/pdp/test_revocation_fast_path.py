"""A worker's local revocation view, while fresh, answers "not revoked" without Redis.

Real redis-server; the denylist and views are the PDP's own classes, two of
them standing for two workers. Redis' INFO commandstats counts the EXISTS
calls the online check makes.
"""

import time

import pytest
import redis

from pdp.authn.revocation import RedisDenylist, denylist_key
from pdp.authn.revocation_view import LocalRevocationView
from tests.support.redis_server import start_redis
from tests.support.waiting import wait_until


@pytest.fixture
def server():
    server = start_redis()
    yield server
    server.stop()


def exists_calls(client) -> int:
    return client.info("commandstats").get("cmdstat_exists", {}).get("calls", 0)


def worker(client, fresh_s=0.5, sync_s=0.1):
    view = LocalRevocationView(client, grace_s=120, sync_s=sync_s)
    view.start()
    return RedisDenylist(client, view, fresh_s=fresh_s), view


def test_a_fresh_view_answers_without_a_redis_call_and_sees_other_workers_revocations(server):
    client = redis.Redis.from_url(server.redis_url)
    mine, my_view = worker(client)
    other, other_view = worker(redis.Redis.from_url(server.redis_url))
    try:
        before = exists_calls(client)
        assert not any(mine.is_revoked("iss", f"jti-{i}") for i in range(200))
        assert exists_calls(client) == before  # no online lookup while the view is fresh
        other.revoke("iss", "jti-7", 600)  # another worker (or the sign-in API) revokes
        started = time.monotonic()
        wait_until(lambda: mine.is_revoked("iss", "jti-7"), timeout=5)
        # Within the freshness bound plus one sync: the bound JWT_REVOCATION_CACHE_S promises.
        assert time.monotonic() - started < 0.5 + 0.1 + 0.5
    finally:
        my_view.stop()
        other_view.stop()


def test_a_stale_view_asks_redis_again(server):
    client = redis.Redis.from_url(server.redis_url)
    mine, view = worker(client, fresh_s=0.3, sync_s=30)  # one load at start, no sync after
    try:
        before = exists_calls(client)
        assert not mine.is_revoked("iss", "a")
        assert exists_calls(client) == before
        time.sleep(0.4)
        # Revoked only by the key (no stream entry): only the online lookup can know.
        client.set(denylist_key("iss", "b"), b"1", ex=60)
        assert mine.is_revoked("iss", "b")
        assert exists_calls(client) > before
    finally:
        view.stop()


def test_without_a_freshness_bound_every_check_asks_redis(server):
    client = redis.Redis.from_url(server.redis_url)
    mine, view = worker(client, fresh_s=0.0)
    try:
        before = exists_calls(client)
        for i in range(5):
            mine.is_revoked("iss", f"x{i}")
        assert exists_calls(client) - before == 5
    finally:
        view.stop()


def test_the_pdp_lets_its_view_answer_only_when_told(pdp_factory, mint, redis_server):
    """JWT_REVOCATION_VIEW_ANSWERS: off (default), a bare SET of the key is refused after the
    cache window (test_jwt.py::test_revoked_jti_is_rejected); on, the view answers and only
    revocations made through the PDP's revoke path reach it, within the same window."""
    from pdp.authn.revocation import denylist_key
    from tests.pdp.test_jwt import decide

    pdp = pdp_factory(JWT_REVOCATION_VIEW_ANSWERS="true", JWT_REVOCATION_SYNC_S="0.1")
    client = redis.Redis.from_url(redis_server.redis_url)
    bare = mint("bob", jti="bare-set", iss="https://issuer.example")
    assert decide(pdp, bare)["allow"] is True
    client.set(denylist_key("https://issuer.example", "bare-set"), 1, ex=60)
    time.sleep(1.2)
    assert decide(pdp, bare)["allow"] is True  # the view answered: no Redis lookup saw the key
    revoked = mint("bob", jti="through-the-pdp", iss="https://issuer.example")
    assert decide(pdp, revoked)["allow"] is True
    RedisDenylist(client).revoke("https://issuer.example", "through-the-pdp", 60)
    wait_until(lambda: all(decide(pdp, revoked)["status"] == 401 for _ in range(6)), timeout=5)
