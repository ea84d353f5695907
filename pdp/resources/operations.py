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
    """Readiness: a policy is loaded, Redis answers, and OPA answers in opa mode.

    With the sign-in API on, MongoDB and SMTP are checked too and reported in
    checks and `auth`. /v1/ready stays 200 while only those are down (say
    "degraded"): decisions do not need them, and taking the PDP out of
    rotation for an SMTP outage would refuse every request. /v1/ready/auth
    is 503 while any of them is down."""

    def __init__(self, policies, engine, redis_client, auth_checks=None):
        self._policies = policies
        self._engine = engine
        self._redis = redis_client
        self._auth_checks = auth_checks

    def _report(self):
        checks = {
            "policy": self._policies.current is not None,
            "engine": self._engine.ready(),
            "redis": self._redis_ok(),
        }
        auth = self._auth_checks() if self._auth_checks else {}
        return checks, auth

    def on_get(self, req, resp):
        checks, auth = self._report()
        ok = all(checks.values())
        status = "not_ready" if not ok else ("degraded" if not all(auth.values()) else "ready")
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = {"status": status, "checks": {**checks, **auth}, "policy_error": self._policies.last_error}
        if auth:
            resp.media["auth"] = {
                "ready": ok and all(auth.values()),
                "down": sorted(k for k, v in auth.items() if not v),
            }

    def on_get_auth(self, req, resp):
        checks, auth = self._report()
        if not self._auth_checks:
            resp.status = falcon.HTTP_404
            resp.media = {"status": "off", "detail": "the sign-in API is off (no MONGODB_URI)"}
            return
        merged = {"redis": checks["redis"], **auth}
        ok = all(merged.values())
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = {
            "status": "ready" if ok else "not_ready",
            "checks": merged,
            "down": sorted(k for k, v in merged.items() if not v),
        }

    def _redis_ok(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False


class Version:
    def __init__(self, settings, engine_name: str):
        self._doc = {
            "service": settings.service_name,
            "version": __version__,
            "api_version": settings.api_version,
            "engine": engine_name,
        }

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
    def __init__(self, metrics, before_scrape=None):
        self._metrics = metrics
        self._before_scrape = before_scrape  # business gauges counted at scrape time

    def on_get(self, req, resp):
        if self._before_scrape is not None:
            self._before_scrape()
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = self._metrics.exposition()
