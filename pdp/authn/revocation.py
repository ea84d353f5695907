"""A denylist of revoked tokens in Redis, keyed by issuer and jti."""
from __future__ import annotations

import hashlib

import redis

from .errors import AuthUnavailable

_PREFIX = "lucid:revoked:"


def denylist_key(issuer: str, jti: str) -> str:
    digest = hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()[:32]
    return _PREFIX + digest


class RedisDenylist:
    def __init__(self, client: "redis.Redis"):
        self._redis = client

    def revoke(self, issuer: str, jti: str, ttl_s: int) -> None:
        """Revokes until the token would have expired anyway."""
        self._redis.set(denylist_key(issuer, jti), b"1", ex=max(1, int(ttl_s)))

    def is_revoked(self, issuer: str, jti: str) -> bool:
        try:
            return bool(self._redis.exists(denylist_key(issuer, jti)))
        except redis.RedisError as err:
            raise AuthUnavailable(f"denylist unavailable: {err.__class__.__name__}") from None
