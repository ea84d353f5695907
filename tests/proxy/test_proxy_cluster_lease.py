"""The cluster lease (proxy/cluster.py): every counter a request takes is given back, however it ends."""

import pytest

from proxy.breaker import CLOSED, OPEN, BreakerRejected
from proxy.cluster import Cluster, StreamsFull
from proxy.routes import BreakerSpec, ClusterSpec

HEADERS = [("host", "x")]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def cluster_of(count=2, **spec):
    # Nothing listens on these: a pool only connects when a request asks it to.
    urls = tuple(f"http://127.0.0.1:{9 + i}" for i in range(count))
    return Cluster(ClusterSpec(name="c", endpoints=urls, **spec), Clock())


def counters(cluster):
    return (
        cluster.active_requests,
        cluster.active_retries,
        cluster.streaming_bodies,
        cluster.breaker.concurrent,
        [e.outstanding for e in cluster.endpoints],
    )


IDLE = (0, 0, 0, 0, [0, 0])


def test_a_lease_counts_the_request_and_its_endpoint_until_the_block_ends():
    cluster = cluster_of()
    with cluster.lease(1.0) as lease:
        endpoint = lease.pick(HEADERS)
        assert cluster.active_requests == 1 and cluster.breaker.concurrent == 1
        assert endpoint.outstanding == 1
        lease.answered(True)
        assert endpoint.outstanding == 1  # still relaying the body
    assert counters(cluster) == IDLE


def test_an_exception_in_the_block_gives_everything_back_and_counts_as_a_failure():
    cluster = cluster_of(breaker=BreakerSpec(failure_threshold=1))
    with pytest.raises(RuntimeError):
        with cluster.lease(1.0, streamed_body_limit=4) as lease:
            lease.pick(HEADERS)
            raise RuntimeError("relaying broke")
    assert counters(cluster) == IDLE
    assert cluster.breaker.state == OPEN


def test_a_connect_failure_moves_to_another_endpoint_within_the_attempts():
    cluster = cluster_of(retry_min_concurrency=5)
    with cluster.lease(1.0, retries=1) as lease:
        first = lease.pick(HEADERS)
        lease.failed(connect=True)
        assert first.outstanding == 0 and lease.tried
        assert lease.may_retry() and cluster.active_retries == 1
        second = lease.pick(HEADERS)
        assert second is not first and second.outstanding == 1
        lease.failed(connect=True)
        assert not lease.may_retry()  # its one retry is spent
        assert lease.pick(HEADERS) is None  # both failed it
    assert counters(cluster) == IDLE


def test_retries_stay_within_the_clusters_budget():
    cluster = cluster_of(retry_min_concurrency=1, retry_budget_percent=0)
    with cluster.lease(1.0, retries=3) as one, cluster.lease(1.0, retries=3) as other:
        one.pick(HEADERS)
        one.failed(connect=True)
        assert one.may_retry()
        other.pick(HEADERS)
        other.failed(connect=True)
        assert not other.may_retry()  # one retry in flight is the budget
    assert counters(cluster) == IDLE


def test_a_client_failure_is_held_against_neither_the_endpoint_nor_the_breaker():
    cluster = cluster_of(breaker=BreakerSpec(failure_threshold=1), eject_consecutive=1)
    with cluster.lease(1.0) as lease:
        endpoint = lease.pick(HEADERS)
        lease.client_failed()
        assert endpoint.outstanding == 0
    assert cluster.breaker.state == CLOSED and not endpoint.is_ejected()
    assert counters(cluster) == IDLE


def test_a_5xx_answer_counts_against_the_endpoint_and_the_breaker():
    cluster = cluster_of(count=1, breaker=BreakerSpec(failure_threshold=1), eject_consecutive=1)
    with cluster.lease(1.0) as lease:
        endpoint = lease.pick(HEADERS)
        lease.answered(False)
    assert cluster.breaker.state == OPEN and endpoint.is_ejected()
    assert counters(cluster)[:4] == IDLE[:4]


