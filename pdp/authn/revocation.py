"""A denylist of revoked tokens in Redis, keyed by issuer and jti.

A revocation is written three ways: the key itself (what the online check
reads), an index (a sorted set scored by expiry: what a PDP worker loads in
full) and a stream entry (what workers read to stay current). The last two
feed each worker's local view (revocation_view.py), which answers while Redis
is unreachable; see docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import time

import redis

from .errors import AuthUnavailable

_PREFIX = "lucid:revoked:"
INDEX_KEY = "lucid:revocations:index"  # zset: digest -> expiry (epoch s)
STREAM_KEY = "lucid:revocations:stream"  # stream: {d: digest, e: expiry}
STREAM_MAXLEN = 100_000  # a reader behind the trim reloads the index


def denylist_digest(issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()[:32]


def denylist_key(issuer: str, jti: str) -> str:
    return _PREFIX + denylist_digest(issuer, jti)


# The online check as a script: it goes through pdp/redis_script.py, so the
# lookups of concurrent decisions (a /v1/check/batch) share one round trip.
EXISTS_LUA = "return redis.call('EXISTS', KEYS[1])"


class RedisDenylist:
    """exists: key -> int, raising redis.RedisError (default: the client's EXISTS);
    the PDP passes coalesced_exists(client)."""

    def __init__(self, client: "redis.Redis", view=None, clock=time.time, fresh_s: float = 0.0, exists=None):
        self._redis = client
        self._exists = exists or client.exists
        self._view = view  # LocalRevocationView, or None: fail closed on any error
        self._clock = clock
        # A view synced at most fresh_s ago answers "not revoked" without a Redis call:
        # it is as current as a cached answer may be (JWT_REVOCATION_CACHE_S).
        self._fresh_s = fresh_s

    @property
    def view(self):
        return self._view

    def revoke(self, issuer: str, jti: str, ttl_s: int) -> None:
        """Revokes until the token would have expired anyway."""
        ttl = max(1, int(ttl_s))
        digest = denylist_digest(issuer, jti)
        expires = int(self._clock()) + ttl
        # Separate calls, not MULTI: the three keys may live on different Cluster slots.
        # The key first: it is what the online check reads.
        self._redis.set(_PREFIX + digest, b"1", ex=ttl)
        self._redis.zadd(INDEX_KEY, {digest: expires})
        self._redis.xadd(STREAM_KEY, {"d": digest, "e": expires}, maxlen=STREAM_MAXLEN, approximate=True)
        if self._view is not None:
            self._view.add(digest, expires)

    def is_revoked(self, issuer: str, jti: str) -> bool:
        digest = denylist_digest(issuer, jti)
        local = self.local_verdict(digest)
        if local is not None:
            return local
        try:
            return bool(self._exists(_PREFIX + digest))
        except redis.RedisError as err:
            if self._view is None:
                raise AuthUnavailable(f"denylist unavailable: {err.__class__.__name__}") from None
            self._view.note_redis_error()
            return self._answer_offline(digest, err.__class__.__name__)

    def local_verdict(self, digest: str) -> bool | None:
        """The answer this worker can give without Redis, or None when only the
        online key (online_key) can say; raises AuthUnavailable offline with a stale view."""
        # A revocation is never undone: one this worker has seen stays, even if Redis lost it.
        if self._view is not None and self._view.knows(digest):
            return True
        if self._fresh_s > 0 and self._view is not None and self._view.synced_within(self._fresh_s):
            return False
        if self._view is not None and self._view.redis_known_down():
            return self._answer_offline(digest, "recent error")
        return None

    def online_key(self, digest: str) -> str:
        """The key whose existence means revoked: what a caller folding the lookup
        into its own Lua call (the quota spend) checks with EXISTS."""
        return _PREFIX + digest

    def _answer_offline(self, digest: str, why: str) -> bool:
        verdict = self._view.offline_verdict(digest)
        if verdict is None:
            raise AuthUnavailable(f"denylist unavailable ({why}) and local view too old") from None
        return verdict


def coalesced_exists(client):
    """EXISTS through a pdp/redis_script.py ScriptRunner, its failures as redis.RedisError."""
    from ..redis_script import ScriptCallError, ScriptRunner

    runner = ScriptRunner(client, EXISTS_LUA)

    def exists(key: str) -> int:
        try:
            return runner.run([key], [])
        except ScriptCallError as exc:
            raise redis.RedisError(str(exc)) from exc

    return exists


def restore_revocations(client, entries: dict, clock=time.time) -> int:
    """Writes back revocations Redis lost (a restart without persistence, FLUSHALL)."""
    now = clock()
    written = 0
    for digest, expires in entries.items():
        ttl = int(expires - now)
        if ttl >= 1:
            client.set(_PREFIX + digest, b"1", ex=ttl)
            client.zadd(INDEX_KEY, {digest: expires})
            written += 1
    return written
