"""Throttle: fixed-window attempt counters in Redis (login per IP and per email).

Fail closed: when Redis cannot count, the attempt is refused (503) rather
than let through unmetered.
"""

from __future__ import annotations

import hashlib

import redis

from .errors import LockedOut, StateUnavailable

_PREFIX = "lucid:auth:rl:"


class Throttle:
    def __init__(self, client):
        self._redis = client

    def hit(self, name: str, identity: str, limit: int, window_s: int) -> None:
        """Counts one attempt; raises LockedOut once more than limit fall in the window."""
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        key = f"{_PREFIX}{name}:{digest}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
            pipe.ttl(key)
            count, _, ttl = pipe.execute()
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if count > limit:
            raise LockedOut("too many attempts; try again later", ttl if ttl and ttl > 0 else window_s)
