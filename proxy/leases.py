"""Quota leases held by one proxy worker (docs/leases.md).

An allow may come with a lease: `units` further requests' worth of quota the
PDP already reserved in Redis for this worker. Requests with the same
decision key are then admitted here, against the lease, until it is used
up, expires (its ttl_s), or the policy revision changes; then the PDP is
asked again and what was not used is given back (the `returner`).

How much to ask for follows the key's rate: a key seen once in a while asks
for 1 (no lease: every request is decided and spent exactly); a hot key asks
for about one lease lifetime of its own traffic, doubling while leases run out
before they expire. The PDP caps it per descriptor.

One worker is one gevent hub: take() and observe() never yield, so the
counts need no lock.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, replace

# The remaining count of a RateLimit header (draft-11 `r=`) or of the legacy header.
_REMAINING = re.compile(r";r=(\d+)")


@dataclass
class Lease:
    decision: object        # proxy.pdp.Decision the lease was granted with
    lease_id: str
    left: int
    expires_at: float
    revision: str
    asked_at: float
    used: int = 0


@dataclass
class _Rate:
    asked_at: float         # when the PDP was last asked for this key
    seen: int               # requests of the key since then (that one included)
    want: int


class LeaseStore:
    def __init__(self, clock, returner, max_entries: int = 10000, max_want: int = 256):
        self._clock = clock
        self._return = returner          # callable(lease_id, unused), must not block
        self._max = max_entries
        self._max_want = max_want
        self._leases: OrderedDict = OrderedDict()   # key -> Lease, oldest first
        self._rates: OrderedDict = OrderedDict()    # key -> _Rate
        self.revision = None
        self.admitted = 0                # requests admitted on a lease (a metric)
        self.returned = 0                # units given back

    def take(self, key):
        """The lease's decision for one more request, or None (ask the PDP)."""
        self._expire()
        lease = self._leases.get(key)
        if lease is None:
            return None
        if lease.left <= 0 or lease.expires_at <= self._clock() or lease.revision != self.revision:
            self._end(key)
            return None
        lease.left -= 1
        lease.used += 1
        self.admitted += 1
        rate = self._rates.get(key)
        if rate is not None:
            rate.seen += 1
        return _counted_down(lease.decision, lease.used)

    def want(self, key) -> int:
        """Units to ask the PDP for, from the key's rate since it was last asked."""
        now = self._clock()
        rate = self._rates.get(key)
        if rate is None:
            self._rates[key] = _Rate(now, 1, 1)
            self._trim(self._rates)
            return 1
        elapsed = now - rate.asked_at
        lease = self._leases.get(key)
        ttl = (lease.expires_at - lease.asked_at) if lease is not None else 1.0
        if lease is not None and lease.left <= 0 and elapsed < ttl:
            want = rate.want * 2               # ran out before it expired: a hot key
        else:
            per_s = rate.seen / max(elapsed, 1e-3)
            want = math.ceil(per_s * ttl) if elapsed < 2 * ttl else 1
        want = max(1, min(self._max_want, want))
        rate.asked_at, rate.seen, rate.want = now, 1, want
        self._rates.move_to_end(key)
        return want

    def expects_lease(self, key) -> bool:
        """Whether the key's next decision will likely carry a lease (worth waiting for)."""
        rate = self._rates.get(key)
        return rate is not None and rate.want > 1

    def observe(self, key, decision) -> None:
        """Records the PDP's answer: a new revision ends every lease; a lease is kept."""
        if decision.policy_revision and decision.policy_revision != self.revision:
            self.revision = decision.policy_revision
            for old in list(self._leases):
                self._end(old)
        lease = getattr(decision, "lease", None)
        if not decision.allow or not lease:
            return
        if key in self._leases:
            self._end(key)
        now = self._clock()
        self._leases[key] = Lease(decision, lease["id"], lease["units"], now + lease["ttl_s"],
                                  decision.policy_revision, now)
        while len(self._leases) > self._max:
            self._end(next(iter(self._leases)))

    def end_all(self) -> None:
        """Gives every lease back (a worker draining)."""
        for key in list(self._leases):
            self._end(key)

    def sweep(self) -> None:
        self._expire()

    def _expire(self) -> None:
        # Leases are kept in grant order and all live about as long: the
        # expired ones are at the front.
        now = self._clock()
        while self._leases:
            key, lease = next(iter(self._leases.items()))
            if lease.expires_at > now:
                return
            self._end(key)

    def _end(self, key) -> None:
        lease = self._leases.pop(key)
        if lease.left > 0:
            self.returned += lease.left
            self._return(lease.lease_id, lease.left)
            lease.left = 0

    def _trim(self, table: OrderedDict) -> None:
        while len(table) > self._max:
            table.popitem(last=False)

    def __len__(self):
        return len(self._leases)


def _counted_down(decision, used: int):
    """The decision for the used-th request on its lease: RateLimit remaining counts down."""
    headers = decision.response_headers
    if not headers:
        return replace(decision, cached=True)
    out = dict(headers)
    rl = out.get("ratelimit")
    if rl:
        out["ratelimit"] = _REMAINING.sub(lambda m: f";r={max(0, int(m.group(1)) - used)}", rl, count=1)
    legacy = out.get("ratelimit-remaining")
    if legacy and legacy.isdigit():
        out["ratelimit-remaining"] = str(max(0, int(legacy) - used))
    return replace(decision, response_headers=out, cached=True)
