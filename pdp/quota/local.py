"""In-process buckets used while Redis is unreachable (fail mode ``local``).

Each worker enforces the same limits on its own, starting from the level Redis
last reported for the key (or a full bucket), so during an outage a key admits
at most (workers x limit) per window - see docs/quotas.md. What a worker spends
locally is remembered and pushed to Redis when it returns (re-sync).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

from .plan import Outcome, Prepared


class LocalLimiter:
    def __init__(self, max_keys: int = 50_000):
        self._max_keys = max_keys
        # counter key -> (level, expires ms, limit, burst): the level is a GCRA tat or a count.
        self._state: OrderedDict[str, tuple] = OrderedDict()
        self._debits: OrderedDict[str, tuple[Prepared, int]] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, p: Prepared, o: Outcome, now_ms: int) -> None:
        """Mirrors what Redis just answered, so a fallback continues from Redis's level
        (and its overrides) instead of a full bucket."""
        if p.alg == "tb":
            level = expires = now_ms + o.reset_ms
        else:
            level, expires = o.limit - o.remaining, p.end_ms
        with self._lock:
            self._put(p.counter_key, (level, expires, o.limit, o.burst))

    def spend(self, items: list[Prepared], now_ms: int, record_debits: bool = True) -> tuple[bool, list[Outcome]]:  # noqa: C901
        """Checks and spends all items, or none when an enforced one is over its limit.

        ``record_debits`` False: Redis probably counted this request already
        (its call timed out after being sent), so it is not re-synced later.
        """
        with self._lock:
            outcomes, new_values, rejected = [], [], False
            for p in items:
                value, expires, limit, burst = self._state.get(p.counter_key, (None, 0.0, p.d.limit, p.d.burst))
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
                new_values.append((p, new, expires, allowed, limit, burst))
            if not rejected:
                for p, new, expires, allowed, limit, burst in new_values:
                    if allowed and p.d.cost:
                        self._put(p.counter_key, (new, expires, limit, burst))
                        if record_debits:
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
