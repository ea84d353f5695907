"""Clusters of upstream endpoints: load balancing, passive ejection, active health checks, leases.

State lives per worker process: each worker balances, ejects and checks on
its own (no shared memory on the hot path). A request holds a cluster through
a `Lease` (`with cluster.lease(...) as lease:`), which owns every counter the
request changes: the breaker slot, the cluster's active requests, retries and
streamed bodies, and the outstanding count of the endpoint it is using.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import gevent

from . import upstream
from .breaker import Breaker

if TYPE_CHECKING:
    import socket

    from .routes import ClusterSpec, HealthCheck

log = logging.getLogger("lucid.proxy.cluster")
_RING_POINTS = 100


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")


class Endpoint:
    """One upstream instance with its pool and health."""

    def __init__(self, url: str, spec: ClusterSpec, clock: Callable[[], float]):
        self.url = url
        self.host, self.port = upstream.split_host_port(url)
        self.authority = upstream.authority(self.host, self.port)  # for a Host header
        self.pool = upstream.make_pool(
            url,
            spec.max_connections,
            spec.timeouts.connect_s,
            spec.timeouts.read_s,
            tls_spec=spec.tls,
            egress=spec.egress,
        )
        self.outstanding = 0
        self.healthy = True  # active checks
        self.ejected_until = 0.0  # passive ejection
        self.ejections = 0
        self._failures = 0
        self._check_failures = 0
        self._check_successes = 0
        self._spec = spec
        self._clock = clock

    def open_connection(self) -> socket.socket:
        """A connection of its own to this endpoint (TLS and egress as the pool's); OSError on failure."""
        return upstream.open_connection(self.pool)

    def available(self, now: float) -> bool:
        return self.healthy and self.ejected_until <= now

    def is_ejected(self) -> bool:
        return self.ejected_until > self._clock()

    def record(self, success: bool) -> None:
        """Passive outlier detection: consecutive connect errors or 5xx eject for a while."""
        if success:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self._spec.eject_consecutive:
            self._failures = 0
            self.ejections += 1
            self.ejected_until = self._clock() + self._spec.eject_s
            log.warning(
                "ejected %s for %.1fs after %d consecutive failures",
                self.url,
                self._spec.eject_s,
                self._spec.eject_consecutive,
            )

    def record_check(self, ok: bool, check: HealthCheck) -> None:
        if ok:
            self._check_failures = 0
            self._check_successes += 1
            if not self.healthy and self._check_successes >= check.healthy_threshold:
                self.healthy = True
                log.warning("health check: %s is healthy again", self.url)
        else:
            self._check_successes = 0
            self._check_failures += 1
            if self.healthy and self._check_failures >= check.unhealthy_threshold:
                self.healthy = False
                log.warning("health check: %s is unhealthy", self.url)


class Cluster:
    """Endpoints of one cluster, the balancer over them, the breaker and the retry budget."""

    def __init__(self, spec: ClusterSpec, clock: Callable[[], float]):
        self.spec = spec
        self.name = spec.name
        self._clock = clock
        self.endpoints = [Endpoint(url, spec, clock) for url in spec.endpoints]
        self.breaker = Breaker(spec.breaker, clock, spec.name)
        self.active_requests = 0
        self.streaming_bodies = 0  # requests streaming a client body too large to buffer
        self.active_retries = 0
        self._next = 0
        self._panicking = False  # every endpoint ejected: sending to them anyway (logged once)
        self._ring = []
        if spec.lb == "consistent_hash":
            points = []
            for index, endpoint in enumerate(self.endpoints):
                for i in range(_RING_POINTS):
                    points.append((_hash64(f"{endpoint.url}#{i}"), index))
            points.sort()
            self._ring = points
            self._ring_keys = [p[0] for p in points]

    def pick(self, headers: Sequence[tuple[str, str]], exclude: Sequence[Endpoint] = ()) -> Endpoint | None:
        """Chooses an available endpoint (None if none): by LB policy, skipping `exclude`."""
        now = self._clock()
        candidates = [e for e in self.endpoints if e.available(now) and e not in exclude]
        if not candidates:
            return self._panic_pick(exclude)
        self._panicking = False
        if len(candidates) == 1:
            return candidates[0]
        lb = self.spec.lb
        if lb == "consistent_hash":
            key = self._affinity_key(headers)
            if key is not None:
                return self._ring_pick(key, now, exclude)
        self._next += 1
        if lb == "least_outstanding":
            start = self._next % len(candidates)
            rotated = candidates[start:] + candidates[:start]
            return min(rotated, key=lambda e: e.outstanding)
        return candidates[self._next % len(candidates)]

    def _panic_pick(self, exclude: Sequence[Endpoint]) -> Endpoint | None:
        """No endpoint is available. If the health checks pass some that are only
        ejected (passively, for their recent errors), send to them in turn: refusing
        would keep a lone instance out for its whole ejection after it recovers (its
        503s while a dependency was down got it ejected), while the breaker already
        stops a cluster that keeps failing. Endpoints the health checks fail, or that
        failed this request, stay out."""
        if not self.spec.panic_when_all_ejected:
            return None
        ejected = [e for e in self.endpoints if e.healthy and e not in exclude]
        if not ejected:
            return None
        if not self._panicking:
            self._panicking = True
            log.warning("cluster %s: every endpoint is ejected; sending to them anyway (panic)", self.name)
        self._next += 1
        return ejected[self._next % len(ejected)]

    def _affinity_key(self, headers):
        if self.spec.hash_header:
            for name, value in headers:
                if name == self.spec.hash_header:
                    return value
        if self.spec.hash_cookie:
            for name, value in headers:
                if name == "cookie":
                    for part in value.split(";"):
                        key, _, val = part.strip().partition("=")
                        if key == self.spec.hash_cookie:
                            return val
        return None

    def _ring_pick(self, key, now, exclude):
        start = bisect.bisect(self._ring_keys, _hash64(key))
        count = len(self._ring)
        for offset in range(count):
            endpoint = self.endpoints[self._ring[(start + offset) % count][1]]
            if endpoint.available(now) and endpoint not in exclude:
                return endpoint
        return None

    def lease(self, wait_s: float, retries: int = 0, streamed_body_limit: int | None = None) -> Lease:
        """One request's hold on this cluster, for a `with` block; see Lease.

        Args:
            wait_s: how long to wait for a breaker slot when all are taken.
            retries: how many connect failures may be retried (0 for a
                non-idempotent request), within the cluster's retry budget.
            streamed_body_limit: set when the request streams a body too large
                to buffer: how many such requests this cluster may have at once.

        Raises:
            StreamsFull: `streamed_body_limit` requests are streaming already.
            BreakerRejected: the breaker refused the request (proxy/breaker.py).

        The counters are taken here, so use the lease in a `with` statement at
        once: leaving the block gives them back.
        """
        streamed = streamed_body_limit is not None
        if streamed:
            if self.streaming_bodies >= streamed_body_limit:
                raise StreamsFull()
            # Counted while it waits for a breaker slot too: it holds its client meanwhile.
            self.streaming_bodies += 1
        try:
            probe = self.breaker.acquire(wait_s)
        except BaseException:
            if streamed:
                self.streaming_bodies -= 1
            raise
        self.active_requests += 1
        return Lease(self, probe, retries, streamed)

    def _within_retry_budget(self) -> bool:
        """Retry budget: retries in flight stay under a share of active requests."""
        budget = max(self.spec.retry_min_concurrency, self.spec.retry_budget_percent / 100.0 * self.active_requests)
        return self.active_retries < budget

    def healthy_count(self) -> int:
        now = self._clock()
        return sum(1 for e in self.endpoints if e.available(now))

    def start_health_checks(self, head_for: Callable[[Endpoint, str], bytes]) -> gevent.Greenlet | None:
        """Spawns a greenlet that probes every endpoint each interval; returns it (or None)."""
        check = self.spec.health_check
        if check is None:
            return None

        def loop():
            while True:
                jobs = [
                    gevent.spawn(self._probe, endpoint, check, head_for(endpoint, check.path))
                    for endpoint in self.endpoints
                ]
                gevent.joinall(jobs, timeout=check.timeout_s + 1)
                gevent.sleep(check.interval_s)

        return gevent.spawn(loop)

    def _probe(self, endpoint, check, head):
        try:
            status, _, _ = upstream.simple_request(endpoint.pool, head, b"", check.timeout_s)
            ok = 200 <= status < 300
        except (upstream.UpstreamTimeout, upstream.UpstreamBroken, upstream.ConnectFailed, OSError):
            ok = False
        endpoint.record_check(ok, check)


class StreamsFull(Exception):
    """The cluster has as many requests streaming their bodies as it may (503)."""


class Lease:
    """One request's hold on a cluster, from taking a breaker slot to giving it back.

    Taken by `Cluster.lease` (which takes the breaker slot and counts the request)
    and used as a context manager; leaving the block gives back everything the
    request counted, whatever happened:

        with cluster.lease(connect_s, retries) as lease:
            endpoint = lease.pick(headers)      # counted as outstanding on it
            ... on a connect error: lease.failed(); retry if lease.may_retry()
            ... on a response: lease.answered(status < 500)

    The breaker hears a success only from `answered(True)` or `client_failed()`;
    a request that ends any other way counts as a failure.
    """

    __slots__ = (
        "_cluster",
        "_probe",
        "_retries_left",
        "_retrying",
        "_streamed",
        "_tried",
        "_success",
        "_excused",
        "endpoint",
    )

    def __init__(self, cluster: Cluster, probe: bool, retries: int, streamed: bool):
        self._cluster = cluster
        self._probe = probe
        self._retries_left = retries
        self._retrying = False
        self._streamed = streamed
        self._tried = ()  # endpoints that failed to connect (a list once there is one)
        self._success = False
        self._excused = False  # failed on an endpoint that was then ejected while others serve
        self.endpoint = None  # the endpoint in use, counted in its `outstanding`

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:  # no *args: no tuple per request
        cluster = self._cluster
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.outstanding -= 1
            self.endpoint = None
        if self._streamed:
            cluster.streaming_bodies -= 1
        cluster.active_requests -= 1
        if self._retrying:
            cluster.active_retries -= 1
        if self._excused and not self._success:
            cluster.breaker.excuse(self._probe)
        else:
            cluster.breaker.release(self._success, self._probe)

    @property
    def tried(self) -> bool:
        """Whether an endpoint has failed to connect for this request already."""
        return bool(self._tried)

    def pick(self, headers: Sequence[tuple[str, str]]) -> Endpoint | None:
        """An available endpoint that has not failed this request (None if none), now counted as in use."""
        if self.endpoint is not None:
            self._put_down()
        endpoint = self._cluster.pick(headers, exclude=self._tried)
        if endpoint is not None:
            endpoint.outstanding += 1
            self.endpoint = endpoint
        return endpoint

    def failed(self, connect: bool = False) -> None:
        """The endpoint in use failed (a connect error, a timeout, a broken exchange).

        It counts towards the endpoint's ejection; `connect` failures also keep
        this request from picking it again.
        """
        endpoint = self.endpoint
        self._put_down()
        self._record_failure(endpoint)
        if connect:
            if not self._tried:
                self._tried = []
            self._tried.append(endpoint)

    def may_retry(self) -> bool:
        """After a connect failure: whether to try another endpoint (attempts left, within the budget)."""
        cluster = self._cluster
        if self._retries_left <= 0 or not cluster._within_retry_budget():
            return False
        self._retries_left -= 1
        if not self._retrying:
            self._retrying = True
            cluster.active_retries += 1
        return True

    def client_failed(self) -> None:
        """The client, not the upstream, broke the exchange (its body): neither is held against the endpoint."""
        self._put_down()
        self._success = True

    def answered(self, success: bool) -> None:
        """The endpoint answered; `success` (not a 5xx) is what its ejection and the breaker learn."""
        if success:
            self.endpoint.record(True)
        else:
            self._record_failure(self.endpoint)
        self._success = success

    def _record_failure(self, endpoint: Endpoint) -> None:
        endpoint.record(False)
        # One instance failing gets itself ejected; while others still serve, the
        # cluster is not failing, so its failures must not open the cluster's breaker,
        # which would refuse the healthy instances too (one resetting instance of two
        # took its cluster down for the breaker's whole open_s).
        if endpoint.is_ejected() and self._cluster.healthy_count() > 0:
            self._excused = True

    def _put_down(self) -> None:
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.outstanding -= 1
            self.endpoint = None
