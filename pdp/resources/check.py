"""POST /v1/check: the decision API the proxy (and anything else) asks."""

from __future__ import annotations

import json
import re
import uuid

import orjson

from servicekit import json_codec
from servicekit.client_ip import canonical_ip

from ..problem import Problem

_METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MAX_HEADERS = 200
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_or_new(value) -> str:
    """A caller's request id when it is a safe token (it reaches logs and headers), else a new one."""
    if isinstance(value, str) and _VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def read_json_body(req, max_bytes: int) -> dict:
    """The request body as a JSON object; 413/415/400 problems otherwise. Always validate untrusted input!"""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise Problem(413, "Payload Too Large", f"body larger than {max_bytes} bytes")
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise Problem(413, "Payload Too Large", f"body larger than {max_bytes} bytes")
    try:
        doc = json_codec.loads(raw)
    except ValueError:  # UnicodeDecodeError is one
        raise Problem(400, "Bad Request", "body is not valid JSON", type_="malformed-check") from None
    if not isinstance(doc, dict):
        raise Problem(400, "Bad Request", "body must be a JSON object", type_="malformed-check")
    return doc


def _with_canonical_client_ip(req: dict) -> dict:
    """Quota keys and policies use client_ip: an address, in one spelling, or nothing (missing or "")."""
    value = req.get("client_ip")
    if not isinstance(value, str) or not value:
        return req  # absent or empty; a non-string is refused with the other fields
    ip = canonical_ip(value)
    if ip is None:
        raise _bad("`request.client_ip` must be an IPv4 or IPv6 address")
    return {**req, "client_ip": ip}


def validate_check(doc: dict) -> dict:
    """The `request` object of a /v1/check body, checked field by field."""
    req = doc.get("request")
    if not isinstance(req, dict):
        raise _bad("`request` must be an object")
    method = req.get("method")
    # Methods are case-sensitive (RFC 9110 9.1): a `get` judged as GET would
    # reach the backend as `get`, so the PDP judges only the token it is given.
    if not isinstance(method, str) or not 1 <= len(method) <= 16 or not set(method) <= _METHOD_CHARS:
        raise _bad("`request.method` must be an upper-case HTTP method")
    path = req.get("path")
    if not isinstance(path, str) or not path or len(path) > 8192:
        raise _bad("`request.path` must be a non-empty string")
    headers = req.get("headers", {})
    if not isinstance(headers, dict) or len(headers) > _MAX_HEADERS:
        raise _bad(f"`request.headers` must be an object of at most {_MAX_HEADERS} entries")
    clean = {}
    for name, value in headers.items():
        if not isinstance(value, str):
            raise _bad(f"header {name!r} must have a string value")
        clean[name.lower()] = value
    req = _with_canonical_client_ip(req)
    for field in ("host", "scheme", "client_ip", "client_principal"):
        if field in req and not isinstance(req[field], str):
            raise _bad(f"`request.{field}` must be a string")
    checked = {**req, "headers": clean}
    _require_unicode(checked)
    return checked


def _require_unicode(req: dict) -> None:
    """JSON's \\ud800 escapes decode to lone surrogates, which no policy engine can
    take as a string (OPA's Wasm parser aborts on them): refuse them here."""
    try:
        orjson.dumps(req)
        return  # orjson refuses lone surrogates (and json_codec.loads lets no NaN in)
    except TypeError:
        pass  # the json module's verdict, with its precise reason
    try:
        json.dumps(req, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("strings must be valid Unicode (a lone surrogate escape was sent)") from None
    except (TypeError, ValueError):
        raise _bad("`request` holds a value that is not JSON") from None


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail, type_="malformed-check")


class Check:
    def __init__(self, decider, max_body_bytes: int):
        self._decider = decider
        self._max = max_body_bytes

    def on_post(self, req, resp):
        body = read_json_body(req, self._max)
        check = validate_check(body)
        decision = self._decider.decide(
            check, req.context.request_id, getattr(req.context, "trace", None), lease_want=validate_lease_want(body)
        )
        resp.media = decision.to_json()


class LeaseReturn:
    """POST /v1/lease/return {"lease": id, "unused": n}: gives back a lease's unused quota."""

    def __init__(self, quota, max_body_bytes: int):
        self._quota = quota
        self._max = max_body_bytes

    def on_post(self, req, resp):
        body = read_json_body(req, self._max)
        lease_id, unused = body.get("lease"), body.get("unused")
        if not isinstance(lease_id, str) or len(lease_id) > 64:
            raise _bad("`lease` must be a lease id")
        if isinstance(unused, bool) or not isinstance(unused, int) or not 0 <= unused <= 1_000_000:
            raise _bad("`unused` must be an integer in [0, 1000000]")
        from ..quota.service import QuotaUnavailable

        returned = 0
        if self._quota is not None:
            try:
                returned = self._quota.return_lease(lease_id, unused)
            except QuotaUnavailable:
                raise Problem(503, "Service Unavailable", "quota store unavailable; the units stay spent") from None
        resp.media = {"returned": returned}


def validate_lease_want(doc: dict) -> int:
    """The optional `lease.want` of a /v1/check body (1 when absent: no lease)."""
    if "lease" not in doc:
        return 1
    lease = doc["lease"]
    want = lease.get("want") if isinstance(lease, dict) else None
    if isinstance(want, bool) or not isinstance(want, int) or not 1 <= want <= 1_000_000:
        raise _bad("`lease.want` must be an integer in [1, 1000000]")
    return want
