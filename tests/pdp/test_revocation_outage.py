"""Revocations while Redis is down: each worker's local view (pdp/authn/revocation_view.py).

Real redis-server (kill -9, SIGSTOP) and the real PDP under gunicorn.
"""

import signal
import time

import redis

from pdp.authn.revocation import RedisDenylist
from tests.support.redis_server import start_redis
from tests.support.waiting import wait_until as _wait_until

from .test_jwt import decide

PERSIST = ("--appendonly", "yes", "--appendfsync", "always")
GRACE_S = 4.0


def wait_until(predicate, timeout=15.0):
    return _wait_until(predicate, timeout, interval=0.1)


def verdicts(pdp, token, n=6):
    """(allow, status) of n decisions: with 2 workers, both are asked."""
    return {(d["allow"], d["status"]) for d in (decide(pdp, token) for _ in range(n))}


def outage_pdp(pdp_factory, redis_url, **env):
    return pdp_factory(
        workers=2,
        REDIS_URL=redis_url,
        JWT_REVOCATION_OUTAGE_S=GRACE_S,
        JWT_REVOCATION_SYNC_S=0.2,
        JWT_REVOCATION_CACHE_S=0.5,
        **env,
    )


def test_kill9_revoked_stays_refused_valid_served_then_fails_closed(pdp_factory, mint):
    server = start_redis(PERSIST)
    try:
        pdp = outage_pdp(pdp_factory, server.redis_url)
        writer = RedisDenylist(redis.Redis.from_url(server.redis_url))
        revoked, valid = mint("mallory", jti="stolen"), mint("alice", jti="fine")
        writer.revoke("", "stolen", 600)
        wait_until(lambda: verdicts(pdp, revoked) == {(False, 401)})
        time.sleep(0.5)  # both workers synced the revocation into their views
        assert verdicts(pdp, valid) == {(True, 200)}

        server.proc.kill()  # kill -9
        server.proc.wait(5)
        down_at = time.monotonic()
        assert verdicts(pdp, revoked) == {(False, 401)}
        assert verdicts(pdp, valid) == {(True, 200)}
        # a token issued after the outage began is served too, within the bound
        assert verdicts(pdp, mint("bob", jti="new-during-outage")) == {(True, 200)}
        # past JWT_REVOCATION_OUTAGE_S after the last good sync: fail closed
        wait_until(lambda: verdicts(pdp, valid) == {(False, 503)}, timeout=GRACE_S + 5)
        assert time.monotonic() - down_at >= GRACE_S - 0.5
        assert verdicts(pdp, revoked) <= {(False, 401), (False, 503)}

        server = start_redis(PERSIST, port=server.port, workdir=server.workdir)
        wait_until(lambda: verdicts(pdp, valid) == {(True, 200)})
        assert verdicts(pdp, revoked) == {(False, 401)}  # persisted revocation still applies
        # a revocation made elsewhere after the return takes effect in every worker
        RedisDenylist(redis.Redis.from_url(server.redis_url)).revoke("", "fine", 600)
        wait_until(lambda: verdicts(pdp, valid) == {(False, 401)}, timeout=5)
    finally:
        server.stop()


def test_sigstop_answers_from_the_view_and_picks_up_revocations_made_meanwhile(pdp_factory, mint):
    server = start_redis()
    try:
        pdp = outage_pdp(pdp_factory, server.redis_url)
        writer = RedisDenylist(redis.Redis.from_url(server.redis_url))
        revoked, valid, later = mint("m", jti="r1"), mint("a", jti="v1"), mint("b", jti="v2")
        writer.revoke("", "r1", 600)
        wait_until(lambda: verdicts(pdp, revoked) == {(False, 401)})
        time.sleep(0.5)

        server.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                assert verdicts(pdp, revoked, 2) == {(False, 401)}
                assert verdicts(pdp, valid, 2) == {(True, 200)}
        finally:
            server.signal(signal.SIGCONT)
        # written by "another PDP" the moment Redis answers again
        writer.revoke("", "v2", 600)
        wait_until(lambda: verdicts(pdp, later) == {(False, 401)}, timeout=5)
        assert verdicts(pdp, valid) == {(True, 200)}
    finally:
        server.stop()


def test_worker_started_during_the_outage_fails_closed(pdp_factory, mint):
    # no load ever succeeded: no view to trust
    pdp = pdp_factory(REDIS_URL="redis://127.0.0.1:1/0", JWT_REVOCATION_OUTAGE_S=60)
    assert verdicts(pdp, mint("alice", jti="x"), 2) == {(False, 503)}


def test_outage_bound_zero_fails_closed_at_once(pdp_factory, mint):
    server = start_redis()
    try:
        pdp = pdp_factory(REDIS_URL=server.redis_url, JWT_REVOCATION_OUTAGE_S=0)
        token = mint("alice", jti="x")
        assert verdicts(pdp, token, 2) == {(True, 200)}
        server.proc.kill()
        server.proc.wait(5)
        wait_until(lambda: verdicts(pdp, token, 2) == {(False, 503)}, timeout=3)
    finally:
        server.stop()


def test_bad_outage_setting_is_one_startup_line():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "pdp", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "JWT_SECRET_KEY": "k" * 32, "JWT_REVOCATION_OUTAGE_S": "forever"},
    )
    assert out.returncode != 0 and "JWT_REVOCATION_OUTAGE_S" in out.stderr


def test_revocation_lost_by_redis_is_kept_and_written_back(pdp_factory, mint):
    server = start_redis()  # no persistence: a restart loses everything
    try:
        pdp = outage_pdp(pdp_factory, server.redis_url)
        token = mint("mallory", jti="lost-in-restart")
        RedisDenylist(redis.Redis.from_url(server.redis_url)).revoke("", "lost-in-restart", 600)
        wait_until(lambda: verdicts(pdp, token) == {(False, 401)})
        time.sleep(1.0)  # a few view syncs (0.2 s each), so the workers know it before Redis forgets it
        server.proc.kill()
        server.proc.wait(5)
        server = start_redis(port=server.port, workdir=server.workdir)
        client = redis.Redis.from_url(server.redis_url)
        for _ in range(20):  # never admitted, through the restart and after
            assert verdicts(pdp, token, 2) <= {(False, 401), (False, 503)}
            time.sleep(0.1)
        assert verdicts(pdp, token) == {(False, 401)}
        from pdp.authn.revocation import denylist_key

        wait_until(lambda: client.exists(denylist_key("", "lost-in-restart")), timeout=20)
    finally:
        server.stop()


def test_flushall_with_an_empty_stream_is_noticed_and_written_back(pdp_factory, mint):
    """Redis restarted empty, then FLUSHALL: a worker forked after it must still refuse."""
    from pdp.authn.revocation import denylist_key

    server = start_redis()
    try:
        pdp = outage_pdp(pdp_factory, server.redis_url)
        token = mint("mallory", jti="flushed")
        client = redis.Redis.from_url(server.redis_url)
        RedisDenylist(client).revoke("", "flushed", 600)
        wait_until(lambda: verdicts(pdp, token) == {(False, 401)})
        # Those 401s came from Redis itself; give every worker's view a few syncs
        # (JWT_REVOCATION_SYNC_S=0.2) to read the revocation from the stream too.
        time.sleep(1.0)
        client.flushall()
        time.sleep(0.3)
        client.flushall()  # the stream was already gone: only the mark says so
        wait_until(
            lambda: client.exists(denylist_key("", "flushed")), timeout=20
        )  # a 1 s sync; slower on a busy CI machine
    finally:
        server.stop()
