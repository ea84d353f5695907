"""TOTP (RFC 6238: 30 s steps, 6 digits, +-1 step) with replay prevention and lockout.

- A code is accepted only if its time step is later than the last accepted
  one for that user (kept in Redis by an atomic compare-and-set), so neither
  the same code nor any earlier step is ever accepted twice.
- Attempts are counted per account before the code is checked (so parallel
  guesses share the limit) and forgotten when right; max_retries failures within
  find_time_s lock the account for ban_time_s, doubled for each lockout in
  the last day (Authelia's regulation, growing), up to a day.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time

import pyotp
import redis
import segno

from .errors import LockedOut, StateUnavailable

_PREFIX = "lucid:auth:totp:"
_MAX_BAN_S = 86400

# Accepts the step only if it is later than the stored one; keeps the key a
# little longer than the step can still be valid.
_ACCEPT_STEP = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# Locks for ban * 2^(lockouts so far) and forgets the attempts.
_LOCK = """
redis.call('DEL', KEYS[1])
local locks = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 86400)
local ban = math.min(tonumber(ARGV[3]) * (2 ^ (locks - 1)), tonumber(ARGV[4]))
redis.call('SET', KEYS[2], '1', 'EX', math.floor(ban))
return math.floor(ban)
"""

# Counts an attempt before its code is looked at, in the same counter as the
# failures: {n, 0} lets attempt n go on; {0, seconds} refuses it (locked, or
# max_retries attempts already in this window, answered or still in flight).
# Checking the lock first and counting after the answer let a burst of
# parallel guesses all reach the code.
_BEGIN = """
local locked = redis.call('TTL', KEYS[2])
if locked > 0 then return {0, locked} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local left = redis.call('TTL', KEYS[1])
  if left < 1 then left = 1 end
  return {0, left}
end
return {n, 0}
"""


def _key(kind: str, user_id: str) -> str:
    # One hash tag per user: a Redis Cluster keeps the failure script's keys on one slot.
    return f"{_PREFIX}{kind}:{{{user_id}}}"


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, RFC 4226's recommended length


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False, svgns=True)
    return out.getvalue().decode()


def qr_terminal(uri: str) -> str:
    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def new_recovery_codes(n: int = 10) -> list[str]:
    """Codes like "k7qd-3mzp-x2vh-9tan": 80 random bits each, grouped for reading aloud."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(alphabet) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_hash(code: str) -> str:
    """Recovery codes carry 80 random bits, so a fast hash is enough (no dictionary to attack)."""
    normalized = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalized.encode()).hexdigest()


def code_step(secret: str, code: str, now: float) -> int | None:
    """The time step a code matches within +-1 step of now, or None."""
    if not isinstance(code, str) or len(code) != 6 or not code.isdigit():
        return None
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(code, for_time=now, valid_window=1)
    except pyotp.OTPVerificationError:
        return None


class TotpGuard:
    """Replay and lockout state in Redis for one TOTP factor per user."""

    def __init__(self, client, *, max_retries: int, find_time_s: int, ban_time_s: int, clock=time.time):
        self._redis = client
        self._max = max_retries
        self._find = find_time_s
        self._ban = ban_time_s
        self._clock = clock
        self._accept = client.register_script(_ACCEPT_STEP)
        self._begin = client.register_script(_BEGIN)
        self._lock = client.register_script(_LOCK)

    def check_not_locked(self, user_id: str) -> None:
        try:
            ttl = self._redis.ttl(_key("lock", user_id))
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if ttl is not None and ttl > 0:
            raise LockedOut("too many wrong codes; try again later", ttl)

    def accept_step(self, user_id: str, step: int) -> bool:
        """True once per step and only for steps later than any accepted before."""
        try:
            return bool(self._accept(keys=[_key("step", user_id)], args=[step, 120]))
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None

    def _keys(self, user_id: str) -> list[str]:
        return [_key("fail", user_id), _key("lock", user_id), _key("locks", user_id)]

    def begin_attempt(self, user_id: str) -> int:
        """Counts an attempt before its code is checked; returns its number.
        LockedOut when locked or max_retries attempts already fall in the window."""
        try:
            n, wait = self._begin(keys=self._keys(user_id), args=[self._max, self._find])
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if not n:
            raise LockedOut("too many wrong codes; try again later", int(wait))
        return int(n)

    def attempt_failed(self, user_id: str, attempt: int) -> int:
        """The attempt begin_attempt counted was wrong; returns the lockout it
        started (seconds) when it was the last one allowed, else 0."""
        if attempt < self._max:
            return 0
        try:
            return int(self._lock(keys=self._keys(user_id), args=[self._max, self._find, self._ban, _MAX_BAN_S]))
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None

    def clear_failures(self, user_id: str) -> None:
        try:
            self._redis.delete(_key("fail", user_id))
        except redis.RedisError:
            pass
