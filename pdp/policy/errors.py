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


# OPA reports "gateway/decision.rego:12: rego_parse_error: unexpected eof token".
# A single error comes on one line ("1 error occurred: a.rego:3: rego_...").
_OPA_ERROR = re.compile(r"(?:^|\s)(?P<file>[^\s:]+\.rego):(?P<line>\d+): (?P<kind>rego_\w+): (?P<msg>[^\n]*)", re.M)


def from_opa_output(text: str) -> PolicyError:
    """OPA's error report (opa build/check) as one PolicyError: the first error's
    file:line, and how many more there are."""
    errors = list(_OPA_ERROR.finditer(text))
    if not errors:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        first = lines[0] if lines else "opa failed without a message"
        return PolicyError(first.removeprefix("error: "))
    # OPA reports a parse error once per pass: keep the distinct ones.
    seen = list(dict.fromkeys((m["file"], m["line"], m["msg"].strip()) for m in errors))
    name, line, msg = seen[0]
    more = f" (+{len(seen) - 1} more)" if len(seen) > 1 else ""
    return PolicyError(msg + more, f"{name.removeprefix('./')}:{line}")
