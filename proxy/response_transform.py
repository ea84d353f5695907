"""Per-route response transformation: header add/remove/rename, Server and
X-Powered-By dropped by default, and JSON field redaction for small bodies.

Parsed strictly from a route's `response_headers` and `response_body` blocks
(routes.py calls `parse_route_response`); applied by forwarding.response_headers
and `redacting()` around the upstream exchange.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import upstream

# Headers that tell the world what runs behind the gateway; dropped unless a route keeps them.
DROPPED_BY_DEFAULT = frozenset(("server", "x-powered-by"))
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")
_HEADER_KEYS = ("add", "remove", "rename", "keep")
_BODY_KEYS = ("redact_json", "redact_secrets", "max_bytes", "replacement")
REDACTED = "[redacted]"
DEFAULT_MAX_BYTES = 1 << 20


class ResponseSpecError(ValueError):
    """A bad response_headers / response_body block; the message names the key path."""


@dataclass(frozen=True)
class Redaction:
    fields: frozenset  # lower-case JSON keys whose values are replaced, at any depth
    max_bytes: int = DEFAULT_MAX_BYTES
    replacement: str = REDACTED
    secrets: bool = False  # also every key the shared secret-name list names (servicekit/secret_params.py)

    def matches(self, key: str) -> bool:
        if key.lower() in self.fields:
            return True
        if self.secrets:
            from servicekit.secret_params import is_secret_param

            return is_secret_param(key)
        return False


@dataclass(frozen=True)
class ResponseRules:
    add: tuple = ()
    remove: frozenset = DROPPED_BY_DEFAULT
    rename: tuple = ()  # ((from, to), ...), lower-case
    redaction: Redaction = None


def _header_name(value, where):
    if not isinstance(value, str) or not _HEADER_NAME.match(value):
        raise ResponseSpecError(f"{where}: expected an HTTP header name, got {value!r}")
    return value.lower()


def _name_list(value, where):
    if not isinstance(value, list):
        raise ResponseSpecError(f"{where}: expected a list of header names")
    return frozenset(_header_name(v, f"{where}[{i}]") for i, v in enumerate(value))


def _mapping(value, where):
    if not isinstance(value, dict):
        raise ResponseSpecError(f"{where}: expected a mapping")
    return value


def parse_response_headers(body: object, where: str) -> tuple:
    """(add, remove, rename) of a route's response_headers block."""
    if body is None:
        return (), DROPPED_BY_DEFAULT, ()
    _mapping(body, where)
    for key in body:
        if key not in _HEADER_KEYS:
            raise ResponseSpecError(f"{where}.{key}: unknown key (one of {', '.join(_HEADER_KEYS)})")
    add = []
    for name, value in _mapping(body.get("add") or {}, f"{where}.add").items():
        name = _header_name(name, f"{where}.add")
        if (
            not isinstance(value, (str, int, float))
            or isinstance(value, bool)
            or _HEADER_VALUE_FORBIDDEN.search(str(value))
        ):
            raise ResponseSpecError(f"{where}.add.{name}: expected a header value (text without CR, LF, NUL)")
        add.append((name, str(value)))
    remove = _name_list(body.get("remove") or [], f"{where}.remove")
    keep = _name_list(body.get("keep") or [], f"{where}.keep")
    rename = []
    for old, new in _mapping(body.get("rename") or {}, f"{where}.rename").items():
        rename.append((_header_name(old, f"{where}.rename"), _header_name(new, f"{where}.rename.{old}")))
    return tuple(add), (remove | DROPPED_BY_DEFAULT) - keep, tuple(rename)


def parse_response_body(body: object, where: str) -> Redaction | None:
    """The Redaction of a route's response_body block, or None."""
    if body is None:
        return None
    _mapping(body, where)
    for key in body:
        if key not in _BODY_KEYS:
            raise ResponseSpecError(f"{where}.{key}: unknown key (one of {', '.join(_BODY_KEYS)})")
    secrets = body.get("redact_secrets", False)
    if not isinstance(secrets, bool):
        raise ResponseSpecError(f"{where}.redact_secrets: expected true or false")
    fields = body.get("redact_json", [] if secrets else None)
    if not isinstance(fields, list) or not (fields or secrets) or not all(isinstance(f, str) and f for f in fields):
        raise ResponseSpecError(
            f"{where}.redact_json: expected a non-empty list of JSON field names (or redact_secrets: true)"
        )
    max_bytes = body.get("max_bytes", DEFAULT_MAX_BYTES)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or not 1 <= max_bytes <= 64 << 20:
        raise ResponseSpecError(f"{where}.max_bytes: expected an integer from 1 to {64 << 20}")
    replacement = body.get("replacement", REDACTED)
    if not isinstance(replacement, str):
        raise ResponseSpecError(f"{where}.replacement: expected a string")
    return Redaction(frozenset(f.lower() for f in fields), max_bytes, replacement, secrets)


