"""problem+json (servicekit/problem.py) as falcon errors: the one error format of the PDP's API."""

from __future__ import annotations

import falcon

from servicekit.problem import PROBLEM_JSON, problem_body, problem_doc

__all__ = ["PROBLEM_JSON", "Problem", "problem_body", "serialize_error"]


class Problem(falcon.HTTPError):
    """A falcon error that serializes itself as problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None, type_: str | None = None, headers=None):
        super().__init__(falcon.code_to_http_status(status), title=title, description=detail, headers=headers)
        self.problem_type = type_

    def to_problem(self) -> bytes:
        return problem_body(self.status_code, self.title, self.description, self.problem_type)

    def to_doc(self) -> dict:
        return problem_doc(self.status_code, self.title, self.description, self.problem_type)


def serialize_error(req, resp, exc: falcon.HTTPError) -> None:
    """Error serializer for the falcon app: every error is problem+json."""
    body = (
        exc.to_problem()
        if isinstance(exc, Problem)
        else problem_body(exc.status_code, exc.title or "Error", exc.description)
    )
    resp.data = body
    resp.content_type = PROBLEM_JSON
