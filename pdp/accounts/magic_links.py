"""Magic links: single-use sign-in tokens, mailed, redeemed once.

A token is 256 bits from the CSPRNG (secrets.token_urlsafe(32)); Redis holds
only its SHA-256, with the user id, the email it was sent to and its
expires_at. Redeeming is one Lua script: read, delete, and leave a "used"
mark, so of two concurrent redeems exactly one wins. Records outlive their
expiry by a day (then Redis drops them), so an expired link is told apart
from an unknown one.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time

import redis

from .errors import AuthFailed, StateUnavailable

_PREFIX = "lucid:auth:ml:"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_AFTERLIFE_S = 86400

_REDEEM = """
local value = redis.call('GET', KEYS[1])
if not value then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'used'} end
  return {'unknown'}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return {'ok', value}
"""


def _keys(token: str) -> list[str]:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return [f"{_PREFIX}{{{digest}}}", f"{_PREFIX}used:{{{digest}}}"]


class MagicLinks:
    def __init__(self, client, ttl_s: int, clock=time.time):
        self._redis = client
        self._ttl = int(ttl_s)
        self._clock = clock
        self._redeem = client.register_script(_REDEEM)

    @property
    def ttl_s(self) -> int:
        return self._ttl

    def create(self, user_id: str, email: str) -> str:
        token = secrets.token_urlsafe(32)
        record = {"user_id": user_id, "email": email, "expires_at": self._clock() + self._ttl}
        try:
            self._redis.set(_keys(token)[0], json.dumps(record), ex=self._ttl + _AFTERLIFE_S)
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        return token

    def discard(self, token: str) -> None:
        """Forgets a token whose mail could not be sent."""
        try:
            self._redis.delete(_keys(token)[0])
        except redis.RedisError:
            pass  # unreachable Redis: the record expires by itself, and nobody has the link

    def redeem(self, token) -> dict:
        """Uses a token; returns {"user_id", "email"}; AuthFailed with reason
        magic_link_unknown / magic_link_used / magic_link_expired."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise AuthFailed("magic_link_unknown", "this sign-in link is not valid")
        try:
            result = self._redeem(keys=_keys(token), args=[_AFTERLIFE_S])
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        verdict = result[0].decode()
        if verdict == "used":
            raise AuthFailed("magic_link_used", "this sign-in link was already used")
        if verdict != "ok":
            raise AuthFailed("magic_link_unknown", "this sign-in link is not valid")
        record = json.loads(result[1])
        if record["expires_at"] <= self._clock():
            raise AuthFailed("magic_link_expired", "this sign-in link has expired; ask for a new one")
        return record
