"""Path normalization shared by the PDP and the proxy.

The policy must judge the very path the upstream will see, so a path is
normalized once, and any encoding that different servers could read
differently is rejected instead of guessed at.
"""
from __future__ import annotations

from urllib.parse import unquote

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Escapes that split or end a path differently depending on who decodes them.
_FORBIDDEN_ESCAPES = {"2F": "encoded slash (%2F)", "5C": "encoded backslash (%5C)", "00": "encoded NUL (%00)"}
MAX_PATH_BYTES = 8192


class AmbiguousPath(ValueError):
    """The path cannot be normalized safely; the request gets a 400."""


def split_target(target: str) -> tuple[str, str]:
    """Splits a request target into (path, query) without decoding either."""
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    return path, query


def normalize_path(path: str) -> str:
    """Returns the canonical form of a request path, or raises AmbiguousPath.

    Decodes percent-escapes of unreserved characters, upper-cases the others,
    collapses duplicate slashes and resolves dot segments.
    """
    if not path.startswith("/"):
        raise AmbiguousPath("path must start with /")
    if len(path) > MAX_PATH_BYTES:
        raise AmbiguousPath("path too long")
    out = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == "%":
            hexpair = path[i + 1:i + 3]
            if len(hexpair) != 2 or not set(hexpair) <= _HEX:
                raise AmbiguousPath("malformed percent-escape")
            hexpair = hexpair.upper()
            if hexpair in _FORBIDDEN_ESCAPES:
                raise AmbiguousPath(_FORBIDDEN_ESCAPES[hexpair])
            decoded = chr(int(hexpair, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + hexpair)
            i += 3
            continue
        if ch == "\\":
            raise AmbiguousPath("backslash in path")
        if ord(ch) <= 0x20 or ord(ch) >= 0x7F:
            raise AmbiguousPath("control, space or non-ASCII character in path")
        out.append(ch)
        i += 1
    return _resolve_segments("".join(out))


def _resolve_segments(path: str) -> str:
    segments = []
    parts = path.split("/")
    for seg in parts[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not segments:
                raise AmbiguousPath("dot segment above the root")
            segments.pop()
            continue
        segments.append(seg)
    trailing = path.endswith("/") or parts[-1] in (".", "..")
    result = "/" + "/".join(segments)
    if trailing and segments:
        result += "/"
    return result


def path_segments(normalized: str) -> list[str]:
    """The decoded segments of a normalized path, for policies (parsed_path).

    As in OPA's Envoy plugin, a trailing slash leaves an empty last segment, so
    a policy can tell /users/me from /users/me/ (a different resource upstream).
    """
    if normalized == "/":
        return []
    return [unquote(s) for s in normalized[1:].split("/")]
