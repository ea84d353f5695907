"""A circuit breaker: after repeated failures, stop waiting on a dependency for a while.

closed: calls flow; `failure_threshold` consecutive failures open it.
open: every call is refused at once until `open_s` has passed.
half-open: up to `half_open_max` probe calls go through; a probe's success
closes the breaker, any failure opens it again.

The PDP guards Redis with one (pdp/quota); the proxy adds a bulkhead around
one per cluster (proxy/breaker.py).
"""

from __future__ import annotations

import threading
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 5, open_s: float = 1.0, half_open_max: int = 1, clock=time.monotonic):
        self._threshold = max(1, failure_threshold)
        self.open_s = open_s
        self._half_open_max = max(1, half_open_max)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self.state = CLOSED
        self.opened_after = 0  # failures counted when it last opened (for the log line)

    def enter(self) -> bool | None:
        """None: refused now. Otherwise True when this call is a half-open probe."""
        if self.state == CLOSED:
            return False
        with self._lock:
            if self.state == OPEN:
                if self._clock() - self._opened_at < self.open_s:
                    return None
                self.state, self._probes = HALF_OPEN, 0
            if self.state == HALF_OPEN:
                if self._probes >= self._half_open_max:
                    return None
                self._probes += 1
                return True
            return False

    def cancel(self, probe: bool) -> None:
        """An entered call that never ran (refused further on) gives its probe back."""
        if probe:
            with self._lock:
                self._probes = max(0, self._probes - 1)

    def forgive(self, probe: bool = False) -> None:
        """An entered call whose failure was not the dependency's (e.g. one proxy endpoint,
        ejected for it): its probe is given back and the failures counted so far are dropped."""
        with self._lock:
            if probe:
                self._probes = max(0, self._probes - 1)
            if self.state == CLOSED:
                self._failures = 0

    def leave(self, success: bool, probe: bool = False) -> str | None:
        """Records how an entered call ended; returns "opened" or "closed" when it changes the state."""
        if success and self.state == CLOSED and not self._failures and not probe:
            return None  # the hot path: nothing to record
        with self._lock:
            if probe:
                self._probes = max(0, self._probes - 1)
            if success:
                self._failures = 0
                if self.state == HALF_OPEN and probe:
                    self.state = CLOSED
                    return "closed"
                return None
            self._failures += 1
            if self.state == HALF_OPEN or (self.state == CLOSED and self._failures >= self._threshold):
                self.state, self._opened_at = OPEN, self._clock()
                self.opened_after, self._failures = self._failures, 0
                return "opened"
            return None
