"""Normalize a request target once, so the PDP and the upstream see the judged path.

Decodes percent-escapes of unreserved characters only, resolves dot segments,
collapses duplicate slashes, and refuses what different servers would decode
differently (%2F, %5C, %00, backslashes, dot segments above the root,
"..;"-style path parameters that Java servers treat as "..").
"""
import re

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Ambiguous escapes: a slash, a backslash or NUL hidden behind %.
_FORBIDDEN_ESCAPES = frozenset(("2F", "5C", "00"))
_PCHAR_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
_QUERY_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$")


class AmbiguousPath(ValueError):
    """The target can be read more than one way; answer 400."""


def normalize_target(target: str):
    """Returns (normalized path, raw query or '') for an origin-form request target.

    Raises:
        AmbiguousPath: for anything a backend could decode differently.
    """
    if not target.startswith("/"):
        raise AmbiguousPath("request target must be an absolute path")
    if "#" in target:
        raise AmbiguousPath("fragment in request target")
    path, _, query = target.partition("?")
    if "\\" in path:
        raise AmbiguousPath("backslash in path")
    if not _PCHAR_OK.match(path):
        raise AmbiguousPath("character not allowed in path")
    if query and not _QUERY_OK.match(query):
        raise AmbiguousPath("character not allowed in query")
    if "%" in query:
        _check_escapes(query, forbid=("00",))
    if "%" in path:
        path = _decode_unreserved(path)
    segments = []
    for segment in path.split("/")[1:]:
        if segment == "" or segment == ".":
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
    return normalized, query


def _check_escapes(text: str, forbid) -> None:
    i = text.find("%")
    while i >= 0:
        pair = text[i + 1:i + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise AmbiguousPath("malformed percent-escape")
        if pair.upper() in forbid:
            raise AmbiguousPath(f"forbidden escape %{pair}")
        i = text.find("%", i + 3)


def _decode_unreserved(path: str) -> str:
    out = []
    i = 0
    length = len(path)
    while i < length:
        ch = path[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        pair = path[i + 1:i + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise AmbiguousPath("malformed percent-escape")
        upper = pair.upper()
        if upper in _FORBIDDEN_ESCAPES:
            raise AmbiguousPath(f"forbidden escape %{pair}")
        byte = int(upper, 16)
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif upper == "25" and path[i + 3:i + 5].upper() in ("2F", "5C", "00", "2E"):
            # %252F decodes to %2F in a backend that decodes twice.
            raise AmbiguousPath("double-encoded escape")
        else:
            out.append("%" + upper)
        i += 3
    return "".join(out)
