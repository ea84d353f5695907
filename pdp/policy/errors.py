"""Policy errors carry file:line so authors can find them."""
from __future__ import annotations

import re


class PolicyError(Exception):
    """A policy that must not be served: syntax, unsupported builtin, bad data."""

    def __init__(self, message: str, location: str | None = None):
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.message = message


def line_col(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset in source."""
    before = source[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return line, col


# rego-cpp reports errors as s-expressions: (error 6:x.rego|44|2 (errormsg 24:Invalid ...) ...)
_REGO_CPP_ERROR = re.compile(r"\(error \d+:(?P<file>[^|]*)\|(?P<offset>\d+)\|\d+\s*\(errormsg \d+:(?P<msg>[^)\n]*)")


def from_rego_cpp(error_text: str, sources: dict[str, str]) -> PolicyError:
    """Turns a regopy RegoError into a PolicyError pointing at file:line:col."""
    m = _REGO_CPP_ERROR.search(error_text)
    if not m:
        first = error_text.strip().splitlines()[0] if error_text.strip() else "compile error"
        return PolicyError(first)
    name, offset = m["file"], int(m["offset"])
    location = name
    if name in sources:
        line, col = line_col(sources[name], offset)
        location = f"{name}:{line}:{col}"
    return PolicyError(m["msg"].strip(), location)
