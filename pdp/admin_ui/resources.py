"""Falcon resources of /ui/ (the page) and /ui/api/* (its data)."""

from __future__ import annotations

import logging
import pathlib
import time

import falcon

from ..problem import Problem
from ..quota.admin import STORE_ERRORS
from ..resources.check import read_json_body
from .auth import UiGuard, end_session, start_session, verify_admin
from .playground import Playground, PlaygroundError, replay_input, samples
from .stats import read_metrics

log = logging.getLogger("lucid.pdp.ui")
STATIC = pathlib.Path(__file__).resolve().parent / "static"
_MAX_BODY = 512 * 1024
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The page runs its own script only; no inline script, no other origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _security_headers(resp):
    resp.set_header("Content-Security-Policy", _CSP)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")
    resp.set_header("Cache-Control", "no-store")


class Page:
    """GET /ui/: the page itself (its data needs sign-in; the shell does not)."""

    def __init__(self):
        self._html = (STATIC / "index.html").read_bytes()

    def on_get(self, req, resp):
        _security_headers(resp)
        resp.content_type = "text/html; charset=utf-8"
        resp.data = self._html


class Static:
    def __init__(self):
        self._files = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in _STATIC_TYPES}

    def on_get(self, req, resp, name):
        body = self._files.get(name)
        if body is None:
            raise Problem(404, "Not Found", "no such file")
        _security_headers(resp)
        resp.content_type = _STATIC_TYPES[pathlib.Path(name).suffix]
        resp.data = body


class Session:
    """POST /ui/session {"token": "<admin access token>"} signs in; DELETE signs out."""

    def __init__(self, authenticator):
        self._authn = authenticator

    def on_post(self, req, resp):
        # JSON only: a cross-site form cannot send it without a CORS preflight (no login CSRF).
        if (req.content_type or "").split(";")[0].strip() != "application/json":
            raise Problem(415, "Unsupported Media Type", "send application/json")
        body = read_json_body(req, 16 * 1024)
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise Problem(400, "Bad Request", 'body must be {"token": "<access token>"}')
        subject = verify_admin(self._authn, token.strip())
        csrf = start_session(req, resp, token.strip(), subject)
        resp.media = {"sub": subject.get("sub"), "roles": subject.get("roles"), "csrf_token": csrf}

    def on_delete(self, req, resp):
        end_session(resp)
        resp.media = {"signed_out": True}


class _Api:
    def __init__(self, guard: UiGuard):
        self._guard = guard

    def _admin(self, req):
        return self._guard(req)


class Me(_Api):
    def on_get(self, req, resp):
        subject = self._admin(req)
        resp.media = {"sub": subject.get("sub"), "roles": subject.get("roles")}


class Stats(_Api):
    """The PDP's own metrics, cumulative; the page turns two reads into rates and windowed percentiles."""

    def __init__(self, guard, metrics):
        super().__init__(guard)
        self._metrics = metrics

    def on_get(self, req, resp):
        self._admin(req)
        resp.media = {"at": time.time(), **read_metrics(self._metrics.exposition())}


class Decisions(_Api):
    def __init__(self, guard, recent):
        super().__init__(guard)
        self._recent = recent

    def on_get(self, req, resp):
        self._admin(req)
        decision = req.get_param("decision") or ""
        if decision not in ("", "allow", "deny"):
            raise Problem(400, "Bad Request", "decision must be allow or deny")
        limit = req.get_param_as_int("limit", min_value=1, max_value=500) or 50
        resp.media = {
            "entries": self._recent.tail(
                limit, subject=req.get_param("subject") or "", route=req.get_param("route") or "", decision=decision
            )
        }


class Health(_Api):
    def __init__(self, guard, policies, engine, redis_client, mongo_check):
        super().__init__(guard)
        self._policies, self._engine, self._redis, self._mongo = policies, engine, redis_client, mongo_check

    def on_get(self, req, resp):
        self._admin(req)
        current = self._policies.current
        deps = {
            "policy": {
                "ok": current is not None,
                "revision": current.revision if current else None,
                "error": self._policies.last_error,
            },
            "engine": {"ok": bool(self._engine.ready()), "name": self._engine.name},
            "redis": _timed(lambda: bool(self._redis.ping())),
        }
        if self._engine.name == "opa":
            deps["opa"] = deps["engine"]
        deps["mongodb"] = self._mongo() if self._mongo else {"ok": None, "detail": "MONGODB_URI not set"}
        resp.media = {"dependencies": deps}


