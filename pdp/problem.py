"""RFC 9457 problem details, the one error format of the PDP's own API."""
from __future__ import annotations

import json

import falcon

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://lucid-gateway.dev/problems/"


def problem_body(status: int, title: str, detail: str | None = None, type_: str | None = None, **extra) -> bytes:
    doc = {"type": _TYPE_BASE + (type_ or _slug(title)), "title": title, "status": status}
    if detail:
        doc["detail"] = detail
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def _slug(title: str) -> str:
    return "-".join(title.lower().split())


class Problem(falcon.HTTPError):
    """A falcon error that serializes itself as problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None, type_: str | None = None, headers=None):
        super().__init__(falcon.code_to_http_status(status), title=title, description=detail, headers=headers)
        self.problem_type = type_

    def to_problem(self) -> bytes:
        return problem_body(self.status_code, self.title, self.description, self.problem_type)


def serialize_error(req, resp, exc: falcon.HTTPError) -> None:
    """Error serializer for the falcon app: every error is problem+json."""
    body = exc.to_problem() if isinstance(exc, Problem) else problem_body(exc.status_code, exc.title or "Error", exc.description)
    resp.data = body
    resp.content_type = PROBLEM_JSON
