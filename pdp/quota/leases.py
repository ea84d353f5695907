"""Quota leases: with an allow, reserve more than one request's worth of quota.

The proxy worker that asked then admits the next requests of the same
decision key against the lease, locally, and gives back what it did not use
(POST /v1/lease/return) when the lease ends. docs/leases.md has the design.

Here: how many units a decision may reserve (LeasePolicy.units_for), and
the record of a lease in Redis, kept so that its return is exact, once, and
needs nothing from the proxy but the lease's id.

- units are requests' worth: a descriptor of cost c reserves c x units;
- a lease never exceeds `max_units`, nor `fraction` of any descriptor's limit
  (of its burst for a token bucket), so a quiet client never loses quota to one;
- the spend is all or nothing in the same Lua call as a plain spend (the
  caller falls back to one unit when the limits have no room for more).
"""

from __future__ import annotations

import json
import math
import secrets

from .descriptors import Descriptor
from .plan import Prepared

# A lease's record outlives the lease (~1 s) long enough for a late return.
RECORD_TTL_MS = 30_000


class LeasePolicy:
    def __init__(self, max_units: int = 256, fraction: float = 0.05, ttl_s: float = 1.0):
        self.max_units = max(1, int(max_units))
        self.fraction = fraction
        self.ttl_s = ttl_s

    def units_for(self, parsed: list[Descriptor], want: int) -> int:
        """Units to reserve for a caller asking for `want` (1 = no lease)."""
        units = min(max(1, int(want)), self.max_units)
        if units == 1:
            return 1
        for d in parsed:
            if d.shadow:
                continue
            size = min(d.limit, d.burst) if d.algorithm == "token_bucket" else d.limit
            units = min(units, max(1, math.floor(self.fraction * size / max(1, d.cost))))
        return units

    @staticmethod
    def record(redis_client, keys, items: list[Prepared], reserved: int) -> str:
        """Stores what a return needs; returns the lease id, or "" when Redis refused."""
        lease_id = secrets.token_hex(16)
        doc = {
            "reserved": reserved,
            "items": [
                [
                    p.counter_key,
                    p.overrides_key,
                    p.index_key,
                    p.d.name,
                    p.alg,
                    p.d.limit,
                    p.d.window_s,
                    p.d.burst,
                    p.d.cost,
                    p.end_ms,
                    p.tag,
                ]
                for p in items
            ],
        }
        try:
            redis_client.set(_record_key(keys, lease_id), json.dumps(doc, separators=(",", ":")), px=RECORD_TTL_MS)
        except Exception:  # noqa: BLE001 - the lease is then just not handed out
            return ""
        return lease_id

    @staticmethod
    def take_record(redis_client, keys, lease_id: str):
        """(items, reserved) of a lease, removing its record; None if unknown or taken."""
        if not isinstance(lease_id, str) or len(lease_id) != 32 or any(c not in "0123456789abcdef" for c in lease_id):
            return None
        raw = redis_client.getdel(_record_key(keys, lease_id))
        if raw is None:
            return None
        doc = json.loads(raw)
        items = []
        for counter, overrides, index, name, alg, limit, window_s, burst, cost, end_ms, tag in doc["items"]:
            algorithm = {"tb": "token_bucket", "day": "calendar_day", "month": "calendar_month"}[alg]
            d = Descriptor(
                name=name,
                key="",
                limit=limit,
                window_s=window_s,
                burst=burst,
                cost=cost,
                algorithm=algorithm,
                shadow=False,
                fail_mode="local",
            )
            items.append(Prepared(d, alg, counter, overrides, index, end_ms, tag))
        return items, int(doc["reserved"])


def _record_key(keys, lease_id: str) -> str:
    return f"{keys.prefix}lease:{lease_id}"
