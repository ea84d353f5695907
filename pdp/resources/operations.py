"""Operational endpoints: liveness, readiness, version, loaded policies, metrics."""
from __future__ import annotations

import falcon

from .. import __version__


class Health:
    """Liveness: the process answers. A broken policy edit shows here but stays 200."""

    def __init__(self, policies):
        self._policies = policies

    def on_get(self, req, resp):
        current = self._policies.current
        resp.media = {
            "status": "ok",
            "policy_revision": current.revision if current else None,
            "policy_error": self._policies.last_error,
        }


class Ready:
    """Readiness: a policy is loaded, Redis answers, and OPA answers in opa mode."""

    def __init__(self, policies, engine, redis_client):
        self._policies = policies
        self._engine = engine
        self._redis = redis_client

    def on_get(self, req, resp):
        checks = {"policy": self._policies.current is not None, "engine": self._engine.ready(), "redis": self._redis_ok()}
        ok = all(checks.values())
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = {"status": "ready" if ok else "not_ready", "checks": checks,
                      "policy_error": self._policies.last_error}

    def _redis_ok(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False


class Version:
    def __init__(self, settings, engine_name: str):
        self._doc = {"service": settings.service_name, "version": __version__,
                     "api_version": settings.api_version, "engine": engine_name}

    def on_get(self, req, resp):
        resp.media = self._doc


class Policies:
    def __init__(self, policies):
        self._policies = policies

    def on_get(self, req, resp):
        current = self._policies.current
        if current is None:
            resp.media = {"revision": None, "modules": [], "error": self._policies.last_error}
            return
        resp.media = {
            "revision": current.revision,
            "modules": sorted(current.bundle.modules),
            "loaded_at": current.loaded_at,
            "memoized": current.memo is not None,
            "input_fields": current.needs.tree if current.needs.tree is not True else "all",
            "error": self._policies.last_error,
        }


class Metrics:
    def __init__(self, metrics):
        self._metrics = metrics

    def on_get(self, req, resp):
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = self._metrics.exposition()
