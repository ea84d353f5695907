"""Business gauges the seed asks for: user count and active sessions.

Counted in MongoDB when /metrics is scraped (not per request), by whichever
worker serves the scrape; "mostrecent" makes the multiprocess exposition show
that latest count rather than a sum over workers."""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from ..accounts.errors import AccountError

log = logging.getLogger("lucid.pdp.accounts")


class BusinessMetrics:
    def __init__(self, store, registry):
        self._store = store
        self.users = Gauge("lucid_users", "User accounts in MongoDB", multiprocess_mode="mostrecent", registry=registry)
        self.sessions = Gauge(
            "lucid_active_sessions",
            "Sign-in sessions neither ended nor expired",
            multiprocess_mode="mostrecent",
            registry=registry,
        )

    def refresh(self) -> None:
        try:
            self.users.set(self._store.count_users())
            self.sessions.set(self._store.count_active_sessions())
        except AccountError:
            pass  # MongoDB down: the gauges keep their last value; readiness says why
