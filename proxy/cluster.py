"""Clusters of upstream endpoints: load balancing, passive ejection, active health checks.

State lives per worker process: each worker balances, ejects and checks on
its own (no shared memory on the hot path).
"""
import bisect
import hashlib
import logging

import gevent

from . import upstream
from .breaker import Breaker

log = logging.getLogger("lucid.proxy.cluster")
_RING_POINTS = 100


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")


class Endpoint:
    """One upstream instance with its pool and health."""

    def __init__(self, url, spec, clock):
        self.url = url
        self.host, self.port = upstream.split_host_port(url)
        self.pool = upstream.make_pool(url, spec.max_connections, spec.timeouts.connect_s, spec.timeouts.read_s,
                                       tls_spec=spec.tls, egress=spec.egress)
        self.outstanding = 0
        self.healthy = True  # active checks
        self.ejected_until = 0.0  # passive ejection
        self.ejections = 0
        self._failures = 0
        self._check_failures = 0
        self._check_successes = 0
        self._spec = spec
        self._clock = clock

    def open_connection(self):
        """A connection of its own to this endpoint (TLS and egress as the pool's); OSError on failure."""
        return upstream.open_connection(self.pool)

    def available(self, now) -> bool:
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
            log.warning("ejected %s for %.1fs after %d consecutive failures",
                        self.url, self._spec.eject_s, self._spec.eject_consecutive)

    def record_check(self, ok: bool, check) -> None:
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

    def __init__(self, spec, clock):
        self.spec = spec
        self.name = spec.name
        self._clock = clock
        self.endpoints = [Endpoint(url, spec, clock) for url in spec.endpoints]
        self.breaker = Breaker(spec.breaker, clock, spec.name)
        self.active_requests = 0
        self.streaming_bodies = 0  # requests streaming a client body too large to buffer
        self.active_retries = 0
        self._next = 0
        self._ring = []
        if spec.lb == "consistent_hash":
            points = []
            for index, endpoint in enumerate(self.endpoints):
                for i in range(_RING_POINTS):
                    points.append((_hash64(f"{endpoint.url}#{i}"), index))
            points.sort()
            self._ring = points
            self._ring_keys = [p[0] for p in points]

    def pick(self, headers, exclude=()):
        """Chooses an available endpoint (None if none): by LB policy, skipping `exclude`."""
        now = self._clock()
        candidates = [e for e in self.endpoints if e.available(now) and e not in exclude]
        if not candidates:
            return None
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

    def may_retry(self) -> bool:
        """Retry budget: retries in flight stay under a share of active requests."""
        budget = max(self.spec.retry_min_concurrency,
                     self.spec.retry_budget_percent / 100.0 * self.active_requests)
        return self.active_retries < budget

    def healthy_count(self) -> int:
        now = self._clock()
        return sum(1 for e in self.endpoints if e.available(now))

    def start_health_checks(self, head_for):
        """Spawns a greenlet that probes every endpoint each interval; returns it (or None)."""
        check = self.spec.health_check
        if check is None:
            return None

        def loop():
            while True:
                jobs = [gevent.spawn(self._probe, endpoint, check, head_for(endpoint, check.path))
                        for endpoint in self.endpoints]
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