def _timed(probe) -> dict:
    started = time.perf_counter()
    try:
        ok = probe()
        return {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as err:  # noqa: BLE001 - any failure is "down", named by its class
        return {"ok": False, "detail": err.__class__.__name__}


def mongo_checker(uri: str | None):
    """A ping of MONGODB_URI (500 ms at most), or None when it is not set."""
    if not uri:
        return None
    client = None

    def check():
        nonlocal client
        if client is None:
            import pymongo

            client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        return _timed(lambda: client.admin.command("ping").get("ok") == 1)

    return check


class Quotas(_Api):
    """Top keys of the last hour with each one's remaining quota, overrides and reset."""

    def __init__(self, guard, quota_admin):
        super().__init__(guard)
        self._admin_api = quota_admin

    def on_get(self, req, resp):
        self._admin(req)
        if self._admin_api is None:
            resp.media = {"enabled": False, "keys": []}
            return
        top = req.get_param_as_int("top", min_value=1, max_value=50) or 10
        try:
            report = self._admin_api.analytics(top_n=top, window_s=3600)
            keys = [{**self._admin_api.status(k["key"]), "spent": k["spent"]} for k in report["top_keys"]]
        except STORE_ERRORS as err:
            raise Problem(503, "Service Unavailable", f"quota store unavailable ({err.__class__.__name__})") from None
        except ValueError as err:  # AdminInputError: analytics off
            resp.media = {"enabled": True, "keys": [], "note": str(err)}
            return
        resp.media = {"enabled": True, "keys": keys, "descriptors": report["descriptors"]}


class QuotaReset(_Api):
    """POST /ui/api/quotas/reset {"key": ..., "name": optional}: full quota at once."""

    def __init__(self, guard, quota_admin):
        super().__init__(guard)
        self._admin_api = quota_admin

    def on_post(self, req, resp):
        subject = self._admin(req)
        if self._admin_api is None:
            raise Problem(409, "Conflict", "quotas are off (RATE_LIMIT_ENABLED=false)")
        body = read_json_body(req, 4096)
        if set(body) - {"key", "name"} or not isinstance(body.get("key"), str):
            raise Problem(400, "Bad Request", 'body must be {"key": "<quota key>", "name": "<descriptor>"?}')
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise Problem(400, "Bad Request", "name must be a descriptor name")
        try:
            resp.media = self._admin_api.reset(body["key"], name or None)
        except STORE_ERRORS as err:
            raise Problem(503, "Service Unavailable", f"quota store unavailable ({err.__class__.__name__})") from None
        except ValueError as err:
            raise Problem(400, "Bad Request", str(err)) from None
        log.info("quota reset of %s by %s (admin page)", body["key"], subject.get("sub"))


class PlaygroundSamples(_Api):
    def __init__(self, guard, recent):
        super().__init__(guard)
        self._recent = recent

    def on_get(self, req, resp):
        self._admin(req)
        resp.media = {"samples": samples(time.time_ns())}


class PlaygroundEval(_Api):
    """POST /ui/api/playground {"input": {...}} or {"replay": "<decision id>"}, "draft": {path: source}?"""

    def __init__(self, guard, playground, recent):
        super().__init__(guard)
        self._playground = playground
        self._recent = recent

    def on_post(self, req, resp):
        self._admin(req)
        body = read_json_body(req, _MAX_BODY)
        if set(body) - {"input", "replay", "draft"}:
            raise Problem(400, "Bad Request", "body keys are input, replay and draft")
        input_doc = body.get("input")
        if "replay" in body:
            entry = self._recent.find(str(body["replay"])) if isinstance(body["replay"], str) else None
            if entry is None:
                raise Problem(404, "Not Found", "no such decision in this worker's recent log")
            input_doc = replay_input(entry, time.time_ns())
        try:
            result = self._playground.evaluate(input_doc, body.get("draft") or None)
        except PlaygroundError as err:
            raise Problem(400, "Bad Request", str(err), type_="playground") from None
        result["input"] = input_doc
        resp.media = result


class Redirect:
    def on_get(self, req, resp):
        raise falcon.HTTPMovedPermanently("/ui/")


def add_routes(app, services, recent) -> None:
    """Mounts /ui/ on the PDP's app."""
    from ..engines.wasm import WasmEngine

    s = services
    guard = UiGuard(s.authenticator)
    quota_admin = s.quota_admin
    from .opa_side import OpaSide

    # The wasm engine beside an opa one (drafts, side by side). Not make_engine() on a
    # copy of the settings: Settings is no dataclass with an `engine` field, and that
    # replace() was a 500 for every draft on PDP_ENGINE=opa.
    playground = Playground(
        s.policies, s.engine, lambda: WasmEngine(s.settings.opa_binary), OpaSide(s.engine, s.settings.opa_binary)
    )
    app.add_route("/ui", Redirect())
    app.add_route("/ui/", Page())
    app.add_route("/ui/static/{name}", Static())
    app.add_route("/ui/session", Session(s.authenticator))
    app.add_route("/ui/api/me", Me(guard))
    app.add_route("/ui/api/stats", Stats(guard, s.metrics))
    app.add_route("/ui/api/decisions", Decisions(guard, recent))
    app.add_route(
        "/ui/api/health",
        Health(guard, s.policies, s.engine, s.redis, mongo_checker(getattr(s.settings, "mongodb_uri", None))),
    )
    app.add_route("/ui/api/quotas", Quotas(guard, quota_admin))
    app.add_route("/ui/api/quotas/reset", QuotaReset(guard, quota_admin))
    app.add_route("/ui/api/playground/samples", PlaygroundSamples(guard, recent))
    app.add_route("/ui/api/playground", PlaygroundEval(guard, playground, recent))
