"""How many requests of one worker are inside the pipeline at once, and who waits.

Admission.enter() lets a request in when fewer than `max_active` are in and
nobody is waiting, else it waits its turn, strictly first come, first
served: a leaving request hands its slot to the oldest waiter directly, so a
keep-alive connection whose next request arrives just as a slot frees cannot
jump the queue (with a plain semaphore it did, and at 1,000 connections some
waited seconds while others were served in milliseconds). While the waits of
recent requests exceed `budget_s` on average, a request that would have to
wait is refused at once (503 with Retry-After): under real overload the
proxy sheds before it queues, instead of after waiting out a deadline. A
long closed-loop queue that keeps moving (1,000 connections on a busy box)
waits about as long as it takes its turn to come round and is not shed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gevent.event import Event


class _Turn:
    __slots__ = ("event", "granted")

    def __init__(self):
        self.event = Event()
        self.granted = False


class Admission:
    def __init__(self, max_active: int, budget_s: float, clock: Callable[[], float] = time.monotonic):
        self._max = max_active
        self._active = 0
        self._queue: deque[_Turn] = deque()
        self._budget_s = budget_s
        self._clock = clock
        self._wait_s = 0.0  # moving average of the wait of requests let in
        self.shed = 0

    def enter(self) -> bool:
        if self._active < self._max and not self._queue:
            self._active += 1
            self._wait_s *= 0.9
            return True
        if self._wait_s > self._budget_s:
            self.shed += 1
            return False
        turn = _Turn()
        self._queue.append(turn)
        started = self._clock()
        # Each wait is bounded too: twice the budget, at least a second.
        turn.event.wait(max(2 * self._budget_s, 1.0))
        if not turn.granted:
            self._queue.remove(turn)  # still queued: nothing yields between the wait and here
        waited = self._clock() - started
        self._wait_s += (waited - self._wait_s) * 0.1
        if not turn.granted:
            self.shed += 1
        return turn.granted

    def leave(self) -> None:
        if self._queue:
            turn = self._queue.popleft()  # the slot passes on: the count stays
            turn.granted = True
            turn.event.set()
        else:
            self._active -= 1

    @property
    def waiting(self) -> int:
        return len(self._queue)
