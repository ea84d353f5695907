"""Usage analytics flushed into a real Redis, single server and Cluster: counts
of several flushes and workers add up, the busiest keys are kept, and a flush
leaves no key of its own behind."""

from redis.cluster import RedisCluster

from pdp.quota.analytics import UsageAnalytics
from pdp.quota.keys import KeySpace

from .conftest import FakeClock

MINUTE_START = 1_800_000_000.0  # a minute boundary: all flushes of a test land in one minute


def _analytics(redis_client, keep: int = 1000) -> UsageAnalytics:
    return UsageAnalytics(redis_client, KeySpace(), clock=FakeClock(MINUTE_START), keep_per_minute=keep)


def _all_keys(redis_client) -> list[str]:
    nodes = {"target_nodes": RedisCluster.PRIMARIES} if isinstance(redis_client, RedisCluster) else {}
    return [k.decode() for k in redis_client.keys("*", **nodes)]


def _spend(analytics: UsageAnalytics, key: str, cost: int, name: str = "read", result: str = "allowed") -> None:
    analytics.record({key: cost}, [(name, result)])


def test_counts_of_several_flushes_and_workers_add_up(redis_client):
    worker_a, worker_b = _analytics(redis_client), _analytics(redis_client)
    for n in range(300):
        _spend(worker_a, f"user:u{n}", 1)
    _spend(worker_a, "user:hot", 5)
    _spend(worker_a, "user:hot", 2, result="rejected")
    worker_a.flush()
    _spend(worker_b, "user:hot", 3)
    _spend(worker_b, "user:u7", 4)
    worker_b.flush()
    worker_a.flush()  # nothing pending: no change

    report = worker_a.report(redis_client, top_n=3, window_s=60)
    assert report["top_keys"] == [{"key": "user:hot", "spent": 10}, {"key": "user:u7", "spent": 5}] + [
        report["top_keys"][2]
    ]
    assert report["top_keys"][2]["spent"] == 1
    assert report["descriptors"] == {"read": {"allowed": 303, "rejected": 1}}


def test_the_busiest_keys_are_kept_and_no_flush_key_is_left(redis_client):
    analytics = _analytics(redis_client, keep=10)
    for n in range(50):
        _spend(analytics, f"user:u{n}", n + 1)
    analytics.flush()

    top = analytics.report(redis_client, top_n=100, window_s=60)["top_keys"]
    assert [k["key"] for k in top] == [f"user:u{n}" for n in range(49, 39, -1)]
    keys = _all_keys(redis_client)
    assert keys and not [k for k in keys if "incoming" in k]
