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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pdp import Decision

# The remaining count of a RateLimit header (draft-11 `r=`) or of the legacy header.
_REMAINING = re.compile(r";r=(\d+)")


@dataclass
class Lease:
    decision: object  # proxy.pdp.Decision the lease was granted with
    lease_id: str
    left: int
    expires_at: float
    revision: str
    asked_at: float
    used: int = 0
    renewing: bool = False  # a renewal is in flight
    next: "Lease | None" = None  # the renewal's lease, used when this one ends


@dataclass
class _Rate:
    asked_at: float  # when the PDP was last asked for this key
    seen: int  # requests of the key since then (that one included)
    want: int


class LeaseStore:
    def __init__(
        self,
        clock: Callable[[], float],
        returner: Callable[[str, int], None],
        max_entries: int = 10000,
        max_want: int = 256,
    ):
        self._clock = clock
        self._return = returner  # callable(lease_id, unused), must not block
        self._max = max_entries
        self._max_want = max_want
        self._leases: OrderedDict = OrderedDict()  # key -> Lease, oldest first
        self._rates: OrderedDict = OrderedDict()  # key -> _Rate
        self.revision = None
        self.admitted = 0  # requests admitted on a lease (a metric)
        self.returned = 0  # units given back

    def take(self, key: bytes) -> Decision | None:
        """The lease's decision for one more request, or None (ask the PDP)."""
        self._expire()
        lease = self._usable(key)
        if lease is None:
            return None
        lease.left -= 1
        lease.used += 1
        self.admitted += 1
        rate = self._rates.get(key)
        if rate is not None:
            rate.seen += 1
        return _counted_down(lease.decision, lease.used)

    def _usable(self, key):
        """The key's lease with units left, moving on to its renewal when it is
        used up or expired; None (and the lease ended) when there is none."""
        lease = self._leases.get(key)
        while lease is not None:
            if lease.revision == self.revision and lease.left > 0 and lease.expires_at > self._clock():
                return lease
            following = lease.next
            self._end(key)
            if following is None or following.revision != self.revision:
                return None
            self._leases[key] = lease = following
        return None

    def should_renew(self, key: bytes) -> bool:
        """True once per lease, when a quarter of its units is left: the caller
        then asks for the next one in the background, so a key that uses its
        leases up does not wait for the next. (One that does not use them up
        asks again when its lease expires.)"""
        lease = self._leases.get(key)
        if lease is None or lease.renewing or lease.next is not None:
            return False
        if lease.left * 4 <= lease.left + lease.used:
            lease.renewing = True
            return True
        return False

    def renewal_failed(self, key: bytes) -> None:
        lease = self._leases.get(key)
        if lease is not None:
            lease.renewing = False

    def want(self, key: bytes) -> int:
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
            want = rate.want * 2  # ran out before it expired: a hot key
        else:
            per_s = rate.seen / max(elapsed, 1e-3)
            want = math.ceil(per_s * ttl) if elapsed < 2 * ttl else 1
        want = max(1, min(self._max_want, want))
        rate.asked_at, rate.seen, rate.want = now, 1, want
        self._rates.move_to_end(key)
        return want

    def expects_lease(self, key: bytes) -> bool:
        """Whether the key's next decision will likely carry a lease (worth waiting for)."""
        rate = self._rates.get(key)
        return rate is not None and rate.want > 1

    def observe(self, key: bytes, decision: Decision, renewal: bool = False) -> None:
        """Records the PDP's answer: a new revision ends every lease; a lease is
        kept (a renewal's after the current one). A renewal that is not an
        allow with a lease ends the current lease: the next request asks."""
        if decision.policy_revision and decision.policy_revision != self.revision:
            self.revision = decision.policy_revision
            for old in list(self._leases):
                self._drop(old)
        lease = getattr(decision, "lease", None)
        current = self._leases.get(key)
        if not decision.allow or not lease:
            if renewal and current is not None:
                self._end(key)
            return
        now = self._clock()
        fresh = Lease(decision, lease["id"], lease["units"], now + lease["ttl_s"], decision.policy_revision, now)
        if renewal and current is not None and current.next is None:
            current.next, current.renewing = fresh, False
            return
        if current is not None:
            self._drop(key)
        self._leases[key] = fresh
        while len(self._leases) > self._max:
            self._drop(next(iter(self._leases)))

    def end_all(self) -> None:
        """Gives every lease back (a worker draining)."""
        for key in list(self._leases):
            self._drop(key)

    def _drop(self, key) -> None:
        """Ends the key's lease and its renewal, if any."""
        following = self._leases[key].next
        self._end(key)
        if following is not None and following.left > 0:
            self.returned += following.left
            self._return(following.lease_id, following.left)
            following.left = 0

    def sweep(self) -> None:
        self._expire()

    def _expire(self) -> None:
        # Leases are kept in grant order and all live about as long: the
        # expired ones are at the front. One with a renewal moves on to it.
        now = self._clock()
        while self._leases:
            key, lease = next(iter(self._leases.items()))
            if lease.expires_at > now:
                return
            if self._usable(key) is not None:
                self._leases.move_to_end(key)

    def _end(self, key) -> None:
        """Ends the key's current lease, giving its unused units back. (A
        renewal waiting behind it is the caller's to keep or drop.)"""
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
        return decision.but(cached=True)
    out = dict(headers)
    rl = out.get("ratelimit")
    if rl:
        out["ratelimit"] = _REMAINING.sub(lambda m: f";r={max(0, int(m.group(1)) - used)}", rl, count=1)
    legacy = out.get("ratelimit-remaining")
    if legacy and legacy.isdigit():
        out["ratelimit-remaining"] = str(max(0, int(legacy) - used))
    return decision.but(response_headers=out, cached=True)
