"""Prometheus metrics, aggregated across worker processes (prometheus_client multiprocess mode).

The master sets PROMETHEUS_MULTIPROC_DIR before any worker imports this module.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from servicekit import metric_values

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self):
        metric_values.install()  # the worker's first metrics are made here: cheap values from now on
        self.requests = Counter("lucid_proxy_requests_total", "Requests by route and status", ["route", "status"])
        self.duration = Histogram(
            "lucid_proxy_request_duration_seconds", "Total time per request", ["route"], buckets=_BUCKETS
        )
        self.upstream_duration = Histogram(
            "lucid_proxy_upstream_duration_seconds",
            "Time to the upstream's response head",
            ["cluster"],
            buckets=_BUCKETS,
        )
        self.pdp_duration = Histogram("lucid_proxy_pdp_duration_seconds", "Time per PDP decision", buckets=_BUCKETS)
        self.pdp_errors = Counter(
            "lucid_proxy_pdp_errors_total", "PDP calls without a usable decision, by kind", ["kind"]
        )
        self.pdp_batches = Counter("lucid_proxy_pdp_batches_total", "POST /v1/check/batch exchanges sent to the PDP")
        self.pdp_batched = Counter(
            "lucid_proxy_pdp_batched_decisions_total", "Decisions asked in those exchanges (divided: the batch size)"
        )
        self.pdp_batch_stalls = Counter(
            "lucid_proxy_pdp_batch_stalls_total",
            "Extra batch senders started because every batch in flight was out PDP_BATCH_STALL_MS",
        )
        self.cache_hits = Counter("lucid_proxy_verdict_cache_hits_total", "Decisions served from the verdict cache")
        self.retries = Counter("lucid_proxy_upstream_retries_total", "Retries after a connect failure", ["cluster"])
        self.connections = Gauge(
            "lucid_proxy_active_connections", "Open client connections", multiprocess_mode="livesum"
        )
        self.healthy_endpoints = Gauge(
            "lucid_proxy_cluster_healthy_endpoints",
            "Endpoints available (health-checked, not ejected)",
            ["cluster"],
            multiprocess_mode="livemin",
        )
        self.breaker_state = Gauge(
            "lucid_proxy_cluster_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["cluster"],
            multiprocess_mode="livemax",
        )
        self._requests = metric_values.Children(self.requests)
        self._durations = metric_values.Children(self.duration)
        self._upstream_durations = metric_values.Children(self.upstream_duration)

    def count_request(self, route: str, status: int, seconds: float | None = None) -> None:
        """One answered request; its duration when it reached a route."""
        self._requests(route, str(status)).inc()
        if seconds is not None:
            self._durations(route).observe(seconds)

    def observe_upstream(self, cluster: str, seconds: float) -> None:
        self._upstream_durations(cluster).observe(seconds)

    def count_pdp_batch(self, size: int) -> None:
        self.pdp_batches.inc()
        self.pdp_batched.inc(size)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest()
