"""Request-target normalization, the one implementation the PDP and the proxy share.

The policy must judge the very path the upstream will see, so a target is
normalized once, and anything that different servers could read differently
is refused (400) instead of guessed at: %2F, %5C, %00, double-encoded escapes,
backslashes, dot segments above the root, "..;" path parameters (which Java
servers treat as ".."), malformed escapes, escaped bytes that are not strict
UTF-8 (overlong forms such as %C0%AE, which lenient decoders read as ".";
surrogates, lone continuation bytes, truncated sequences, code points above
U+10FFFF), and characters outside RFC 3986.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_to_bytes

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_FORBIDDEN_ESCAPES = {"2F": "encoded slash (%2F)", "5C": "encoded backslash (%5C)", "00": "encoded NUL (%00)"}
_PCHAR_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
_QUERY_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$")
MAX_TARGET_BYTES = 8192
# An escaped % before an escape of /, \, NUL or . (the decoded path's escapes are upper case, their digits may not be).
_DOUBLE_ENCODED = re.compile(r"%25(?:2[EeFf]|5[Cc]|00)")


class AmbiguousPath(ValueError):
    """The target can be read more than one way; the request gets a 400."""


def split_target(target: str) -> tuple[str, str]:
    """Splits a request target into (path, query) without decoding either."""
    path, _, query = target.partition("?")
    return path, query


def normalize_target(target: str) -> tuple[str, str]:
    """(normalized path, raw query) of an origin-form request target; raises AmbiguousPath."""
    if "#" in target:
        raise AmbiguousPath("fragment in request target")
    path, query = split_target(target)
    if query:
        if not _QUERY_OK.match(query):
            raise AmbiguousPath("character not allowed in query")
        if "%" in query:
            _check_escapes(query, forbid=("00",))
    return normalize_path(path), query


def normalize_path(path: str) -> str:  # noqa: C901
    """The canonical form of a request path, or AmbiguousPath.

    Decodes percent-escapes of unreserved characters, upper-cases the others,
    collapses duplicate slashes and resolves dot segments.
    """
    if not path.startswith("/"):
        raise AmbiguousPath("path must start with /")
    if len(path) > MAX_TARGET_BYTES:
        raise AmbiguousPath("path too long")
    if "\\" in path:
        raise AmbiguousPath("backslash in path")
    if not _PCHAR_OK.match(path):
        raise AmbiguousPath("character not allowed in path (control, space, non-ASCII or reserved)")
    if "%" in path:
        path = _decode_unreserved(path)
    segments = []
    for segment in path.split("/")[1:]:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise AmbiguousPath("dot segment above the root")
            segments.pop()
            continue
        if ";" in segment and segment.split(";", 1)[0] in ("", ".", ".."):
            raise AmbiguousPath("path parameter on a dot segment")
        segments.append(segment)
    normalized = "/" + "/".join(segments)
    if segments and (path.endswith("/") or path.endswith("/.") or path.endswith("/..")):
        normalized += "/"
    return normalized


def require_plain_segments(path: str) -> None:
    """AmbiguousPath unless normalizing `path` keeps its segments as they are:
    no empty segment (`//`) and no dot segment, escaped or not (`.`, `%2e%2e`).

    For gateways that send the upstream the client's own target, not the
    normalized one the policy judged (nginx auth_request, Traefik ForwardAuth,
    an Envoy without normalize_path): an upstream that resolves `//` or
    `%2e%2e` its own way, or not at all, could route `/admin/%2e%2e/public`
    (judged as /public) to its /admin handler. Escape spelling (`%7E`, `%e2`)
    is left to normalize_path: it changes no segment boundary."""
    normalize_path(path)  # what it refuses is refused here too
    decoded = _decode_unreserved(path) if "%" in path else path
    segments = decoded.split("/")[1:]
    for i, segment in enumerate(segments):
        if segment in (".", ".."):
            raise AmbiguousPath("dot segment in a path the upstream gets as sent")
        if segment == "" and i != len(segments) - 1:
            raise AmbiguousPath("empty segment (//) in a path the upstream gets as sent")


def _check_escapes(text: str, forbid) -> None:
    i = text.find("%")
    while i >= 0:
        pair = text[i + 1 : i + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise AmbiguousPath("malformed percent-escape")
        if pair.upper() in forbid:
            raise AmbiguousPath(f"forbidden escape %{pair}")
        i = text.find("%", i + 3)


def _decode_unreserved(path: str) -> str:
    out = []
    high = False  # an escaped byte >= 0x80: the path must then be checked as UTF-8
    i, length = 0, len(path)
    while i < length:
        ch = path[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        pair = path[i + 1 : i + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise AmbiguousPath("malformed percent-escape")
        upper = pair.upper()
        if upper in _FORBIDDEN_ESCAPES:
            raise AmbiguousPath(_FORBIDDEN_ESCAPES[upper])
        byte = int(upper, 16)
        if byte in _UNRESERVED:
            out.append(chr(byte))
        else:
            out.append("%" + upper)
            high = high or byte >= 0x80
        i += 3
    decoded = "".join(out)
    if high:
        # Old IIS and some Java decoders read %C0%AE as "."; the policy would judge
        # /public/%C0%AE%C0%AE/admin under /public. Python's decoder is strict: it
        # refuses overlong forms, surrogates, stray or missing continuation bytes
        # and code points above U+10FFFF. The literal characters are ASCII (_PCHAR_OK).
        try:
            unquote_to_bytes(decoded).decode("utf-8")
        except UnicodeDecodeError:
            raise AmbiguousPath("escaped bytes that are not valid UTF-8") from None
    # %252F becomes %2F in a backend that decodes twice. Checked on the result,
    # not the input: %25%32%46 decodes (2 and F are unreserved) to that very %252F.
    if _DOUBLE_ENCODED.search(decoded):
        raise AmbiguousPath("double-encoded escape")
    return decoded


def path_segments(normalized: str) -> list[str]:
    """The decoded segments of a normalized path, for policies (parsed_path).

    As in OPA's Envoy plugin, a trailing slash leaves an empty last segment, so
    a policy can tell /users/me from /users/me/ (a different resource upstream).
    normalize_path admits only escapes that are strict UTF-8, and a segment ends
    at an ASCII "/", so no segment decodes with a U+FFFD in place of bytes.
    """
    if normalized == "/":
        return []
    return [unquote(s) for s in normalized[1:].split("/")]
