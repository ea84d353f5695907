"""One JSON line per decision, for audit: masked input, result, timing, revision."""

from __future__ import annotations

import json
import logging
import random
import time

from servicekit.secret_params import redact_query

from .policy_input import public_subject

# Headers whose value is a URL that may carry secret query parameters (an OAuth callback's code).
_URL_HEADERS = ("referer", "origin", "x-original-url", "x-rewrite-url")

log = logging.getLogger("lucid.decisions")


class DecisionLog:
    """Writes decisions to the `lucid.decisions` logger, sampled at `sample_rate`."""

    def __init__(self, sample_rate: float, sink=None, rng=random.random, tap=None):
        self._rate = sample_rate
        self._sink = sink or (lambda line: log.info(line))
        self._rng = rng
        self._tap = tap  # also given each entry (the admin page's recent decisions)

    def record(self, decision, request: dict, subject, request_id: str, trace=None) -> None:
        """request is input.request: credentials, cookies and token query parameters already removed."""
        if self._rate <= 0 or (self._rate < 1 and self._rng() >= self._rate):
            return
        entry = {
            "decision_id": decision.decision_id,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "request_id": request_id,
            "trace_id": trace.trace_id if trace else None,
            "span_id": trace.span_id if trace else None,
            "path": request.get("path"),
            "method": request.get("method"),
            "input": {"request": _masked(request), "subject": public_subject(subject) if subject else None},
            "result": {"allow": decision.allow, "status": decision.status, "reason": decision.reason},
            "eval_ms": round(decision.eval_ms, 3),
            "policy_revision": decision.policy_revision,
        }
        self._sink(json.dumps(entry, separators=(",", ":"), default=str))
        if self._tap is not None:
            self._tap(entry)


def _masked(request: dict) -> dict:
    """input.request as logged: secret parameters inside URL-valued headers masked too."""
    headers = request.get("headers")
    if not isinstance(headers, dict) or not any(h in headers for h in _URL_HEADERS):
        return request
    masked = dict(headers)
    for name in _URL_HEADERS:
        value = masked.get(name)
        if isinstance(value, str) and ("?" in value or "#" in value):
            rest, hash_, fragment = value.partition("#")
            base, mark, query = rest.partition("?")
            # An implicit-flow fragment (#access_token=...) is masked like a query.
            masked[name] = base + mark + redact_query(query) + hash_ + redact_query(fragment)
    return {**request, "headers": masked}
