"""RFC 9457 problem+json answers the proxy makes itself."""
from __future__ import annotations

import json

from .http11 import REASONS

_TYPE_BASE = "https://lucid-gateway.dev/problems/"


def problem(status: int, detail: str, request_id: str, slug: str | None = None,
            title: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """Returns (status, [(header, value)], body bytes) for a problem+json answer."""
    doc = {
        "type": _TYPE_BASE + slug if slug else "about:blank",
        "title": title or REASONS.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return status, [("content-type", "application/problem+json")], body
