"""Refresh-token families in Redis (RFC 9700 section 4.14.2).

A refresh token is opaque: ``rt_<family>.<secret>``, 256 random bits in the
secret; Redis holds only its SHA-256. Each use rotates it: the used token is
marked rotated and a new one joins the family. Presenting a rotated token
again revokes the whole family, except within a short grace window after
its rotation, so that parallel refreshes from several tabs (or 20 at once)
each get a new token instead of logging the user out.

Keys (one hash tag per family, so a Redis Cluster keeps a family on one slot):
  lucid:auth:fam:{<family>}        hash: state (active|revoked), user, mfa, amr,
                                   auth_time (when the user signed in; absent
                                   in families started before it was kept)
  lucid:auth:rt:{<family>}:<hash>  hash: state (current|rotated), rotated_at (ms)
Both expire with the family (JWT_REFRESH_TOKEN_EXPIRE_DAYS, renewed on use).
  lucid:auth:at:{<family>}         zset: jti of each access token minted for the
                                   family, scored by its exp (so ending the
                                   session can denylist the ones still valid)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import time

import redis

from .errors import AuthFailed, StateUnavailable

_PREFIX = "lucid:auth:"
_TOKEN = re.compile(r"^rt_([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")

_ROTATE = """
local fam = redis.call('HMGET', KEYS[3], 'state', 'user')
if not fam[1] then return {'unknown'} end
if fam[1] == 'revoked' then return {'revoked'} end
local tok = redis.call('HMGET', KEYS[1], 'state', 'rotated_at')
if not tok[1] then return {'unknown'} end
if tok[1] == 'rotated' then
  if tonumber(ARGV[1]) - tonumber(tok[2]) > tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[3], 'state', 'revoked', 'revoked_reason', 'reuse')
    return {'reused'}
  end
else
  redis.call('HSET', KEYS[1], 'state', 'rotated', 'rotated_at', ARGV[1])
end
redis.call('HSET', KEYS[2], 'state', 'current')
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'ok', fam[2]}
"""


@dataclasses.dataclass(frozen=True)
class Family:
    family_id: str
    user_id: str
    mfa: bool
    amr: list
    auth_time: int | None = None  # None: a family started before auth_time was kept


def _family_key(family_id: str) -> str:
    return f"{_PREFIX}fam:{{{family_id}}}"


def _token_key(family_id: str, token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f"{_PREFIX}rt:{{{family_id}}}:{digest}"


def _access_key(family_id: str) -> str:
    return f"{_PREFIX}at:{{{family_id}}}"


def _new_token(family_id: str) -> str:
    return f"rt_{family_id}.{secrets.token_urlsafe(32)}"


def _auth_time(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # unreadable: treated like a session that never had one


def family_of(token) -> str:
    """The family id a well-formed refresh token names; AuthFailed otherwise."""
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if not match:
        raise AuthFailed("invalid_refresh_token", "not a refresh token")
    return match.group(1)


class RefreshFamilies:
    """Args: client (redis-py), ttl_s (refresh lifetime), grace_s (reuse window)."""

    def __init__(self, client, ttl_s: int, grace_s: float, clock=time.time):
        self._redis = client
        self._ttl = int(ttl_s)
        self._grace_ms = int(grace_s * 1000)
        self._clock = clock
        self._rotate = client.register_script(_ROTATE)

    def start(self, user_id: str, *, mfa: bool, amr: list, auth_time: int) -> tuple[str, str]:
        """A new family with its first token; returns (family_id, token).
        auth_time stays with the family: every rotation's access token carries it unchanged."""
        family_id = secrets.token_hex(16)
        token = _new_token(family_id)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(
                _family_key(family_id),
                mapping={
                    "state": "active",
                    "user": user_id,
                    "mfa": "1" if mfa else "0",
                    "amr": json.dumps(amr),
                    "auth_time": int(auth_time),
                },
            )
            pipe.expire(_family_key(family_id), self._ttl)
            pipe.hset(_token_key(family_id, token), mapping={"state": "current"})
            pipe.expire(_token_key(family_id, token), self._ttl)
            pipe.execute()
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        return family_id, token

    def peek(self, token) -> Family:
        """The family a token belongs to, without using it; AuthFailed if unknown or revoked."""
        family_id = family_of(token)
        try:
            state, user, mfa, amr, auth_time = self._redis.hmget(
                _family_key(family_id), "state", "user", "mfa", "amr", "auth_time"
            )
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if state is None:
            raise AuthFailed("invalid_refresh_token", "unknown or expired refresh token")
        if state == b"revoked":
            raise AuthFailed("refresh_token_revoked", "this session was ended")
        return Family(family_id, user.decode(), mfa == b"1", json.loads(amr), _auth_time(auth_time))

    def rotate(self, token) -> tuple[Family, str]:
        """Uses a token once; returns (family, the new token). AuthFailed with
        reason refresh_token_reused when a rotated token comes back late (its
        family is then revoked)."""
        family = self.peek(token)
        new = _new_token(family.family_id)
        keys = [_token_key(family.family_id, token), _token_key(family.family_id, new), _family_key(family.family_id)]
        try:
            result = self._rotate(keys=keys, args=[int(self._clock() * 1000), self._grace_ms, self._ttl])
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        verdict = result[0].decode() if isinstance(result[0], bytes) else result[0]
        if verdict == "ok":
            return family, new
        if verdict == "reused":
            raise AuthFailed("refresh_token_reused", "this refresh token was already used; the session is revoked")
        if verdict == "revoked":
            raise AuthFailed("refresh_token_revoked", "this session was ended")
        raise AuthFailed("invalid_refresh_token", "unknown or expired refresh token")

    def note_access(self, family_id: str, jti: str, exp: int) -> None:
        """Remembers an access token minted for the family until it expires."""
        now = int(self._clock())
        key = _access_key(family_id)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(key, {jti: exp})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.expire(key, max(1, exp - now + 60), gt=True)
            pipe.expire(key, max(1, exp - now + 60), nx=True)
            pipe.execute()
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None

    def live_access(self, family_id: str) -> list[tuple[str, int]]:
        """(jti, exp) of the family's access tokens that have not expired yet."""
        try:
            rows = self._redis.zrangebyscore(_access_key(family_id), int(self._clock()), "+inf", withscores=True)
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        return [(jti.decode(), int(exp)) for jti, exp in rows]

    def revoke(self, family_id: str, reason: str = "logout") -> None:
        try:
            self._redis.hset(_family_key(family_id), mapping={"state": "revoked", "revoked_reason": reason})
            self._redis.expire(_family_key(family_id), self._ttl)
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None

    @property
    def ttl_s(self) -> int:
        return self._ttl
