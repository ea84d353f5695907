"""Redis in trouble: stalls cost at most about the timeout, fail modes, the local
fallback's bound (limit x workers), the circuit breaker and the re-sync."""

import signal
import threading
import time

import requests

from pdp.redis_client import connect

from .conftest import STALL_TIMEOUT_S, descriptor, warm_up
from .pdp_server import check_body, start_pdp, token


def timed(service, descriptors):
    started = time.monotonic()
    verdict = service.spend(descriptors, {})
    return verdict, time.monotonic() - started


def test_stalled_redis_costs_about_the_timeout_then_the_breaker_opens(own_redis, make_service, metrics):
    service = make_service(own_redis.redis_url, STALL_TIMEOUT_S, metrics=metrics)
    d = [descriptor(limit=1000, burst=1000)]
    warm_up(service, d)
    value = metrics.registry.get_sample_value
    errors_before = value("lucid_pdp_quota_redis_errors_total", {"error": "TimeoutError"}) or 0
    opens_before = value("lucid_pdp_quota_breaker_opens_total") or 0
    own_redis.signal(signal.SIGSTOP)
    try:
        results = [timed(service, d) for _ in range(20)]
    finally:
        own_redis.signal(signal.SIGCONT)
    assert all(v.allowed and v.source == "fallback" for v, _ in results)
    assert max(seconds for _, seconds in results) < 0.5  # a behaviour bound, not a benchmark
    # Only the calls before the breaker opened waited for Redis (threshold 3).
    errors = value("lucid_pdp_quota_redis_errors_total", {"error": "TimeoutError"}) - errors_before
    assert 1 <= errors <= 3
    assert value("lucid_pdp_quota_breaker_opens_total") - opens_before == 1


def test_stalled_cluster_node_costs_at_most_about_the_timeout(redis_cluster, make_service):
    service = make_service(redis_cluster.url, STALL_TIMEOUT_S)
    d = [descriptor(limit=1000, burst=1000)]
    warm_up(service, d)
    client = connect(redis_cluster.url, 2.0)
    node = client.get_node_from_key(service.keys.counter("user:alice", d[0]["name"], "token_bucket", 0)[0])
    slot_owner = next(s for s in redis_cluster.servers if s.port == node.port)
    client.close()
    slot_owner.signal(signal.SIGSTOP)
    try:
        results = [timed(service, d) for _ in range(10)]
    finally:
        slot_owner.signal(signal.SIGCONT)
    assert all(v.allowed and v.source == "fallback" for v, _ in results)
    assert max(seconds for _, seconds in results) < 0.5


def test_local_fallback_admits_at_most_limit_times_workers(own_redis, make_service):
    own_redis.stop()  # Redis is down for the whole test
    workers = [make_service(own_redis.redis_url, STALL_TIMEOUT_S) for _ in range(2)]
    d = [descriptor(limit=1, window_s=86400, burst=100)]
    admitted = [0, 0]
    for i in range(400):
        verdict = workers[i % 2].spend(d, {})
        assert verdict.source == "fallback"
        admitted[i % 2] += verdict.allowed
    assert admitted == [100, 100]  # each worker enforces the limit on its own
    assert sum(admitted) <= 100 * len(workers)


def test_local_fallback_keeps_rejections_all_or_nothing(own_redis, make_service):
    own_redis.stop()
    service = make_service(own_redis.redis_url, STALL_TIMEOUT_S)
    wide = descriptor(name="wide", limit=1, window_s=86400, burst=50)
    narrow = descriptor(name="narrow", limit=1, window_s=86400, burst=1)
    assert service.spend([wide, narrow], {}).allowed
    assert service.spend([wide, narrow], {}).status == 429
    verdict = service.spend([wide], {})
    assert dict((x.name, o.remaining) for x, o in verdict.details)["wide"] == 48


def test_fail_mode_closed_answers_503_and_open_allows_uncounted(own_redis, make_service, metrics):
    own_redis.stop()
    service = make_service(own_redis.redis_url, STALL_TIMEOUT_S, metrics=metrics)
    closed = service.spend([descriptor(fail_mode="closed")], {})
    assert (closed.allowed, closed.status, closed.reason) == (False, 503, "quota_unavailable")
    assert closed.response_headers["retry-after"] == "1"
    opened = [service.spend([descriptor(limit=1, burst=1, fail_mode="open")], {}) for _ in range(3)]
    assert all(v.allowed and v.details[0][1] is None for v in opened)
    # A closed descriptor in shadow mode does not take the request down.
    assert service.spend([descriptor(name="s", fail_mode="closed", shadow=True)], {}).allowed
    fallbacks = {
        mode: metrics.registry.get_sample_value("lucid_pdp_quota_fallback_total", {"mode": mode})
        for mode in ("closed", "open")
    }
    assert fallbacks == {"closed": 2, "open": 3}


def test_redis_return_resyncs_what_was_spent_locally(own_redis, make_service):
    service = make_service(own_redis.redis_url, STALL_TIMEOUT_S)
    d = [descriptor(limit=1, window_s=86400, burst=100)]
    for _ in range(10):
        assert service.spend(d, {}).allowed
    own_redis.signal(signal.SIGSTOP)
    try:
        local = [service.spend(d, {}) for _ in range(30)]
    finally:
        own_redis.signal(signal.SIGCONT)
    assert all(v.allowed and v.source == "fallback" for v in local)
    # After the breaker's reset timeout, one trial call closes it and re-syncs.
    calls = 40
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        calls += 1
        if service.spend(d, {}).source == "redis":
            break
        time.sleep(0.02)
    verdict = service.spend(d, {})
    calls += 1
    assert verdict.source == "redis"
    remaining = verdict.details[0][1].remaining
    # Every call was admitted and is in Redis now, exactly once: the (up to 3) calls
    # that timed out ran in Redis when it woke up and were not re-synced again.
    assert remaining == 100 - calls


def test_admin_reads_wait_out_a_stall_that_fails_decisions_fast(own_redis):
    """The admin API and page read Redis on the control-plane client (500 ms), so a
    250 ms stall delays an operator's read instead of turning it into a 503; the
    decision path keeps its 20 ms timeout (REDIS_TIMEOUT_MS's default)."""
    pdp = start_pdp(own_redis.redis_url, workers=1)
    try:
        admin = requests.Session()
        admin.headers["Authorization"] = "Bearer " + token("root", roles=["admin"])
        reply = requests.post(pdp.url + "/v1/check", json=check_body("/q/bucket", token("stella")), timeout=10)
        assert reply.json()["allow"]
        assert admin.get(pdp.url + "/v1/quotas/user:stella", timeout=10).status_code == 200
        for path in ("/v1/quotas/user:stella", "/v1/quotas/analytics", "/ui/api/quotas"):
            own_redis.signal(signal.SIGSTOP)
            resume = threading.Timer(0.25, own_redis.signal, (signal.SIGCONT,))
            resume.start()
            try:
                reply = admin.get(pdp.url + path, timeout=10)
            finally:
                resume.join()
            assert reply.status_code == 200, (path, reply.text)
        doc = admin.get(pdp.url + "/v1/quotas/user:stella", timeout=10).json()
        assert doc["quotas"][0]["remaining"] == 99  # read, never spent
    finally:
        pdp.stop()
