"""In-process buckets used while Redis is unreachable (fail mode ``local``).

Each worker enforces the same limits on its own, so during an outage a key
admits at most (workers x limit) per window - see docs/quotas.md. What a worker
spends locally is remembered and pushed to Redis when it returns (re-sync).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict

from .plan import Outcome, Prepared


class LocalLimiter:
    def __init__(self, max_keys: int = 50_000):
        self._max_keys = max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (value, expires ms)
        self._debits: OrderedDict[str, tuple[Prepared, int]] = OrderedDict()
        self._effective: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def remember_effective(self, counter_key: str, limit: int, burst: int) -> None:
        """Keeps the limits Redis applied last (overrides included) for the outage."""
        if len(self._effective) >= self._max_keys:
            self._effective.clear()
        self._effective[counter_key] = (limit, burst)

    def spend(self, items: list[Prepared], now_ms: int) -> tuple[bool, list[Outcome]]:
        """Checks and spends all items, or none when an enforced one is over its limit."""
        with self._lock:
            outcomes, new_values, rejected = [], [], False
            for p in items:
                limit, burst = self._effective.get(p.counter_key, (p.d.limit, p.d.burst))
                value, expires = self._state.get(p.counter_key, (None, 0.0))
                if expires <= now_ms:
                    value = None
                if p.alg == "tb":
                    t = p.d.window_ms / limit
                    cap = burst * t
                    tat = max(value if value is not None else now_ms, now_ms)
                    new = tat + p.d.cost * t
                    allowed, retry = new - now_ms <= cap, 0
                    if not allowed:
                        retry, new = math.ceil(new - now_ms - cap), tat
                    remaining = max(0, math.floor((cap - (new - now_ms)) / t + 1e-9))
                    reset, expires = math.ceil(new - now_ms), new
                else:
                    count = value or 0
                    new = count + p.d.cost
                    reset = max(1, p.end_ms - now_ms)
                    allowed, retry = new <= limit, 0
                    if not allowed:
                        retry, new = reset, count
                    remaining, expires = max(0, limit - new), p.end_ms
                if not allowed and not p.d.shadow:
                    rejected = True
                outcomes.append(Outcome(allowed, remaining, reset, retry, limit, burst))
                new_values.append((p, new, expires, allowed))
            if not rejected:
                for p, new, expires, allowed in new_values:
                    if allowed and p.d.cost:
                        self._put(p.counter_key, (new, expires))
                        self._debit(p)
            return not rejected, outcomes

    def _put(self, key: str, state) -> None:
        self._state[key] = state
        self._state.move_to_end(key)
        while len(self._state) > self._max_keys:
            self._state.popitem(last=False)

    def _debit(self, p: Prepared) -> None:
        _, total = self._debits.get(p.counter_key, (p, 0))
        self._debits[p.counter_key] = (p, total + p.d.cost)
        while len(self._debits) > self._max_keys:
            self._debits.popitem(last=False)

    def take_debits(self, limit: int) -> list[tuple[Prepared, int]]:
        """Removes and returns up to ``limit`` pending (item, spent cost) pairs."""
        with self._lock:
            taken = []
            while self._debits and len(taken) < limit:
                taken.append(self._debits.popitem(last=False)[1])
            return taken

    def pending_debits(self) -> int:
        return len(self._debits)

    def forget(self) -> None:
        """Drops local buckets once Redis is authoritative again."""
        with self._lock:
            self._state.clear()
