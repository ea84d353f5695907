"""Prometheus metrics of the PDP; aggregated across gunicorn workers (multiprocess mode)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from servicekit import metric_values

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _reason_label(reason: str) -> str:
    # Bounded cardinality: reasons like "invalid_token: token expired" keep their code only.
    return reason.split(":", 1)[0][:40]


class PdpMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        metric_values.install()  # the process's first metrics are made here: cheap values from now on
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "lucid_pdp_decisions_total", "Decisions by result and reason", ["result", "reason"], registry=r
        )
        self.decision_seconds = Histogram(
            "lucid_pdp_decision_seconds", "Whole decision latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.eval_seconds = Histogram(
            "lucid_pdp_policy_eval_seconds", "Policy evaluation latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.reloads = Counter("lucid_pdp_policy_reloads_total", "Policy reloads by result", ["result"], registry=r)
        self.memo = Counter("lucid_pdp_memo_lookups_total", "Memoized decision lookups", ["result"], registry=r)
        self.errors = Counter("lucid_pdp_errors_total", "Errors by kind", ["kind"], registry=r)
        self.policy_error = Gauge(
            "lucid_pdp_policy_last_reload_failed",
            "1 when the last policy edit failed to load",
            multiprocess_mode="max",
            registry=r,
        )
        self._decisions = metric_values.Children(self.decisions)
        self.memo_lookup = metric_values.Children(self.memo)

    def observe_decision(self, decision) -> None:
        self._decisions("allow" if decision.allow else "deny", _reason_label(decision.reason)).inc()
        self.decision_seconds.observe(decision.eval_ms / 1000)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
