"""POST /v1/check/batch: several /v1/check questions in one exchange (the proxy's batches).

Each item is a /v1/check body plus its own `request_id` and W3C trace
headers. The items are decided concurrently (`run_all`: greenlets in a
worker), so one HTTP exchange carries them all and their Redis calls (the
revocation lookup, the quota spend) coalesce into one round trip per step
(pdp/redis_script.py) instead of one per decision. Answers come back
in the items' order; a malformed item is answered with its own problem
object, so one bad question never fails the others.
"""

from __future__ import annotations

import logging

from servicekit.logs import request_id_var
from servicekit.trace_context import parse as parse_trace_context

from ..decision import deny
from ..problem import Problem
from .check import read_json_body, request_id_or_new, validate_check, validate_lease_want

log = logging.getLogger("lucid.pdp.check_batch")

MAX_ITEMS = 64


def run_in_turn(jobs: list) -> list:
    """run_all without gevent (tests in one thread): the items one after another."""
    return [job() for job in jobs]


def run_in_greenlets(jobs: list) -> list:
    """run_all in a gevent worker: every item in its own greenlet, answered when all are."""
    import gevent

    if len(jobs) == 1:
        return [jobs[0]()]
    greenlets = [gevent.spawn(job) for job in jobs]
    gevent.joinall(greenlets)
    return [g.value if g.successful() else _failed(g.exception) for g in greenlets]


def _failed(exc) -> dict:
    # decide() turns every failure into a deny; this is a bug's last line (fail closed, never a 500).
    log.error("a batched decision raised: %r", exc)
    return deny(503, "pdp_error").to_json()


class CheckBatch:
    def __init__(self, decider, max_item_bytes: int, run_all=run_in_turn):
        self._decider = decider
        self._max_bytes = max_item_bytes * MAX_ITEMS  # every item may be as large as one /v1/check body
        self._run_all = run_all

    def on_post(self, req, resp):
        body = read_json_body(req, self._max_bytes)
        items = body.get("checks")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
            raise _bad(f"`checks` must be an array of 1 to {MAX_ITEMS} check objects")
        resp.media = {"decisions": self._run_all([self._job(item) for item in items])}

    def _job(self, item):
        try:
            if not isinstance(item, dict):
                raise _bad("each check must be an object")
            check = validate_check(item)
            lease_want = validate_lease_want(item)
            request_id = request_id_or_new(item.get("request_id"))
            trace = _trace(item)
        except Problem as problem:
            answer = {"problem": problem.to_doc()}
            return lambda: answer

        def decide():
            request_id_var.set(request_id)  # a new greenlet starts with an empty context
            return self._decider.decide(check, request_id, trace, lease_want=lease_want).to_json()

        return decide


def _trace(item: dict):
    traceparent, tracestate = item.get("traceparent"), item.get("tracestate")
    if not isinstance(traceparent, (str, type(None))) or not isinstance(tracestate, (str, type(None))):
        raise _bad("`traceparent` and `tracestate` must be strings")
    return parse_trace_context(traceparent, tracestate)


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail, type_="malformed-check")
