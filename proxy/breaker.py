"""A per-cluster circuit breaker with concurrency and pending limits (one per worker).

closed: requests flow; `failure_threshold` consecutive failures open it.
open: every request is refused at once until `open_s` has passed.
half-open: up to `half_open_max` probes go through; a success closes the
breaker, a failure opens it again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent.lock

if TYPE_CHECKING:
    from .routes import BreakerSpec

log = logging.getLogger("proxy.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class BreakerRejected(Exception):
    """The breaker refused the request (503); `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Breaker:
    def __init__(self, spec: BreakerSpec, clock: Callable[[], float], name: str = "cluster"):
        self._name = name
        self._spec = spec
        self._clock = clock
        self._slots = gevent.lock.Semaphore(spec.max_concurrent)
        self.state = CLOSED
        self.pending = 0
        self.concurrent = 0
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    def acquire(self, wait_s: float) -> bool:
        """Admits a request or raises BreakerRejected. Returns True if it is a half-open probe."""
        probe = False
        if self.state == OPEN:
            if self._clock() - self._opened_at < self._spec.open_s:
                raise BreakerRejected("circuit open")
            self.state = HALF_OPEN
            self._probes = 0
        if self.state == HALF_OPEN:
            if self._probes >= self._spec.half_open_max:
                raise BreakerRejected("circuit half-open, probe in flight")
            self._probes += 1
            probe = True
        if not self._slots.acquire(blocking=False):
            if self.pending >= self._spec.max_pending:
                self._undo_probe(probe)
                raise BreakerRejected("too many pending requests")
            self.pending += 1
            try:
                admitted = self._slots.acquire(timeout=wait_s)
            finally:
                self.pending -= 1
            if not admitted:
                self._undo_probe(probe)
                raise BreakerRejected("too many concurrent requests")
        self.concurrent += 1
        return probe

    def _undo_probe(self, probe):
        if probe:
            self._probes -= 1

    def release(self, success: bool, probe: bool) -> None:
        self.concurrent -= 1
        self._slots.release()
        if probe:
            self._probes -= 1
        if success:
            self._failures = 0
            if self.state == HALF_OPEN and probe:
                self.state = CLOSED
            return
        self._failures += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self._failures >= self._spec.failure_threshold):
            log.warning("circuit for %s opens for %.1fs after %d failure(s)", self._name, self._spec.open_s,
                        self._failures)
            self.state = OPEN
            self._opened_at = self._clock()
            self._failures = 0
