"""The same decision for gateways that ask with headers instead of JSON.

FORWARD_AUTH_FRONT names the gateway in front, and /v1/forward-auth reads
only the headers that gateway sets:

- nginx (the default, deploy/nginx/lucid-auth.conf): X-Original-Method,
  X-Original-URI, X-Forwarded-Host, X-Forwarded-Proto;
- traefik (ForwardAuth): X-Forwarded-Method, X-Forwarded-Uri,
  X-Forwarded-Host, X-Forwarded-Proto;
- envoy: /v1/forward-auth is off; Envoy's HTTP ext_authz asks
  /v1/ext-authz/<path> with the original method.

These gateways pass the client's own headers on to us, so a header that only
the *other* gateway would set can only have come from the client: such a
request is refused (400), never read. Reading "X-Original-URI, else
X-Forwarded-Uri" let a client behind Traefik have a POST judged as a GET of
another path.

X-Real-IP and X-Forwarded-For are believed only from a peer in
TRUSTED_PROXIES (servicekit/client_ip.py); otherwise the client is the peer.
"""

from __future__ import annotations

import dataclasses

from servicekit.client_ip import TrustedProxies, canonical_ip, forwarded_for_chain
from servicekit.request_path import AmbiguousPath, require_plain_segments, split_target

from ..problem import PROBLEM_JSON, Problem, problem_body
from .check import validate_check

FRONTS = ("nginx", "traefik", "envoy")
_NGINX_TARGET = ("X-Original-Method", "X-Original-URI")
_TRAEFIK_TARGET = ("X-Forwarded-Method", "X-Forwarded-Uri")
_HOP_OR_CONTROL = frozenset(
    {
        *(h.lower() for h in _NGINX_TARGET + _TRAEFIK_TARGET),
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
    }
)
_SCHEMES = frozenset({"http", "https"})


@dataclasses.dataclass(frozen=True)
class Front:
    """One gateway's way of saying which request is being judged."""

    name: str
    method_header: str | None  # None: the method and path are this request's own (Envoy)
    uri_header: str | None
    host_header: str
    foreign: tuple  # headers only another gateway sets: their presence is an attack


_FRONTS = {
    "nginx": Front("nginx", "X-Original-Method", "X-Original-URI", "X-Forwarded-Host", _TRAEFIK_TARGET),
    "traefik": Front("traefik", "X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host", _NGINX_TARGET),
    "envoy": Front("envoy", None, None, "Host", _NGINX_TARGET + _TRAEFIK_TARGET),
}


def front(name: str) -> Front:
    return _FRONTS[name]


def _bad(detail: str) -> Problem:
    # X-Lucid-Status: nginx turns any status but 401/403 into a 500 and the snippet maps it back.
    return Problem(400, "Bad Request", detail, type_="malformed-forward-auth", headers={"X-Lucid-Status": "400"})


def _refuse_foreign(req, f: Front) -> None:
    present = [h for h in f.foreign if req.get_header(h) is not None]
    if present:
        raise _bad(f"{' and '.join(present)}: not set by {f.name} (FORWARD_AUTH_FRONT), so sent by the client; refused")


def _sent_as_judged(target: str) -> str:
    """The target, if the upstream can only read it as the policy will judge it.

    Each of these gateways sends the upstream the client's own target while the
    policy judges its normalized form, so a target that normalizing would change
    into other segments (`//`, `/./`, `/%2e%2e/`) is refused: the policy never
    judges a path the upstream does not get. Envoy with normalize_path (the
    example config) normalizes first, so its upstream and the policy agree."""
    try:
        require_plain_segments(split_target(target)[0])
    except AmbiguousPath as err:
        raise _bad(f"ambiguous_path: {err}") from None
    return target


def _headers(req) -> dict:
    return {k.lower(): v for k, v in req.headers.items() if k.lower() not in _HOP_OR_CONTROL}


