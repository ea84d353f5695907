"""QuotaService: spends a request's quota descriptors in Redis, all or nothing.

One EVALSHA per request (per subject hash tag in Cluster) checks and spends
every descriptor. When Redis fails or stalls, each descriptor's fail mode
decides: ``local`` (default) enforces the same limits in-process, ``open``
allows, ``closed`` answers 503. A circuit breaker stops waiting on a Redis
that keeps failing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import resources

from redis.cluster import RedisCluster

from servicekit.breaker import CircuitBreaker

from ..redis_script import ScriptCallError, ScriptRunner
from .analytics import UsageAnalytics
from .descriptors import Descriptor, DescriptorError, parse_descriptors
from .headers import ratelimit_headers
from .keys import KeySpace, calendar_window
from .local import LocalLimiter
from .plan import Outcome, Prepared

log = logging.getLogger("lucid.pdp.quota")

SPEND_LUA = resources.files(__package__).joinpath("spend.lua").read_text()
_RESYNC_BATCH = 100
_PARSED_CACHE_SIZE = 4096
_ALG_CODES = {"token_bucket": "tb", "calendar_day": "day", "calendar_month": "month"}
_REVOKED = object()  # the spend's reply when the token's denylist key exists


@dataclass
class QuotaVerdict:
    allowed: bool
    status: int = 200
    reason: str = "ok"
    retry_after_s: int | None = None
    response_headers: dict = field(default_factory=dict)
    # Per descriptor, in the policy's order: (descriptor, outcome or None when not counted).
    details: list = field(default_factory=list)
    source: str = "redis"  # "redis" | "fallback" | "none"
    plan: str | None = None  # the plan override applied, if any
    # Requests' worth of every descriptor reserved in Redis by this spend
    # (1 = this request only); see pdp/quota/leases.py.
    units: int = 1
    lease_id: str = ""

    @property
    def spent_quota(self) -> bool:
        return bool(self.details)


class QuotaUnavailable(Exception):
    """Redis could not be used for this decision (error, timeout or open breaker).

    ``maybe_applied`` is set after a timeout: the script was sent and Redis most
    likely ran it (a busy worker or a frozen Redis answers late), so what the
    fallback spends then is not re-synced, or it would count twice.
    """

    def __init__(self, message: str, maybe_applied: bool = False):
        super().__init__(message)
        self.maybe_applied = maybe_applied


class QuotaService:
    """Spends quota for the PDP.

    Args:
        redis_client: from ``pdp.redis_client.connect`` (single, Sentinel or Cluster).
        keys: the key space (prefix) of this deployment.
        legacy_headers: also send RateLimit-Limit/-Remaining/-Reset.
        breaker: circuit breaker around Redis calls.
        local: the in-process fallback limiter.
        analytics: usage analytics sink, or None.
        clock: wall clock in seconds (injectable: calendar windows and buckets use it).
        metrics: a QuotaMetrics, or None.
        leases: a LeasePolicy (pdp/quota/leases.py), or None for no leases.
    """

    def __init__(
        self,
        redis_client,
        *,
        keys: KeySpace | None = None,
        legacy_headers: bool = False,
        breaker: CircuitBreaker | None = None,
        local: LocalLimiter | None = None,
        analytics: UsageAnalytics | None = None,
        clock=time.time,
        metrics=None,
        leases=None,
    ):
        self._redis = redis_client
        self._keys = keys or KeySpace()
        self._legacy = legacy_headers
        self._breaker = breaker or CircuitBreaker()
        self._local = local or LocalLimiter()
        self._analytics = analytics
        self._clock = clock
        self._metrics = metrics
        self._leases = leases
        self._cluster = isinstance(redis_client, RedisCluster)
        self._script = ScriptRunner(redis_client, SPEND_LUA)
        self._parsed: dict = {}
        self._prepared: dict = {}

    @property
    def keys(self) -> KeySpace:
        return self._keys

    @property
    def lease_ttl_s(self) -> float:
        return self._leases.ttl_s if self._leases else 0.0

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    # -- the spend path -------------------------------------------------------------

    def spend(
        self, descriptors: list, subject: dict | None = None, replan=None, lease_want: int = 1, revocation=None
    ) -> QuotaVerdict:
        """Checks and spends all descriptors of one request.

        Args:
            descriptors: the policy's ``quotas`` list (dicts, validated here).
            subject: ``input.subject``; its ``plan`` is compared with a plan override.
            replan: ``callable(plan) -> quotas list`` that re-evaluates the policy with
                another plan; called once when an admin set a plan override for the
                subject. Without it, plan overrides are ignored.
            lease_want: requests' worth of quota the caller would like reserved
                (a lease); granted only as far as the lease policy allows and
                the limits have room, else the spend is for this request alone.
            revocation: the token's pending revocation lookup (pdp/authn/jwt_auth.py
                PendingRevocation), or None. It is answered before anything is
                spent: folded into the spend's own Lua call (an EXISTS of its key)
                where it can be, else resolved first.

        Returns:
            QuotaVerdict; never raises for Redis trouble or a bad descriptor.
            Raises InvalidCredential (or AuthUnavailable) from the revocation lookup.
        """
        try:
            parsed = self._parse(descriptors)
        except DescriptorError as exc:
            # A malformed decision is a deny (fail closed), never a 500.
            log.error("invalid quota descriptor from policy: %s", exc)
            return QuotaVerdict(allowed=False, status=403, reason="invalid_quota_descriptor", source="none")
        if not parsed:
            return QuotaVerdict(allowed=True, source="none")
        if revocation is not None and self._cluster:
            # Not foldable: in Cluster the denylist key has no subject's hash tag.
            revocation.resolve()
            revocation = None
        plan = (subject or {}).get("plan") or ""
        now_s = self._clock()
        units = self._leases.units_for(parsed, lease_want) if self._leases else 1
        verdict = self._decide(parsed, now_s, plan if replan else "*", units, revocation)
        if isinstance(verdict, str):  # a plan override: decide again under that plan
            override = verdict
            try:
                parsed = self._parse(replan(override))
            except DescriptorError as exc:
                log.error("invalid quota descriptor under plan %r: %s", override, exc)
                return QuotaVerdict(allowed=False, status=403, reason="invalid_quota_descriptor", source="none")
            units = self._leases.units_for(parsed, lease_want) if self._leases and parsed else 1
            verdict = self._decide(parsed, now_s, "*", units) if parsed else QuotaVerdict(allowed=True, source="none")
            verdict.plan = override
        self._after(verdict)
        return verdict

    def _parse(self, raw) -> list[Descriptor]:
        """parse_descriptors, remembered: a policy hands out the same few descriptor
        lists over and over (memoized decisions even hand out the same objects)."""
        try:
            # Types are part of the key: True == 1, but a boolean limit is refused.
            key = tuple(tuple(d.items()) + tuple(map(type, d.values())) for d in raw) if isinstance(raw, list) else None
            parsed = self._parsed.get(key) if key is not None else None
        except (AttributeError, TypeError):  # not dicts, or unhashable values
            return parse_descriptors(raw)
        if parsed is None:
            parsed = parse_descriptors(raw)
            if len(self._parsed) >= _PARSED_CACHE_SIZE:
                self._parsed.clear()
            self._parsed[key] = parsed
        return parsed

    def _decide(self, parsed: list[Descriptor], now_s: float, plan: str, units: int = 1, revocation=None):
        items = [self._prepare(d, now_s) for d in parsed]
        now_ms = int(now_s * 1000)
        revoked_key = revocation.redis_key if revocation is not None else None
        try:
            replies = self._call_redis(items, now_ms, plan, units=units, revoked_key=revoked_key)
        except QuotaUnavailable as exc:
            if revocation is not None:
                revocation.resolve()  # the denylist's own lookup and offline view, before a local spend
            return self._fallback(items, now_ms, resync=not exc.maybe_applied)
        if revocation is not None:
            revocation.settle(replies is _REVOKED)  # raises for a revoked token: nothing was spent
        if isinstance(replies, str):
            return replies
        if units > 1 and any(o is not None and not o.allowed and not p.d.shadow for p, o in zip(items, replies)):
            # No room for a lease (nothing was spent): this request alone, as without leases.
            return self._decide(parsed, now_s, plan, 1)
        for p, o in zip(items, replies):
            if o is not None:
                self._local.observe(p, o, now_ms)
        verdict = self._verdict(items, replies, "redis", units)
        if units > 1 and verdict.allowed:
            verdict.units = units
            spent = [p for p, o in zip(items, replies) if o is not None and o.allowed]
            verdict.lease_id = self._leases.record(self._redis, self._keys, spent, units - 1)
            if not verdict.lease_id:
                verdict.units = 1  # unrecorded: the extra units are spent but not handed out
        return verdict

    def _prepare(self, d: Descriptor, now_s: float) -> Prepared:
        if d.algorithm == "token_bucket":
            # A token bucket's keys do not depend on the time: build them once.
            prepared = self._prepared.get(d)
            if prepared is None:
                if len(self._prepared) >= _PARSED_CACHE_SIZE:
                    self._prepared.clear()
                prepared = self._prepared[d] = self._prepare_now(d, now_s)
            return prepared
        return self._prepare_now(d, now_s)

    def _prepare_now(self, d: Descriptor, now_s: float) -> Prepared:
        counter, _ = self._keys.counter(d.key, d.name, d.algorithm, now_s)
        end_ms = 0
        if d.algorithm != "token_bucket":
            end_ms = calendar_window(d.algorithm, now_s)[2]
        return Prepared(
            d,
            _ALG_CODES[d.algorithm],
            counter,
            self._keys.overrides(d.key),
            self._keys.index(d.key),
            end_ms,
            self._keys.base(d.key),
        )

    def _groups(self, items: list[Prepared]) -> list[list[int]]:
        """Indexes of items per Lua call: one call on a single server; per tag in Cluster."""
        if not self._cluster:
            return [list(range(len(items)))]
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(items):
            groups.setdefault(p.tag, []).append(i)
        return list(groups.values())

    def _call_redis(self, items, now_ms: int, plan: str, mode: str = "spend", units: int = 1, revoked_key=None):
        probe = self._breaker.enter()
        if probe is None:
            raise QuotaUnavailable("circuit breaker open")
        try:
            return self._call_redis_groups(items, now_ms, plan, mode, units, probe, revoked_key)
        except QuotaUnavailable:
            raise  # a Redis error: already recorded as a failure
        except BaseException:
            self._breaker.cancel(probe)  # anything else: never strand a half-open probe
            raise

    def _call_redis_groups(self, items, now_ms, plan, mode, units, probe, revoked_key=None):
        outcomes: list[Outcome | None] = [None] * len(items)
        spent_groups = []
        try:
            for group in self._groups(items):
                reply = self._eval([items[i] for i in group], now_ms, plan, mode, units, revoked_key=revoked_key)
                if reply[0] == 3:  # the token's denylist key exists: nothing spent
                    self._on_success(probe)
                    return _REVOKED
                if reply[0] == 2:
                    self._refund(spent_groups, items, now_ms, units)
                    self._on_success(probe)
                    return reply[1].decode() if isinstance(reply[1], bytes) else reply[1]
                for n, i in enumerate(group):
                    outcomes[i] = Outcome(bool(reply[2 + 6 * n]), *reply[3 + 6 * n : 8 + 6 * n])
                if reply[0] == 0:
                    # Cluster, several subjects: give back what earlier groups spent.
                    self._refund(spent_groups, items, now_ms, units)
                    break  # later groups stay None: not counted
                spent_groups.append(group)
        except ScriptCallError as exc:
            self._on_failure(exc.cause, probe)
            raise QuotaUnavailable(str(exc), maybe_applied=exc.maybe_applied) from exc
        self._on_success(probe)
        return outcomes

    def _eval(
        self, items: list[Prepared], now_ms: int, plan: str, mode: str, units: int = 1, script=None, revoked_key=None
    ):
        keys, args = [], [mode, now_ms, plan, len(items)]
        for p in items:
            d = p.d
            keys += (p.counter_key, p.overrides_key, p.index_key)
            args += (
                d.name,
                p.alg,
                d.limit,
                d.window_ms,
                d.burst,
                d.cost * units,
                1 if d.shadow else 0,
                max(1, p.end_ms - now_ms) if p.end_ms else 0,
            )
        if revoked_key:
            keys.append(revoked_key)
        started = time.perf_counter()
        try:
            return (script or self._script).run(keys, args)
        finally:
            if self._metrics:
                self._metrics.redis_seconds.observe(time.perf_counter() - started)

    def _refund(self, groups, items, now_ms, units: int = 1) -> None:
        for group in groups:
            self._eval([items[i] for i in group], now_ms, "*", "refund", units)

    def return_lease(self, lease_id: str, unused: int) -> int:
        """Gives back a lease's unused units (once; later calls find nothing).

        Returns the units given back; raises QuotaUnavailable when Redis fails."""
        if self._leases is None:
            return 0
        try:
            found = self._leases.take_record(self._redis, self._keys, lease_id)
        except Exception as exc:  # noqa: BLE001 - any Redis trouble: the units stay spent
            raise QuotaUnavailable(f"lease return failed: {exc.__class__.__name__}") from None
        if found is None:
            return 0
        items, reserved = found
        unused = min(max(0, unused), reserved)
        now_ms = int(self._clock() * 1000)
        # A calendar window that has ended is not refunded into.
        live = [p for p in items if not p.end_ms or p.end_ms > now_ms]
        if unused and live:
            try:
                for group in self._groups(live):
                    self._eval([live[i] for i in group], now_ms, "*", "refund", unused)
            except ScriptCallError as exc:
                raise QuotaUnavailable(str(exc)) from exc
        return unused

    def _on_success(self, probe: bool) -> None:
        if self._breaker.leave(True, probe) == "closed":
            log.warning("quota: Redis is back; re-syncing counters spent locally")
            self.resync()

    def _on_failure(self, exc: Exception, probe: bool) -> None:
        if self._metrics:
            self._metrics.redis_errors.labels(type(exc).__name__).inc()
        if self._breaker.leave(False, probe) == "opened":
            log.error("quota: Redis circuit breaker opened after repeated errors: %s", exc)
            if self._metrics:
                self._metrics.breaker_opens.inc()

    # -- Redis unavailable ----------------------------------------------------------

    def _fallback(self, items: list[Prepared], now_ms: int, resync: bool = True) -> QuotaVerdict:
        enforced = [p for p in items if not p.d.shadow]
        if any(p.d.fail_mode == "closed" for p in enforced):
            if self._metrics:
                self._metrics.fallbacks.labels("closed").inc()
            return QuotaVerdict(
                allowed=False,
                status=503,
                reason="quota_unavailable",
                retry_after_s=1,
                response_headers={"retry-after": "1"},
                source="fallback",
            )
        local = [p for p in items if p.d.fail_mode == "local"]
        outcomes: list[Outcome | None] = [None] * len(items)
        if local:
            _, local_outcomes = self._local.spend(local, now_ms, record_debits=resync)
            for p, o in zip(local, local_outcomes):
                outcomes[items.index(p)] = o
        if self._metrics:
            for p in items:
                self._metrics.fallbacks.labels(p.d.fail_mode).inc()
        return self._verdict(items, outcomes, "fallback")

    def resync(self) -> int:
        """Pushes what was spent locally during an outage into Redis (bounded batch)."""
        pushed = 0
        batch = self._local.take_debits(_RESYNC_BATCH)
        now_ms = int(self._clock() * 1000)
        for p, cost in batch:
            if p.end_ms and p.end_ms <= now_ms:
                continue  # that calendar window is over
            try:
                self._eval([p._replace(d=dataclasses.replace(p.d, cost=cost))], now_ms, "*", "force")
                pushed += 1
            except ScriptCallError as exc:
                log.warning("quota: re-sync stopped: %s", exc)
                break
        if self._metrics and pushed:
            self._metrics.resyncs.inc(pushed)
        return pushed

    # -- verdicts -------------------------------------------------------------------

    def _verdict(self, items: list[Prepared], outcomes: list, source: str, units: int = 1) -> QuotaVerdict:
        rejecting = [(p, o) for p, o in zip(items, outcomes) if o is not None and not o.allowed and not p.d.shadow]
        details = list(zip((p.d for p in items), outcomes))
        if rejecting:
            p, o = max(rejecting, key=lambda po: po[1].retry_after_ms)
            retry_s = max(1, math.ceil(o.retry_after_ms / 1000))
            headers = ratelimit_headers(
                p.d.name, o.limit, p.d.window_s, o.remaining, o.reset_ms, legacy=self._legacy, retry_after_s=retry_s
            )
            return QuotaVerdict(
                allowed=False,
                status=429,
                reason="quota_exceeded",
                retry_after_s=retry_s,
                response_headers=headers,
                details=details,
                source=source,
            )
        # With a lease, the headers say what remains as if this request alone
        # had spent: the proxy counts down from there as it admits on the lease.
        counted = [
            (p, o._replace(remaining=o.remaining + (units - 1) * p.d.cost))
            for p, o in zip(items, outcomes)
            if o is not None and not p.d.shadow
        ]
        headers = {}
        if counted:
            p, o = min(counted, key=lambda po: (po[1].remaining, -po[1].reset_ms))
            headers = ratelimit_headers(p.d.name, o.limit, p.d.window_s, o.remaining, o.reset_ms, legacy=self._legacy)
        return QuotaVerdict(allowed=True, response_headers=headers, details=details, source=source)

    def _after(self, verdict: QuotaVerdict) -> None:
        """Metrics and analytics of a decision (off the Lua call, cheap)."""
        results, key_costs = [], {}
        for d, o in verdict.details:
            if o is None:
                continue
            if d.shadow:
                result = "shadow_allowed" if o.allowed else "shadow_rejected"
            elif verdict.allowed:
                result = "allowed"
            else:
                result = "rejected" if not o.allowed else "not_spent"
            results.append((d.name, result))
            if verdict.allowed and o.allowed:
                key_costs[d.key] = key_costs.get(d.key, 0) + d.cost
            if self._metrics:
                self._metrics.decision(d.name, result)
        if self._analytics is not None:
            self._analytics.record(key_costs, results)

    # -- reads for the admin API ----------------------------------------------------

    def peek(self, descriptors: list[Descriptor], script: ScriptRunner) -> list[Outcome]:
        """Remaining quota of each descriptor, spending nothing (raises ScriptCallError).

        script: a ScriptRunner of SPEND_LUA on the admin API's client (its looser
        timeout), not the decision path's."""
        now_s = self._clock()
        items = [self._prepare(d, now_s) for d in descriptors]
        outcomes: list[Outcome] = [None] * len(items)
        for group in self._groups(items):
            reply = self._eval([items[i] for i in group], int(now_s * 1000), "*", "peek", script=script)
            for n, i in enumerate(group):
                outcomes[i] = Outcome(bool(reply[2 + 6 * n]), *reply[3 + 6 * n : 8 + 6 * n])
        return outcomes

    @property
    def analytics(self) -> UsageAnalytics | None:
        return self._analytics

    @property
    def redis(self):
        return self._redis

    @property
    def clock(self):
        return self._clock
