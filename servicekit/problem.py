"""RFC 9457 problem details: the one error body both services answer with.

Framework-free on purpose: the PDP wraps it in a falcon error (pdp/problem.py),
the proxy writes it straight to the socket (proxy/problems.py).
"""

from __future__ import annotations

import json

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://lucid-gateway.dev/problems/"


def problem_type(slug: str | None, title: str) -> str:
    """The `type` URI: our base plus a slug (the title's by default); a full URI as given."""
    if slug and ":" in slug:
        return slug  # e.g. "about:blank"
    return TYPE_BASE + (slug or "-".join(title.lower().split()))


def problem_doc(status: int, title: str, detail: str | None = None, type_: str | None = None, **extra) -> dict:
    doc = {"type": problem_type(type_, title), "title": title, "status": status}
    if detail:
        doc["detail"] = detail
    doc.update(extra)
    return doc


def problem_body(status: int, title: str, detail: str | None = None, type_: str | None = None, **extra) -> bytes:
    return json.dumps(problem_doc(status, title, detail, type_, **extra), separators=(",", ":")).encode()