def _scheme(req) -> str:
    raw = req.get_header("X-Forwarded-Proto")
    if raw is None:
        return "http"
    scheme = raw.strip(" \t").lower()
    if scheme not in _SCHEMES:
        raise _bad("X-Forwarded-Proto must be http or https")
    return scheme


def client_ip(req, trusted: TrustedProxies) -> str:
    """The client's address: X-Real-IP, then X-Forwarded-For, from a trusted peer only."""
    peer = canonical_ip(req.remote_addr) or ""
    if not trusted.is_trusted(peer):
        return peer
    real = req.get_header("X-Real-IP")
    if real is not None:
        ip = canonical_ip(real.strip(" \t"))
        if ip is None:
            raise _bad("X-Real-IP is not an IP address")
        return ip
    xff = req.get_header("X-Forwarded-For")
    if xff:
        return canonical_ip(trusted.client_from_chain(peer, forwarded_for_chain([xff]))) or peer
    return peer


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
    resp.data = problem_body(
        decision.status, _title(decision.status), decision.reason, type_=problem_type, decision_id=decision.decision_id
    )


def _title(status: int) -> str:
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Denied"


class ForwardAuth:
    """/v1/forward-auth for nginx auth_request or Traefik ForwardAuth, whichever FORWARD_AUTH_FRONT names."""

    def __init__(self, decider, front_name: str = "nginx", trusted: TrustedProxies | None = None):
        self._decider = decider
        self._front = front(front_name)
        self._trusted = trusted or TrustedProxies()

    def on_get(self, req, resp):
        f = self._front
        if f.method_header is None:
            raise Problem(
                404,
                "Not Found",
                "FORWARD_AUTH_FRONT=envoy: Envoy asks /v1/ext-authz",
                headers={"X-Lucid-Status": "404"},
            )
        _refuse_foreign(req, f)
        method, uri = req.get_header(f.method_header), req.get_header(f.uri_header)
        if not method or not uri:
            raise _bad(
                f"{f.name} sets {f.method_header} and {f.uri_header}; one is missing (is FORWARD_AUTH_FRONT right?)"
            )
        check = validate_check(
            {
                "request": {
                    "method": method,
                    "path": _sent_as_judged(uri),
                    "headers": _headers(req),
                    "host": req.get_header(f.host_header) or req.get_header("Host") or "",
                    "scheme": _scheme(req),
                    "client_ip": client_ip(req, self._trusted),
                }
            }
        )
        answer(resp, self._decider.decide(check, req.context.request_id, getattr(req.context, "trace", None)))

    on_post = on_get


class ExtAuthz:
    """Envoy's HTTP ext_authz service: path_prefix /v1/ext-authz, original method and headers.

    The method and path are this request's own; X-Original-* and
    X-Forwarded-Method/-Uri are nobody's here, so a request carrying them is refused.
    """

    _PREFIX = "/v1/ext-authz"

    def __init__(self, decider, trusted: TrustedProxies | None = None):
        self._decider = decider
        self._front = front("envoy")
        self._trusted = trusted or TrustedProxies()

    def _handle(self, req, resp, **_params):
        _refuse_foreign(req, self._front)
        # The raw target: gunicorn's PATH_INFO has %2F already decoded, which
        # would hide exactly the encodings the path check must reject.
        raw = req.env.get("RAW_URI") or req.env.get("REQUEST_URI") or req.relative_uri
        target = raw[len(self._PREFIX) :] if raw.startswith(self._PREFIX) else "/"
        target = target or "/"
        check = validate_check(
            {
                "request": {
                    "method": req.method,
                    "path": _sent_as_judged(target),
                    "headers": _headers(req),
                    "host": req.get_header("Host") or "",
                    "scheme": _scheme(req),
                    "client_ip": client_ip(req, self._trusted),
                }
            }
        )
        answer(resp, self._decider.decide(check, req.context.request_id, getattr(req.context, "trace", None)))

    on_get = on_post = on_put = on_delete = on_patch = on_head = on_options = _handle