def test_failures_that_eject_one_endpoint_while_another_serves_leave_the_breaker_closed():
    cluster = cluster_of(breaker=BreakerSpec(failure_threshold=2), eject_consecutive=2)
    failing = cluster.endpoints[0]
    for _ in range(2):
        with cluster.lease(1.0) as lease:
            lease.endpoint = failing  # the requests that land on it (affinity)
            failing.outstanding += 1
            lease.answered(False)
    assert failing.is_ejected() and cluster.healthy_count() == 1
    # Its two failures in a row were its own: the other endpoint still serves.
    assert cluster.breaker.state == CLOSED
    with cluster.lease(1.0) as lease:
        assert lease.pick(HEADERS) is cluster.endpoints[1]
        lease.answered(False)  # one failure of the last endpoint: counted from zero
    assert cluster.breaker.state == CLOSED
    with cluster.lease(1.0) as lease:
        lease.pick(HEADERS)
        lease.answered(False)  # the second ejects the last one: now the cluster is failing
    assert cluster.healthy_count() == 0 and cluster.breaker.state == OPEN
    assert counters(cluster) == IDLE


def test_streamed_bodies_are_limited_and_counted_until_the_lease_ends():
    cluster = cluster_of()
    with cluster.lease(1.0, streamed_body_limit=1):
        assert cluster.streaming_bodies == 1
        with pytest.raises(StreamsFull):
            cluster.lease(1.0, streamed_body_limit=1)
        with cluster.lease(1.0):  # a buffered body is not limited
            pass
    assert counters(cluster) == IDLE


def test_a_refused_lease_takes_nothing():
    cluster = cluster_of(breaker=BreakerSpec(max_concurrent=1, max_pending=0))
    with cluster.lease(1.0):
        with pytest.raises(BreakerRejected):
            cluster.lease(1.0, streamed_body_limit=5)
        assert cluster.streaming_bodies == 0 and cluster.active_requests == 1
    assert counters(cluster) == IDLE


def test_when_every_endpoint_is_ejected_they_are_picked_anyway_in_turn():
    cluster = cluster_of(eject_consecutive=1, breaker=BreakerSpec(failure_threshold=100))
    for endpoint in cluster.endpoints:
        endpoint.record(False)
    assert cluster.healthy_count() == 0
    picked = [cluster.pick(HEADERS) for _ in range(4)]
    assert set(picked) == set(cluster.endpoints) and picked[0] is not picked[1]
    # A request never goes back to an endpoint that failed it, panic or not.
    assert cluster.pick(HEADERS, exclude=cluster.endpoints[:1]) is cluster.endpoints[1]
    assert cluster.pick(HEADERS, exclude=cluster.endpoints) is None


def test_panic_leaves_out_endpoints_the_health_checks_fail_and_can_be_turned_off():
    cluster = cluster_of(eject_consecutive=1)
    for endpoint in cluster.endpoints:
        endpoint.record(False)
    cluster.endpoints[0].healthy = False  # its active checks fail
    assert {cluster.pick(HEADERS) for _ in range(3)} == {cluster.endpoints[1]}
    cluster.endpoints[1].healthy = False
    assert cluster.pick(HEADERS) is None
    strict = cluster_of(eject_consecutive=1, panic_when_all_ejected=False)
    for endpoint in strict.endpoints:
        endpoint.record(False)
    assert strict.pick(HEADERS) is None


def test_a_lone_ejected_instance_serves_again_once_the_breaker_lets_a_probe_through():
    # The sign-in row of docs/reliability.md: the auth cluster's only instance 503s
    # while its database is down, is ejected for 30 s and opens the breaker. Once it
    # is well again, the breaker's probe must reach it, not a 503 for the ejection.
    cluster = cluster_of(count=1, eject_consecutive=2, eject_s=30.0, breaker=BreakerSpec(failure_threshold=2, open_s=1))
    for _ in range(2):
        with cluster.lease(1.0) as lease:
            lease.pick(HEADERS)
            lease.answered(False)
    assert cluster.endpoints[0].is_ejected() and cluster.breaker.state == OPEN
    cluster._clock.now += 1.5  # past open_s, well within the ejection
    with cluster.lease(1.0) as lease:
        assert lease.pick(HEADERS) is cluster.endpoints[0]
        lease.answered(True)
    assert cluster.breaker.state == CLOSED
