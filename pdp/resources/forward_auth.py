"""The same decision for gateways that ask with headers instead of JSON.

- nginx auth_request: X-Original-Method, X-Original-URI;
- Traefik ForwardAuth: X-Forwarded-Method/-Uri/-Host/-Proto;
- Envoy's HTTP ext_authz: the original method, path appended to /v1/ext-authz.

Only the gateway reaches these endpoints (the PDP is never exposed), so the
forwarded headers it sets are trusted here.
"""
from __future__ import annotations

from ..problem import PROBLEM_JSON, problem_body
from .check import validate_check

_HOP_OR_CONTROL = frozenset({"x-original-method", "x-original-uri", "x-forwarded-method", "x-forwarded-uri",
                             "connection", "content-length", "transfer-encoding", "keep-alive"})


def _headers(req) -> dict:
    return {k.lower(): v for k, v in req.headers.items() if k.lower() not in _HOP_OR_CONTROL}


def _client_ip(req) -> str:
    real = req.get_header("X-Real-IP")
    if real:
        return real.strip()
    xff = req.get_header("X-Forwarded-For")
    if xff:
        return xff.split(",")[-1].strip()  # the hop the gateway itself saw
    return req.remote_addr or ""


def answer(resp, decision) -> None:
    """200 with identity headers on allow; else the decided status with problem+json."""
    for name, value in decision.response_headers.items():
        resp.set_header(name, value)
    resp.set_header("X-Lucid-Status", str(decision.status))
    resp.set_header("X-Lucid-Decision-Id", decision.decision_id)
    if decision.allow:
        for name, value in decision.headers.items():
            resp.set_header(name, value)
        resp.status = 200
        resp.data = b""
        return
    resp.set_header("X-Lucid-Reason", decision.reason.split(":", 1)[0])
    resp.status = decision.status
    resp.content_type = PROBLEM_JSON
    problem_type = "quota-exceeded" if decision.reason == "quota_exceeded" else None
    resp.data = problem_body(decision.status, _title(decision.status), decision.reason, type_=problem_type,
                             decision_id=decision.decision_id)


def _title(status: int) -> str:
    import http
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Denied"


class ForwardAuth:
    def __init__(self, decider):
        self._decider = decider

    def on_get(self, req, resp):
        method = req.get_header("X-Original-Method") or req.get_header("X-Forwarded-Method") or "GET"
        uri = req.get_header("X-Original-URI") or req.get_header("X-Forwarded-Uri") or "/"
        check = validate_check({"request": {
            "method": method, "path": uri, "headers": _headers(req),
            "host": req.get_header("X-Forwarded-Host") or req.get_header("Host") or "",
            "scheme": req.get_header("X-Forwarded-Proto") or "http",
            "client_ip": _client_ip(req),
        }})
        answer(resp, self._decider.decide(check, req.context.request_id, getattr(req.context, "trace", None)))

    on_post = on_get


class ExtAuthz:
    """Envoy's HTTP ext_authz service: path_prefix /v1/ext-authz, original method and headers."""

    _PREFIX = "/v1/ext-authz"

    def __init__(self, decider):
        self._decider = decider

    def _handle(self, req, resp, **_params):
        # The raw target: gunicorn's PATH_INFO has %2F already decoded, which
        # would hide exactly the encodings the path check must reject.
        raw = req.env.get("RAW_URI") or req.env.get("REQUEST_URI") or req.relative_uri
        target = raw[len(self._PREFIX):] if raw.startswith(self._PREFIX) else "/"
        target = target or "/"
        check = validate_check({"request": {
            "method": req.method, "path": target, "headers": _headers(req),
            "host": req.get_header("Host") or "",
            "scheme": req.get_header("X-Forwarded-Proto") or "http",
            "client_ip": _client_ip(req),
        }})
        answer(resp, self._decider.decide(check, req.context.request_id, getattr(req.context, "trace", None)))

    on_get = on_post = on_put = on_delete = on_patch = on_head = on_options = _handle
