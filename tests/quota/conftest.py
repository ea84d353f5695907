"""Fixtures of the quota suite: real redis-server processes (single and Cluster)."""

import itertools
import signal
import time

import pytest
from redis.cluster import RedisCluster

from pdp.quota.metrics import QuotaMetrics
from pdp.quota.service import QuotaService
from pdp.redis_client import connect
from servicekit.breaker import CircuitBreaker
from tests.support.redis_server import start_redis

from .redis_cluster import RedisCluster3

# Functional tests must not trip over a busy shared machine: a generous timeout.
# The outage tests pass REDIS_TIMEOUT_MS's default, 20 ms, themselves.
FUNCTIONAL_TIMEOUT_S = 1.0
STALL_TIMEOUT_S = 0.02


@pytest.fixture(scope="session")
def redis_single():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def own_redis():
    """A Redis this test may stop, freeze or kill."""
    server = start_redis()
    yield server
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    cluster = RedisCluster3()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def redis_url(request):
    """Each test that takes it runs against a single server and a 3-master Cluster."""
    if request.param == "single":
        return request.getfixturevalue("redis_single").redis_url
    return request.getfixturevalue("redis_cluster").url


@pytest.fixture
def redis_client(redis_url):
    # A roomier timeout for the test's own calls; the service under test gets 20 ms.
    client = connect(redis_url, 2.0)
    if isinstance(client, RedisCluster):
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushall()
    yield client
    client.close()


class FakeClock:
    """The wall clock the service reads, moved by the test (time itself is real)."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock(1_800_000_000.0)  # 2027-01-15T08:00:00Z


_names = itertools.count()


@pytest.fixture
def make_service(redis_url, redis_client, clock):
    """Builds QuotaServices on the test's freshly flushed Redis (one per simulated worker)."""
    made = []

    def make(url=None, timeout_s=FUNCTIONAL_TIMEOUT_S, **kwargs):
        client = connect(url or redis_url, timeout_s)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("breaker", CircuitBreaker(failure_threshold=3, open_s=0.3))
        service = QuotaService(client, **kwargs)
        made.append(client)
        return service

    yield make
    for client in made:
        client.close()


@pytest.fixture
def metrics():
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    m = QuotaMetrics(registry)
    m.registry = registry
    return m


def descriptor(
    name="per_user_minute",
    key="user:alice",
    limit=100,
    window_s=60,
    burst=None,
    cost=1,
    algorithm="token_bucket",
    shadow=False,
    fail_mode="local",
):
    return {
        "name": name,
        "key": key,
        "limit": limit,
        "window_s": window_s,
        "burst": limit if burst is None else burst,
        "cost": cost,
        "algorithm": algorithm,
        "shadow": shadow,
        "fail_mode": fail_mode,
    }


def warm_up(service, descriptors, timeout=5.0):
    """Spends until an answer comes from Redis (the first call loads the script)."""
    assert wait_until(lambda: service.spend(descriptors, {}).source == "redis", timeout)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
