"""Builds the QuotaService of one PDP worker from the settings table."""

from __future__ import annotations

import time

from servicekit.breaker import CircuitBreaker

from .analytics import UsageAnalytics
from .keys import KeySpace
from .leases import LeasePolicy
from .local import LocalLimiter
from .metrics import QuotaMetrics
from .service import QuotaService


def build_quota_service(settings, redis_client, registry=None, clock=time.time) -> QuotaService:
    """Args: settings (pdp.config.Settings), the shared Redis client, the PDP's metrics registry."""
    keys = KeySpace(settings.quota_key_prefix)
    analytics = None
    if settings.quota_analytics:
        analytics = UsageAnalytics(redis_client, keys, clock=clock)
        analytics.start_background_flush()
    return QuotaService(
        redis_client,
        keys=keys,
        legacy_headers=settings.ratelimit_legacy_headers,
        breaker=CircuitBreaker(settings.quota_breaker_failures, settings.quota_breaker_reset_ms / 1000),
        local=LocalLimiter(settings.quota_local_max_keys),
        analytics=analytics,
        clock=clock,
        metrics=QuotaMetrics(registry),
        leases=LeasePolicy(settings.quota_lease_max_units, settings.quota_lease_fraction, settings.quota_lease_ttl_s)
        if settings.quota_lease_max_units > 1
        else None,
    )
