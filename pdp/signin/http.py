"""What every sign-in resource shares: strict JSON bodies, the caller's
verified token, the client's address, and errors as problem+json."""

from __future__ import annotations

import json
import urllib.parse

import falcon

from servicekit.client_ip import TrustedProxies, forwarded_for_chain, parse_cidr_list

from ..accounts import errors as e
from ..accounts.service import Client
from ..authn.errors import AuthUnavailable, InvalidCredential
from ..problem import PROBLEM_JSON, problem_body

MAX_BODY_BYTES = 8192


class BadInput(e.InvalidInput):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise BadInput(f"field {key!r} appears twice")
        seen[key] = value
    return seen


def _check_text(value, where: str):
    """Strings must be valid UTF-8 (no lone surrogates from \\u escapes)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"{where} is not valid UTF-8") from None
    elif isinstance(value, list):
        for item in value:
            _check_text(item, where)


def read_fields(req, fields: dict, required: tuple = (), *, max_len: int = 512) -> dict:
    """The JSON object body, holding only `fields` ({name: type}), each string at most max_len.

    Raises BadInput (400) for anything else; an empty body counts as {}."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise e.InvalidInput(f"body larger than {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput(f"body larger than {MAX_BODY_BYTES} bytes")
    media = (req.content_type or "").split(";")[0].strip().lower()
    if raw.strip() and media != "application/json":
        raise BadInput("send the body as application/json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("body is not valid UTF-8") from None
    if not text.strip():
        doc = {}
    else:
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as err:
            if isinstance(err, BadInput):
                raise
            raise BadInput("body is not valid JSON") from None
    return check_fields(doc, fields, required, max_len=max_len)


def read_form(req, fields: tuple) -> dict:
    """An application/x-www-form-urlencoded body (the magic-link page's forms)."""
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("ascii"), strict_parsing=bool(raw), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadInput("the form is malformed") from None
    doc = _no_duplicates(pairs)
    return check_fields(doc, {name: str for name in fields}, ())


def check_fields(doc, fields: dict, required: tuple, *, max_len: int = 512) -> dict:
    if not isinstance(doc, dict):
        raise BadInput("body must be a JSON object")
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(unknown)}")
    for name in required:
        if name not in doc:
            raise BadInput(f"field {name!r} is required")
    for name, value in doc.items():
        kind = fields[name]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise BadInput(f"field {name!r} must be {'a string' if kind is str else 'a ' + kind.__name__}")
        if isinstance(value, str) and len(value) > max_len:
            raise BadInput(f"field {name!r} is longer than {max_len} characters")
        _check_text(value, f"field {name!r}")
    return doc


class ClientInfo:
    """The client's address: the peer, or the right-most untrusted X-Forwarded-For
    hop when the peer is a trusted proxy (AUTH_TRUSTED_PROXIES; servicekit/client_ip.py
    walks the chain), never a client-sent value otherwise."""

    def __init__(self, trusted: tuple):
        self._trusted = TrustedProxies(parse_cidr_list(",".join(trusted)))

    def __call__(self, req) -> Client:
        peer = req.remote_addr or ""
        xff = req.get_header("X-Forwarded-For")
        ip = self._trusted.client_from_chain(peer, forwarded_for_chain([xff] if xff else []))
        return Client(
            ip=ip[:64], user_agent=(req.user_agent or "")[:256], request_id=getattr(req.context, "request_id", "")
        )


class CallerAuth:
    """The caller's verified access token, through the PDP's own authenticator."""

    def __init__(self, authenticator):
        self._authn = authenticator

    def optional(self, req) -> dict | None:
        header = req.get_header("Authorization")
        if not header:
            return None
        try:
            subject = self._authn.authenticate(header)
        except InvalidCredential as err:
            raise e.AuthFailed("invalid_token", str(err)) from None
        except AuthUnavailable:
            raise e.StateUnavailable("cannot verify the token now") from None
        return subject if subject.get("authenticated") else None

    def required(self, req) -> dict:
        subject = self.optional(req)
        if subject is None:
            raise e.AuthFailed("authentication_required", "a bearer access token is required")
        return subject

    def admin(self, req) -> dict:
        subject = self.required(req)
        if "admin" not in subject.get("roles", []):
            raise e.Forbidden("this needs role admin")
        return subject


_STATUS = [
    (e.InvalidInput, 400, "Bad Request", "invalid-input"),
    (e.ReauthRequired, 401, "Unauthorized", "reauth-required"),
    (e.AuthFailed, 401, "Unauthorized", "unauthorized"),
    (e.Forbidden, 403, "Forbidden", "forbidden"),
    (e.NotFound, 404, "Not Found", "not-found"),
    (e.Conflict, 409, "Conflict", "conflict"),
    (e.LockedOut, 429, "Too Many Requests", "too-many-attempts"),
    (e.StoreUnavailable, 503, "Service Unavailable", "mongodb-unavailable"),
    (e.MailUnavailable, 503, "Service Unavailable", "smtp-unavailable"),
    (e.StateUnavailable, 503, "Service Unavailable", "redis-unavailable"),
]


def problem_for(err: e.AccountError) -> tuple[int, bytes, dict]:
    """(status, problem+json body, headers) for an account error."""
    status, title, type_ = next(
        ((status, title, type_) for kind, status, title, type_ in _STATUS if isinstance(err, kind)),
        (500, "Internal Server Error", "internal"),
    )
    extra, headers = {}, {}
    if isinstance(err, e.ReauthRequired):
        # RFC 9470: the token is valid, its authentication event is not enough for this.
        extra.update(reason=err.reason, max_age_s=err.max_age_s)
        headers["WWW-Authenticate"] = (
            f'Bearer error="insufficient_user_authentication", error_description="{err.reason}", '
            f"max_age={err.max_age_s}"
        )
    elif isinstance(err, e.AuthFailed):
        extra["reason"] = err.reason
        headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{err.reason}"'
    if isinstance(err, e.LockedOut):
        headers["Retry-After"] = str(err.retry_after_s)
        extra["retry_after_s"] = err.retry_after_s
    if status == 503:
        extra["dependency"] = type_.removesuffix("-unavailable")
        headers["Retry-After"] = "5"
    return status, problem_body(status, title, str(err), type_, **extra), headers


def handle_account_error(req, resp, err, params):
    """falcon error handler: AccountError -> problem+json."""
    status, body, headers = problem_for(err)
    resp.status = falcon.code_to_http_status(status)
    resp.data = body
    resp.content_type = PROBLEM_JSON
    resp.set_headers(headers)
    resp.set_header("Cache-Control", "no-store")
