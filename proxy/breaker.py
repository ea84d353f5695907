"""A cluster's circuit breaker (servicekit/breaker.py) plus a bulkhead: at most
`max_concurrent` requests at once, `max_pending` more waiting (one per worker)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent.lock

from servicekit.breaker import CLOSED, HALF_OPEN, OPEN, STATE_VALUES, CircuitBreaker

if TYPE_CHECKING:
    from .routes import BreakerSpec

__all__ = ["Breaker", "BreakerRejected", "CLOSED", "HALF_OPEN", "OPEN", "STATE_VALUES"]

log = logging.getLogger("lucid.proxy.breaker")


class BreakerRejected(Exception):
    """The breaker refused the request (503); `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Breaker:
    def __init__(self, spec: BreakerSpec, clock: Callable[[], float], name: str = "cluster"):
        self._name = name
        self._circuit = CircuitBreaker(spec.failure_threshold, spec.open_s, spec.half_open_max, clock)
        self._slots = gevent.lock.Semaphore(spec.max_concurrent)
        self._max_pending = spec.max_pending
        self.pending = 0
        self.concurrent = 0

    @property
    def state(self) -> str:
        return self._circuit.state

    def acquire(self, wait_s: float) -> bool:
        """Admits a request or raises BreakerRejected. Returns True if it is a half-open probe."""
        probe = self._circuit.enter()
        if probe is None:
            raise BreakerRejected(
                "circuit open" if self._circuit.state == OPEN else "circuit half-open, probe in flight"
            )
        if not self._slots.acquire(blocking=False):
            if self.pending >= self._max_pending:
                self._circuit.cancel(probe)
                raise BreakerRejected("too many pending requests")
            self.pending += 1
            try:
                admitted = self._slots.acquire(timeout=wait_s)
            finally:
                self.pending -= 1
            if not admitted:
                self._circuit.cancel(probe)
                raise BreakerRejected("too many concurrent requests")
        self.concurrent += 1
        return probe

    def excuse(self, probe: bool) -> None:
        """A failure that ejected its endpoint while others serve: not the cluster's.
        Neither counted nor the failures before it (they were that endpoint's)."""
        self.concurrent -= 1
        self._slots.release()
        self._circuit.forgive(probe)

    def release(self, success: bool, probe: bool) -> None:
        self.concurrent -= 1
        self._slots.release()
        if self._circuit.leave(success, probe) == "opened":
            log.warning(
                "circuit for %s opens for %.1fs after %d failure(s)",
                self._name,
                self._circuit.open_s,
                self._circuit.opened_after,
            )
