"""Quota administration: read without spending, overrides, resets, analytics.

Overrides live in the subject's own hash (``lucid:q:{key}:o``), which the spend
script reads on every call, so a change takes effect on the next request in
every worker. Field ``<name>:limit`` / ``<name>:burst`` override one
descriptor; field ``@plan`` makes the policy re-evaluate the subject's quotas
as if its token said that plan.
"""

from __future__ import annotations

import re

from redis.exceptions import RedisError

from ..redis_script import ScriptCallError, ScriptRunner
from .descriptors import ALGORITHMS, Descriptor
from .service import SPEND_LUA

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_PLAN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_ALG = {"tb": "token_bucket", "day": "calendar_day", "month": "calendar_month"}


# What a failed admin call raises when Redis is down or slow (a 503, never a 500).
STORE_ERRORS = (RedisError, OSError, ScriptCallError)


class AdminInputError(ValueError):
    """Bad admin input; the message is safe to show (400)."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 256 or not key.isprintable():
        raise AdminInputError("key must be 1-256 printable characters, e.g. user:alice")
    return key


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AdminInputError("descriptor name must match [A-Za-z0-9_.-]{1,64}")
    return name


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class QuotaAdmin:
    def __init__(self, service, redis_client):
        """redis_client: the control-plane client (a looser timeout than the decision
        path's 20 ms: an operator's read is not worth failing because a busy worker
        read its reply late)."""
        self._service = service
        self._redis = redis_client
        self._keys = service.keys
        self._script = ScriptRunner(redis_client, SPEND_LUA)

    def _index(self, key: str) -> dict[str, Descriptor]:
        """The descriptors last spent for a subject, as the spend script indexed them."""
        raw = self._redis.hgetall(self._keys.index(key))
        found = {}
        for name, spec in raw.items():
            alg, limit, window_ms, burst = _text(spec).split("|")
            algorithm = _ALG.get(alg)
            if algorithm is None:
                continue  # written by another version; it expires on its own
            found[_text(name)] = Descriptor(
                name=_text(name),
                key=key,
                limit=int(limit),
                window_s=int(window_ms) // 1000,
                burst=int(burst),
                cost=0,
                algorithm=algorithm,
                shadow=False,
                fail_mode="closed",
            )
        return found

    def overrides(self, key: str) -> dict:
        raw = {_text(k): _text(v) for k, v in self._redis.hgetall(self._keys.overrides(key)).items()}
        doc = {"plan": raw.pop("@plan", None), "descriptors": {}}
        for field, value in raw.items():
            name, _, what = field.rpartition(":")
            doc["descriptors"].setdefault(name, {})[what] = int(value)
        return doc

    def status(self, key: str) -> dict:
        """Remaining quota per descriptor, read without spending."""
        check_key(key)
        index = self._index(key)
        descriptors = list(index.values())
        outcomes = self._service.peek(descriptors, self._script) if descriptors else []
        quotas = []
        for d, o in zip(descriptors, outcomes):
            quotas.append(
                {
                    "name": d.name,
                    "algorithm": d.algorithm,
                    "limit": o.limit,
                    "burst": o.burst if d.algorithm == "token_bucket" else None,
                    "window_s": d.window_s,
                    "remaining": o.remaining,
                    "reset_s": -(-o.reset_ms // 1000),
                }
            )
        return {"key": key, "quotas": sorted(quotas, key=lambda q: q["name"]), "overrides": self.overrides(key)}

    def set_override(self, key: str, name: str, limit: int, burst: int | None) -> dict:
        check_key(key), check_name(name)
        for label, value in (("limit", limit), ("burst", burst)):
            if value is None and label == "burst":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**12:
                raise AdminInputError(f"{label} must be an integer from 1 to 10^12")
        okey = self._keys.overrides(key)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(okey, f"{name}:limit", limit)
        if burst is None:
            pipe.hdel(okey, f"{name}:burst")
        else:
            pipe.hset(okey, f"{name}:burst", burst)
        pipe.execute()
        return self.status(key)

    def clear_override(self, key: str, name: str) -> bool:
        check_key(key), check_name(name)
        return bool(self._redis.hdel(self._keys.overrides(key), f"{name}:limit", f"{name}:burst"))

    def set_plan(self, key: str, plan: str) -> dict:
        check_key(key)
        if not isinstance(plan, str) or not _PLAN.match(plan):
            raise AdminInputError("plan must match [A-Za-z0-9_.-]{1,64}")
        self._redis.hset(self._keys.overrides(key), "@plan", plan)
        return self.status(key)

    def clear_plan(self, key: str) -> bool:
        check_key(key)
        return bool(self._redis.hdel(self._keys.overrides(key), "@plan"))

    def reset(self, key: str, name: str | None = None) -> dict:
        """Deletes a subject's counters (one descriptor, or all): full quota at once."""
        check_key(key)
        names = [check_name(name)] if name else list(self._index(key))
        now_s = self._service.clock()
        doomed = []
        for n in names:
            for algorithm in ALGORITHMS:
                doomed.append(self._keys.counter(key, n, algorithm, now_s)[0])
        if doomed:
            # One slot (the subject's hash tag), so one DEL works in Cluster too.
            self._redis.delete(*doomed)
        return self.status(key)

    def analytics(self, top_n: int, window_s: int) -> dict:
        analytics = self._service.analytics
        if analytics is None:
            raise AdminInputError("usage analytics are off (QUOTA_ANALYTICS=false)")
        analytics.flush(self._redis)  # this worker's pending counts, so a fresh read sees them
        return analytics.report(self._redis, top_n=top_n, window_s=window_s)