def parse_route_response(route_body: dict, where: str) -> ResponseRules:
    add, remove, rename = parse_response_headers(route_body.get("response_headers"), f"{where}.response_headers")
    redaction = parse_response_body(route_body.get("response_body"), f"{where}.response_body")
    return ResponseRules(add, remove, rename, redaction)


def rename_headers(headers: list[tuple[str, str]], rename: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """[(name, value)] with each `from` header renamed `to` (an existing `to` is replaced)."""
    if not rename:
        return headers
    mapping = dict(rename)
    renamed_to = {new for old, new in rename if any(n == old for n, _ in headers)}
    out = []
    for name, value in headers:
        if name in mapping:
            out.append((mapping[name], value))
        elif name not in renamed_to:
            out.append((name, value))
    return out


# -- JSON redaction ----------------------------------------------------------------------


def redact_document(doc: object, redaction: Redaction) -> object:
    """doc with the values of the keys the redaction names replaced, at any depth (in place)."""
    stack = [doc]
    while stack:  # iterative: a deep document cannot exhaust the recursion limit here
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if redaction.matches(key):
                    node[key] = redaction.replacement
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return doc


def is_json(headers: Iterable[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name == "content-type":
            media = value.split(";", 1)[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return False


def _encoded(headers) -> bool:
    return any(name == "content-encoding" and value.strip().lower() not in ("", "identity") for name, value in headers)


class RedactionFailed(Exception):
    """The body is JSON by its type but could not be parsed: it is not sent (fail closed)."""


class _Rewritten:
    """An exchange whose body was read and replaced (or whose reading failed)."""

    def __init__(self, exchange, response, pieces):
        self._exchange = exchange
        self.response = response
        self.started_at = exchange.started_at
        self._pieces = pieces

    def body(self):
        yield from self._pieces()

    def finish(self):
        self._exchange.finish()

    def detach(self):
        return self._exchange.detach()


def redacting(  # noqa: C901
    exchange: upstream.Exchange, redaction: Redaction, method: str, broken_error: type[Exception]
) -> upstream.Exchange | _Rewritten:
    """The exchange as the client should see it: redacted when its JSON body fits max_bytes.

    A body larger than max_bytes (known from Content-Length or found while
    reading) streams through untouched, as does anything that is not JSON,
    is content-encoded, or has no body. broken_error(detail) makes the
    exception the caller answers 502 to (the upstream's own read errors
    pass through as they are, from the first body piece)."""
    resp = exchange.response
    if (
        redaction is None
        or method == "HEAD"
        or resp.status in (204, 304)
        or resp.body_length == 0
        or not is_json(resp.headers)
        or _encoded(resp.headers)
    ):
        return exchange
    if resp.body_length is not None and resp.body_length > redaction.max_bytes:
        return exchange
    pieces = exchange.body()
    buffered, total = [], 0
    try:
        for piece in pieces:
            buffered.append(piece)
            total += len(piece)
            if total > redaction.max_bytes:
                break
        else:
            pieces = None
    except Exception as exc:  # the upstream broke or timed out: re-raised where it is answered
        error = exc

        def fail():
            raise error
            yield b""  # a generator

        return _Rewritten(exchange, resp, fail)
    if pieces is not None:  # too large after all: what was read, then the rest, untouched

        def passthrough():
            yield from buffered
            yield from pieces

        return _Rewritten(exchange, resp, passthrough)
    raw = b"".join(buffered)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):

        def refuse():
            raise broken_error("the upstream's JSON response could not be parsed for redaction")
            yield b""

        return _Rewritten(exchange, resp, refuse)
    try:
        out = json.dumps(redact_document(doc, redaction), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (RecursionError, ValueError):

        def refuse_deep():
            raise broken_error("the upstream's JSON response is too deep to redact")
            yield b""

        return _Rewritten(exchange, resp, refuse_deep)
    rewritten = type(resp)()
    for slot in type(resp).__slots__:
        setattr(rewritten, slot, getattr(resp, slot))
    rewritten.body_length = len(out)
    rewritten.chunked = False
    return _Rewritten(exchange, rewritten, lambda: iter((out,)))
