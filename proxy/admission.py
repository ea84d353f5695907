"""How many requests of one worker are inside the pipeline at once, and who waits.

Admission.enter() lets a request in when fewer than `max_active` are in,
else it waits its turn (FIFO). While the waits of recent requests exceed
`budget_s` on average, a request that would have to wait is refused at once
(503 with Retry-After): under real overload the proxy sheds before it
queues, instead of after waiting out a deadline. A long closed-loop queue
that keeps moving (1,000 connections on a busy box) waits about as long as
it takes its turn to come round and is not shed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gevent.lock import Semaphore


class Admission:
    def __init__(self, max_active: int, budget_s: float, clock: Callable[[], float] = time.monotonic):
        self._slots = Semaphore(max_active)
        self._budget_s = budget_s
        self._clock = clock
        self._waiting = 0
        self._wait_s = 0.0  # moving average of the wait of requests let in
        self.shed = 0

    def enter(self) -> bool:
        if self._slots.acquire(blocking=False):
            self._wait_s *= 0.9
            return True
        if self._wait_s > self._budget_s:
            self.shed += 1
            return False
        self._waiting += 1
        started = self._clock()
        try:
            # Each wait is bounded too: twice the budget, at least a second.
            admitted = self._slots.acquire(timeout=max(2 * self._budget_s, 1.0))
        finally:
            self._waiting -= 1
        waited = self._clock() - started
        self._wait_s += (waited - self._wait_s) * 0.1
        if not admitted:
            self.shed += 1
        return admitted

    def leave(self) -> None:
        self._slots.release()

    @property
    def waiting(self) -> int:
        return self._waiting
