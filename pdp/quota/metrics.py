"""Prometheus metrics of quota spending, labelled by descriptor NAME only.

Names come from the policy, so the label set is bounded by the policy code;
as a guard against a policy that builds names from input, names beyond
``max_names`` are counted under "_other".
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Histogram

from servicekit.metric_values import Children

_REDIS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class QuotaMetrics:
    def __init__(self, registry=None, *, namespace: str = "lucid_pdp", max_names: int = 64):
        kw = {"registry": registry, "namespace": namespace}
        self.decisions = Counter(
            "quota_decisions",
            "Quota verdicts per descriptor: allowed, rejected, shadow_rejected (would have rejected), shadow_allowed",
            ["descriptor", "result"],
            **kw,
        )
        self.redis_seconds = Histogram(
            "quota_redis_seconds", "Latency of the quota Lua script call", buckets=_REDIS_BUCKETS, **kw
        )
        self.redis_errors = Counter("quota_redis_errors", "Failed quota Redis calls by error class", ["error"], **kw)
        self.fallbacks = Counter("quota_fallback", "Descriptors decided without Redis, by fail mode", ["mode"], **kw)
        self.breaker_opens = Counter("quota_breaker_opens", "Times the Redis circuit breaker opened", **kw)
        self.resyncs = Counter("quota_resync_keys", "Counters re-synced to Redis after an outage", **kw)
        self._decision = Children(self.decisions)
        self._names: set[str] = set()
        self._max_names = max_names
        self._lock = threading.Lock()

    def _label(self, name: str) -> str:
        if name in self._names:
            return name
        with self._lock:
            if len(self._names) < self._max_names:
                self._names.add(name)
                return name
        return "_other"

    def decision(self, name: str, result: str) -> None:
        self._decision(self._label(name), result).inc()
