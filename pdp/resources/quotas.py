"""The quota admin API under /v1/quotas (admin role only).

- ``GET    /v1/quotas/analytics?top=20&window_s=3600``  top keys, verdicts per descriptor
- ``GET    /v1/quotas/{key}``                      remaining quota, without spending
- ``PUT    /v1/quotas/{key}/overrides/{name}``     ``{"limit": int, "burst": int?}``
- ``DELETE /v1/quotas/{key}/overrides/{name}``
- ``PUT    /v1/quotas/{key}/plan``                  ``{"plan": "pro"}``
- ``DELETE /v1/quotas/{key}/plan``
- ``DELETE /v1/quotas/{key}/counters[/{name}]``    reset one counter or all of them

The caller's ``Authorization: Bearer`` JWT is verified by the PDP's own
authenticator: 401 without a valid one, 403 without role "admin". Every error
is application/problem+json.
"""

from __future__ import annotations

import logging

from ..authn.errors import AuthUnavailable, InvalidCredential
from ..problem import Problem
from ..quota.admin import STORE_ERRORS, AdminInputError, QuotaAdmin
from .check import read_json_body

log = logging.getLogger("lucid.pdp.quotas")
_ADMIN_ROLE = "admin"
_MAX_BODY_BYTES = 4096


class AdminGuard:
    """Lets only a verified bearer token with role "admin" through."""

    def __init__(self, authenticator):
        self._authn = authenticator

    def __call__(self, req, resp, resource, params):
        header = req.get_header("Authorization")
        challenge = {"WWW-Authenticate": 'Bearer realm="lucid-quotas"'}
        if not header:
            raise Problem(401, "Unauthorized", "a bearer token is required", headers=challenge)
        try:
            subject = self._authn.authenticate(header)
        except InvalidCredential as err:
            raise Problem(
                401, "Unauthorized", str(err), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        except AuthUnavailable:
            raise Problem(503, "Service Unavailable", "cannot verify the token now") from None
        if not subject.get("authenticated"):
            raise Problem(401, "Unauthorized", "a bearer token is required", headers=challenge)
        if _ADMIN_ROLE not in subject.get("roles", []):
            raise Problem(403, "Forbidden", "the quota API needs role admin")
        # Admin actions are audited (the seed asks for an audit trail); no token is logged.
        log.info("quota admin %s %s by %s", req.method, req.path, subject.get("sub"))


def _guarded(handler):
    def run(self, req, resp, **params):
        self._guard(req, resp, self, params)
        try:
            handler(self, req, resp, **params)
        except AdminInputError as err:
            raise Problem(400, "Bad Request", str(err), type_="invalid-quota-request") from None
        except STORE_ERRORS as err:
            log.warning("quota admin: Redis unavailable: %s", err.__class__.__name__)
            raise Problem(503, "Service Unavailable", "quota store (Redis) unavailable") from None

    return run


class _Base:
    def __init__(self, admin: QuotaAdmin, guard: AdminGuard):
        self._admin = admin
        self._guard = guard


def _int_param(req, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AdminInputError(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise AdminInputError(f"{name} must be from {lo} to {hi}")
    return value


def _json_int(value):
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema's "integer" says)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Analytics(_Base):
    @_guarded
    def on_get(self, req, resp):
        resp.media = self._admin.analytics(
            top_n=_int_param(req, "top", 20, 1, 1000), window_s=_int_param(req, "window_s", 3600, 60, 3600)
        )


class Subject(_Base):
    @_guarded
    def on_get(self, req, resp, key):
        resp.media = self._admin.status(key)


class Override(_Base):
    @_guarded
    def on_put(self, req, resp, key, name):
        body = read_json_body(req, _MAX_BODY_BYTES)
        unknown = set(body) - {"limit", "burst"}
        if unknown or "limit" not in body:
            raise AdminInputError('body must be {"limit": int, "burst": int (optional)}')
        resp.media = self._admin.set_override(key, name, _json_int(body["limit"]), _json_int(body.get("burst")))

    @_guarded
    def on_delete(self, req, resp, key, name):
        if not self._admin.clear_override(key, name):
            raise Problem(404, "Not Found", f"no override of {name} for {key}")
        resp.media = self._admin.status(key)


class Plan(_Base):
    @_guarded
    def on_put(self, req, resp, key):
        body = read_json_body(req, _MAX_BODY_BYTES)
        if set(body) != {"plan"}:
            raise AdminInputError('body must be {"plan": "<plan name>"}')
        resp.media = self._admin.set_plan(key, body["plan"])

    @_guarded
    def on_delete(self, req, resp, key):
        if not self._admin.clear_plan(key):
            raise Problem(404, "Not Found", f"no plan override for {key}")
        resp.media = self._admin.status(key)


class Counters(_Base):
    @_guarded
    def on_delete(self, req, resp, key, name=None):
        resp.media = self._admin.reset(key, name)


def add_routes(app, admin: QuotaAdmin, authenticator) -> None:
    """Mounts the quota admin API on a falcon app."""
    guard = AdminGuard(authenticator)
    app.add_route("/v1/quotas/analytics", Analytics(admin, guard))
    app.add_route("/v1/quotas/{key}", Subject(admin, guard))
    app.add_route("/v1/quotas/{key}/overrides/{name}", Override(admin, guard))
    app.add_route("/v1/quotas/{key}/plan", Plan(admin, guard))
    counters = Counters(admin, guard)
    app.add_route("/v1/quotas/{key}/counters", counters)
    app.add_route("/v1/quotas/{key}/counters/{name}", counters)
