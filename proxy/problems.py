"""problem+json answers the proxy makes itself (the body is servicekit/problem.py's)."""

from __future__ import annotations

from servicekit.problem import PROBLEM_JSON, problem_body

from .http11 import REASONS


def problem(
    status: int, detail: str, request_id: str, slug: str | None = None, title: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Returns (status, [(header, value)], body bytes) for a problem+json answer."""
    body = problem_body(
        status, title or REASONS.get(status, "Error"), detail, slug or "about:blank", request_id=request_id
    )
    return status, [("content-type", PROBLEM_JSON)], body
