"""A circuit breaker for Redis: after repeated errors, stop waiting on it for a while."""
from __future__ import annotations

import threading
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive errors; after
    ``reset_timeout_s`` one trial call goes through (half-open): success closes
    the breaker, failure opens it again."""

    def __init__(self, failure_threshold: int = 5, reset_timeout_s: float = 1.0,
                 monotonic=time.monotonic):
        self._threshold = max(1, failure_threshold)
        self._reset_timeout_s = reset_timeout_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self.state = CLOSED

    def allow(self) -> bool:
        """True when a Redis call may be tried now."""
        if self.state == CLOSED:
            return True
        with self._lock:
            if self.state == OPEN and self._monotonic() - self._opened_at >= self._reset_timeout_s:
                self.state = HALF_OPEN  # this caller is the one trial
                return True
            return False

    def success(self) -> bool:
        """Records a good call; returns True when this closes an open breaker."""
        if self.state == CLOSED and not self._failures:
            return False
        with self._lock:
            recovered = self.state != CLOSED
            self.state, self._failures = CLOSED, 0
            return recovered

    def failure(self) -> bool:
        """Records a failed call; returns True when this opens the breaker."""
        with self._lock:
            self._failures += 1
            if self.state == HALF_OPEN or (self.state == CLOSED
                                           and self._failures >= self._threshold):
                opened = self.state == CLOSED
                self.state, self._opened_at = OPEN, self._monotonic()
                return opened
            return False
