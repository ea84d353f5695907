"""Concurrent decisions of one worker sent together: POST /v1/check/batch.

A decision joins the queue. While fewer than `slots` batches are in flight, a
sender greenlet is started; on its first turn (every greenlet already runnable
has had its turn to join by then) it takes up to `max_items` queued decisions
and sends them in one exchange, then goes on while the queue is not empty.
Under light load that is a batch of one, as without batching; when every slot
is busy the queue grows and the next batch takes it: the more load, the fewer
exchanges per decision, on both sides (the PDP decides a batch's items
concurrently, and their Redis calls share round trips).

One batch in flight per worker is the default: measured on the mixed
workload (10,000 users), it made batches of 15 instead of 9 and cost the PDP
less per decision than two (docs/benchmarks.md). One slow exchange (a PDP
worker stopped or in a long pause) would then hold up every decision of the
worker until its deadline, so when every batch in flight has been out longer
than `stall_s` and a decision has waited that long in the queue, one more
sender starts, on another pooled connection, up to `max_slots`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gevent.event import Event

from .pdp_errors import PdpUnavailable


class BatchUnsupported(PdpUnavailable):
    """The PDP has no /v1/check/batch (an older version): ask one decision at a time."""

    def __init__(self, message: str):
        super().__init__(message, "status")


class _Pending:
    __slots__ = ("body", "done", "answer", "error", "sent", "dropped")

    def __init__(self, body: bytes):
        self.body = body
        self.done = Event()
        self.answer = None
        self.error = None
        self.sent = False  # taken into a batch
        self.dropped = False  # its caller stopped waiting before that: never sent


class PdpBatcher:
    """exchange(bodies) -> one answer dict per body, in order (raises PdpUnavailable);
    spawn starts a greenlet (gevent.spawn); on_batch(n) is told each batch's size,
    on_stall() each extra sender started for a stall;
    slots batches in flight normally, up to max_slots while the
    ones in flight have all been out longer than stall_s."""

    def __init__(
        self,
        exchange: Callable[[list], list],
        max_items: int,
        slots: int,
        spawn: Callable,
        on_batch: Callable[[int], None] | None = None,
        *,
        max_slots: int,
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_stall: Callable[[], None] | None = None,
    ):
        self._exchange = exchange
        self._max = max_items
        self._slots = slots
        self._max_slots = max(slots, max_slots)
        self._stall_s = stall_s
        self._clock = clock
        self._spawn = spawn
        self._on_batch = on_batch
        self._on_stall = on_stall
        self._queue: deque = deque()
        self._senders = 0
        self._sent_at: dict[int, float] = {}  # batches in an exchange right now: when each went out

    def ask(self, body: bytes, queue_s: float, deadline_s: float) -> dict:
        """The answer to one check body (a JSON object, encoded); raises PdpUnavailable.

        Waits at most queue_s for a batch to take it (as a lone decision waits for a
        pooled connection), then deadline_s for the answer (the exchange's own deadline
        ends it first)."""
        pending = _Pending(body)
        self._queue.append(pending)
        if self._senders < self._slots:
            self._start_sender()
        # A decision still queued after stall_s looks at the batches ahead of it.
        first_s = min(self._stall_s, queue_s) if self._max_slots > self._slots else queue_s
        answered = pending.done.wait(first_s)
        if not answered and first_s < queue_s:
            if not pending.sent and self._senders < self._max_slots and self._stalled(self._senders):
                if self._on_stall is not None:
                    self._on_stall()
                self._start_sender()
            answered = pending.done.wait(queue_s - first_s)
        if not answered:
            if not pending.sent:
                pending.dropped = True
                raise PdpUnavailable("PDP unreachable: no free connection in time", "queue")
            if not pending.done.wait(deadline_s):
                raise PdpUnavailable("PDP unreachable: deadline exceeded", "deadline")
        if pending.error is not None:
            raise pending.error
        return pending.answer

    def _start_sender(self) -> None:
        self._senders += 1
        self._spawn(self._send_queued)

    def _stalled(self, senders: int) -> bool:
        """That many senders are in an exchange, each out longer than stall_s."""
        now = self._clock()
        return len(self._sent_at) >= senders and all(now - t > self._stall_s for t in self._sent_at.values())

    def _send_queued(self) -> None:
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self._max:
                    pending = self._queue.popleft()
                    if not pending.dropped:
                        pending.sent = True
                        batch.append(pending)
                if batch:
                    self._send(batch)
                # A sender beyond slots stays only while the others are still stuck.
                if self._senders > self._slots and not self._stalled(self._senders - 1):
                    break
        finally:
            self._senders -= 1

    def _send(self, batch: list) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        self._sent_at[id(batch)] = self._clock()
        try:
            answers = self._exchange([p.body for p in batch])
            for pending, answer in zip(batch, answers, strict=True):
                pending.answer = answer
        except PdpUnavailable as exc:
            for pending in batch:
                pending.error = exc
        except Exception as exc:  # noqa: BLE001 - a bug must fail these decisions closed, not hang them
            failed = PdpUnavailable(f"PDP batch failed: {exc.__class__.__name__}", "bad_answer")
            for pending in batch:
                pending.error = failed
        finally:
            del self._sent_at[id(batch)]
            for pending in batch:
                if pending.answer is None and pending.error is None:
                    pending.error = PdpUnavailable("PDP batch aborted", "unreachable")
                pending.done.set()
