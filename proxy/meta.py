"""The endpoints the proxy serves itself: info, version, health, metrics."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from typing import TYPE_CHECKING

import gevent

from . import __version__
from .pdp import PdpUnavailable

if TYPE_CHECKING:
    from .cluster import Cluster
    from .metrics import Metrics
    from .pdp import PdpClient


class MetaEndpoints:
    def __init__(self, service_name: str, pdp: PdpClient, clusters: Mapping[str, Cluster], metrics: Metrics, mode: str):
        self._service_name = service_name
        self._pdp = pdp
        self._clusters = clusters
        self._metrics = metrics
        self._mode = mode

    def handle(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Returns (status, headers, body) for /.../meta/<name>, None for any other path.

        The name must follow the `meta` segment itself: a policy that allows
        /api/v1/meta/<x>/... for some public x must not thereby expose
        /api/v1/meta/<x>/metrics."""
        segments = path.rstrip("/").split("/")
        if segments[-3:] == ["meta", "health", "details"]:
            # Backend URLs, ejections and load: for the policy's admins and
            # monitors only (this path is not on the public meta route).
            return self._health(details=True)
        if len(segments) < 2 or segments[-2] != "meta":
            return None
        name = segments[-1]
        if name == "info":
            return self._json(
                200,
                {
                    "service": self._service_name,
                    "component": "proxy",
                    "mode": self._mode,
                    "version": __version__,
                    "python": platform.python_version(),
                    "clusters": sorted(self._clusters),
                },
            )
        if name == "version":
            return self._json(200, {"version": __version__, "api_version": "v1"})
        if name == "health":
            return self._health(details=False)
        if name == "metrics":
            return 200, [("content-type", "text/plain; version=0.0.4; charset=utf-8")], self._metrics.render()
        return None

    def _health(self, details):
        checks = {"proxy": {"status": "ok"}}
        pdp_check = gevent.spawn(self._pdp_status)
        clusters = {}
        healthy = True
        for name, cluster in sorted(self._clusters.items()):
            available = cluster.healthy_count()
            clusters[name] = {
                "status": "ok" if available else "down",
                "endpoints": [
                    {"url": e.url, "healthy": e.healthy, "ejected": e.is_ejected(), "outstanding": e.outstanding}
                    for e in cluster.endpoints
                ],
                "breaker": cluster.breaker.state,
            }
            healthy = healthy and available > 0
        pdp_check.join(2.0)
        checks["pdp"] = pdp_check.value or {"status": "down", "detail": "no answer"}
        healthy = healthy and checks["pdp"]["status"] == "ok"
        checks["clusters"] = clusters
        status = 200 if healthy else 503
        if not details:
            # Anonymous probes learn up or not, nothing about the backends behind.
            return self._json(status, {"status": "ok" if healthy else "degraded"})
        return self._json(status, {"status": "ok" if healthy else "degraded", "checks": checks})

    def _pdp_status(self):
        try:
            code = self._pdp.probe()
        except PdpUnavailable as exc:
            return {"status": "down", "detail": str(exc)}
        return {"status": "ok" if code == 200 else "down", "http_status": code}

    @staticmethod
    def _json(status, doc):
        return status, [("content-type", "application/json")], json.dumps(doc).encode("utf-8")
